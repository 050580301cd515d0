"""Early stopping: ends a run whose evaluation metric has not improved for `patience` evaluations."""

from __future__ import annotations

from typing import Any

from trainctl.config.schema import EarlyStoppingConfig
from trainctl.errors import TrainctlError
from trainctl.training.objective import higher_is_better


class EarlyStopping:
    """Counts evaluations without an improvement larger than `min_delta`; `reason` says why it stopped."""

    def __init__(self, cfg: EarlyStoppingConfig, *, default_metric: str) -> None:
        self.metric = cfg.metric or default_metric
        self.patience = cfg.patience
        self.min_delta = cfg.min_delta
        self.higher = higher_is_better(self.metric)
        self.best: float | None = None
        self.best_step = 0
        self.bad_evals = 0
        self.reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.patience is not None

    def update(self, metrics: dict[str, float], step: int) -> bool:
        """Record one evaluation; True when the run should stop now."""
        if not self.enabled:
            return False
        if self.metric not in metrics:
            raise TrainctlError(
                f"trainer.early_stopping.metric='{self.metric}' is not a metric of this task",
                fix=f"choose one of: {', '.join(metrics)}",
            )
        value = metrics[self.metric]
        if self.best is None or self.improves(value):
            self.best, self.best_step, self.bad_evals = value, step, 0
            return False
        self.bad_evals += 1
        assert self.patience is not None
        if self.bad_evals >= self.patience:
            self.reason = (
                f"early stopping at step {step}: {self.metric} has not improved by more than "
                f"{self.min_delta:g} for {self.bad_evals} evaluation(s); best {self.best:.6g} at step "
                f"{self.best_step}"
            )
            return True
        return False

    def improves(self, value: float) -> bool:
        assert self.best is not None
        return value > self.best + self.min_delta if self.higher else value < self.best - self.min_delta

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step, self.bad_evals = state["best"], state["best_step"], state["bad_evals"]
