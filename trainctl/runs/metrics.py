"""Metric names as runs record them: which way is better, and how people read a value."""

from __future__ import annotations

HIGHER_IS_BETTER = {"accuracy", "precision", "recall", "ndcg", "hit_rate", "coverage"}  # ranking: name@n


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is an improvement (accuracy, precision@10, ndcg@10, ...) or not
    (loss, rmse, mae)."""
    return metric.split("@")[0] in HIGHER_IS_BETTER


def metric_value(metric: str, value: float, number: str = ".4g") -> str:
    """A metric's value for people: accuracy as a percentage, any other metric in the `number` format."""
    return f"{value:.2%}" if metric == "accuracy" else format(value, number)
