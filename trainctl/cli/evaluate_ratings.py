"""`trainctl eval` for a run trained on ratings: every method on the run's split, and `--cv K` folds."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainctl.config.compose import compose
from trainctl.errors import TrainctlError

RESULTS_FILE = "eval-ratings.json"


def is_rating_config(config: dict[str, Any]) -> bool:
    """Whether a saved run config trained on the ratings data set."""
    return (config.get("data") or {}).get("name") == "ratings"


def rating_eval(target: str, overrides: Sequence[str], *, tag: str, cv: int | None) -> bool:
    """Evaluate and print when `target` is a rating run; False (nothing done) for any other run."""
    from trainctl.cli.evaluate import locate_checkpoint
    from trainctl.training.checkpoint import load_checkpoint

    checkpoint = locate_checkpoint(target, tag)
    state = load_checkpoint(checkpoint)
    if not is_rating_config(state.get("config") or {}):
        if cv:
            raise TrainctlError("--cv applies to runs trained on ratings", fix="drop --cv")
        return False
    print_report(evaluate_ratings(checkpoint, state, overrides, cv=cv))
    return True


def evaluate_ratings(
    checkpoint: Path, state: dict[str, Any], overrides: Sequence[str], *, cv: int | None
) -> dict[str, Any]:
    """Figures of every method: on the run's split (mf = the checkpoint) and, with `cv`, over K folds."""
    from trainctl.data.ratings import split_ratings
    from trainctl.data.sets.ratings import load_ratings
    from trainctl.models.mf import ids_from_state
    from trainctl.recommend.evaluation import cross_validate, evaluate_split, run_dir_for_folds
    from trainctl.recommend.factors import FactorRecommender
    from trainctl.recommend.knn import KNNSettings

    composed = compose(overrides, base=OmegaConf.create(state["config"]))
    data = composed.config.data
    ratings = load_ratings(data)
    train, test = split_ratings(ratings, data)  # exactly the split the run trained on
    mf = None
    if composed.config.model.name == "mf":
        mf, extra = FactorRecommender.from_state_dict(state["model"])
        user_ids, item_ids = ids_from_state(extra.get("user_ids")), ids_from_state(extra.get("item_ids"))
        if user_ids is not None and item_ids is not None:  # measure in the model's own index space
            train, test = train.remap(user_ids, item_ids), test.remap(user_ids, item_ids)
    settings = KNNSettings()
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": ratings.source,
        "ratings": len(ratings),
        "users": train.num_users,
        "items": train.num_items,
        "split": {
            "train": len(train),
            "test": len(test),
            "test_fraction": data.test_fraction,
            "folds": data.folds,
            "fold": data.fold,
            "seed": data.split_seed,
        },
        "knn": settings.describe(),
        "ranking": {"n": 10, "relevant": "rated >= 4"},
        "methods": [r.to_dict() for r in evaluate_split(train, test, mf=mf, settings=settings)],
    }
    if cv:
        if cv < 2:
            raise TrainctlError(f"--cv {cv}: cross-validation needs at least 2 folds")
        run_dir = checkpoint.parent.parent
        trainer = (
            mf_fold_trainer(composed.tree, cv, run_dir_for_folds(run_dir, cv)) if mf is not None else None
        )
        results = cross_validate(ratings, data, cv, settings=settings, train_mf_fold=trainer)
        report["cv"] = {"folds": cv, "seed": data.split_seed, "methods": [r.to_dict() for r in results]}
    results_file = checkpoint.parent.parent / RESULTS_FILE
    if (checkpoint.parent.parent / "config.yaml").is_file():
        results_file.write_text(json.dumps(report, indent=2) + "\n")
        report["written"] = str(results_file)
    return report


def mf_fold_trainer(tree: DictConfig, folds: int, root: Path) -> Callable[[int], tuple[float, float, float]]:
    """A function that trains mf on all folds but one as a run under `root`: (rmse, mae, seconds)."""
    from trainctl.plan import make_plan
    from trainctl.runs.run_dir import create_run_dir, record_run
    from trainctl.runtime.launch import build_launcher
    from trainctl.runtime.worker import run_worker

    def train_fold(fold: int) -> tuple[float, float, float]:
        epochs = int(tree.trainer.epochs)
        overrides = [
            f"data.folds={folds}",
            f"data.fold={fold}",
            f"run.root={root}",
            f"trainer.eval_every={epochs}",
        ]
        plan = make_plan(compose(overrides, base=tree))
        run = create_run_dir(Path(plan.config.run.root), plan.config.preset)
        plan.run_dir = run.path
        record_run(run, plan.tree, plan.overrides, plan.config.preset)
        if plan.world_size == 1:
            summary = run_worker(plan, console=False)
        else:
            launcher = build_launcher(plan.config.launcher)
            launcher.setup(plan)
            summary = launcher.launch(plan)
        return summary["test"]["rmse"], summary["test"]["mae"], summary["wall seconds"]

    return train_fold


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
