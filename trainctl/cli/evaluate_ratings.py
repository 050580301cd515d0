"""`trainctl eval` for a run trained on ratings: the figures of every method, as tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainctl.errors import TrainctlError


def rating_eval(target: str, overrides: Sequence[str], *, tag: str, cv: int | None) -> bool:
    """Evaluate and print when `target` is a rating run; False (nothing done) for any other run."""
    from trainctl.api import locate_checkpoint
    from trainctl.training.checkpoint import load_checkpoint
    from trainctl.workflows.rating_eval import evaluate_ratings, is_rating_config

    _, checkpoint = locate_checkpoint(target, tag)
    state = load_checkpoint(checkpoint)
    if not is_rating_config(state.get("config") or {}):
        if cv:
            raise TrainctlError("--cv applies to runs trained on ratings", fix="drop --cv")
        return False
    print_report(evaluate_ratings(checkpoint, state, overrides, cv=cv))
    return True


def print_report(report: dict[str, Any]) -> None:
    """The figures as rich tables: the run's split, then the cross-validation when there is one."""
    from rich.console import Console

    console = Console()
    split = report["split"]
    console.print(
        f"{report['checkpoint']}: {report['ratings']:,} ratings, {report['users']:,} users, "
        f"{report['items']:,} items ({report['data']})"
    )
    console.print(
        method_table(
            f"run's split: {split['train']:,} train / {split['test']:,} test ratings",
            f"top-{report['ranking']['n']} among each user's unrated items, relevant = "
            f"{report['ranking']['relevant']}; k-NN: {report['knn']}",
            ["RMSE", "MAE", "P@10", "R@10", "nDCG@10", "fit s"],
            [
                [
                    row["method"],
                    *(f"{row[key]:.4f}" for key in ("rmse", "mae", "precision@10", "recall@10", "ndcg@10")),
                    "trained" if row["method"] == "mf" else f"{row['fit_seconds']:.2f}",
                ]
                for row in report["methods"]
            ],
        )
    )
    if "cv" in report:
        cv = report["cv"]
        console.print(
            method_table(
                f"{cv['folds']}-fold cross-validation (random folds, seed {cv['seed']})",
                "mf: each fold trained as a run (its wall time); others: fit time",
                ["RMSE", "MAE", "fit s/fold"],
                [
                    [
                        row["method"],
                        *(f"{row[key]:.4f} ± {row['std'][key]:.4f}" for key in ("rmse", "mae")),
                        f"{row['fit_seconds']:.2f}",
                    ]
                    for row in cv["methods"]
                ],
            )
        )
    if "written" in report:
        console.print(f"[dim]written to {report['written']}[/]")


def method_table(title: str, caption: str, columns: list[str], rows: list[list[str]]) -> Any:
    """A rich table with one row per method and right-aligned figures."""
    from rich.table import Table

    table = Table(title=title, caption=caption)
    table.add_column("method")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    return table
