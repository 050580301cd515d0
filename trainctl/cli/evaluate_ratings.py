"""`trainctl eval` for a run trained on ratings: the figures of every method, as tables or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from trainctl.errors import TrainctlError

RANKING_COLUMNS = {
    "precision@10": "P@10",
    "recall@10": "R@10",
    "ndcg@10": "nDCG@10",
    "hit_rate@10": "HitRate@10",
    "coverage": "coverage",
}


def rating_eval(
    target: str, overrides: Sequence[str], *, tag: str, cv: int | None, as_json: bool = False
) -> bool:
    """Evaluate and print when `target` is a rating run; False (nothing done) for any other run."""
    from trainctl.api import locate_checkpoint
    from trainctl.cli.notes import note
    from trainctl.training.checkpoint import load_checkpoint
    from trainctl.workflows.rating_eval import evaluate_ratings, is_rating_config

    _, checkpoint = locate_checkpoint(target, tag)
    state = load_checkpoint(checkpoint)
    if not is_rating_config(state.get("config") or {}):
        if cv:
            raise TrainctlError("--cv applies to runs trained on ratings", fix="drop --cv")
        return False
    report = evaluate_ratings(checkpoint, state, overrides, cv=cv)
    for text in report["notes"]:
        note(text)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return True


def print_report(report: dict[str, Any]) -> None:
    """The figures as rich tables: top-N first, then RMSE/MAE, then the cross-validation."""
    from rich.console import Console

    console = Console()
    protocol = report["protocol"]
    console.print(
        f"{report['checkpoint']}: {report['ratings']:,} ratings, {report['users']:,} users, "
        f"{report['items']:,} items ({report['data']})"
    )
    rows = []
    for method, row in report["ranking"].items():
        if "skipped" in row:
            rows.append([method, *(["-"] * len(RANKING_COLUMNS)), f"skipped: {row['skipped']}"])
            continue
        fit = "trained" if row["fit_seconds"] is None else f"{row['fit_seconds']:.2f}"
        rows.append([method, *(f"{row[key]:.4f}" for key in RANKING_COLUMNS), fit])
    console.print(
        method_table(
            f"top-10 on each user's random {protocol['test_fraction']:.0%} held out "
            f"(seed {protocol['seed']}): {protocol['train']:,} train / {protocol['test']:,} test ratings, "
            f"{protocol['users_scored']:,} users scored",
            f"relevant = {protocol['relevant']}; candidates = {protocol['candidates']}; ties go to the more "
            f"popular item\n{excluded(protocol)}" + (f"\n{protocol['note']}" if protocol["note"] else ""),
            [*RANKING_COLUMNS.values(), "fit s"],
            rows,
        )
    )
    split = report["rating_split"]
    console.print(
        method_table(
            f"rating predictions on the run's split: {split['train']:,} train / {split['test']:,} test",
            "k-NN: " + report["settings"]["item-cf"],
            ["RMSE", "MAE", "fit s"],
            [
                [
                    row["method"],
                    f"{row['rmse']:.4f}",
                    f"{row['mae']:.4f}",
                    "trained" if row["method"] == "mf" else f"{row['fit_seconds']:.2f}",
                ]
                for row in report["rating"]
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


def excluded(protocol: dict[str, Any]) -> str:
    """What the means leave out: liked held-out items no method can list, and users left with none."""
    return (
        f"left out: {protocol['items_excluded']:,} liked held-out items with no training rating, and "
        f"{protocol['users_excluded']:,} users whose liked held-out items are all such items"
    )


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
