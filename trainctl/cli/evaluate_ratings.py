"""`trainctl eval` for a run trained on ratings: top-N figures of every method on the per-user protocol,
RMSE/MAE of the rating predictors on the run's split, and `--cv K` folds."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainctl.config.compose import compose
from trainctl.errors import TrainctlError

RESULTS_FILE = "eval-ratings.json"
RANKING_COLUMNS = {
    "precision@10": "P@10",
    "recall@10": "R@10",
    "ndcg@10": "nDCG@10",
    "hit_rate@10": "HitRate@10",
    "coverage": "coverage",
}


def is_rating_config(config: dict[str, Any]) -> bool:
    """Whether a saved run config trained on the ratings data set."""
    return (config.get("data") or {}).get("name") == "ratings"


def rating_eval(
    target: str, overrides: Sequence[str], *, tag: str, cv: int | None, as_json: bool = False
) -> bool:
    """Evaluate and print when `target` is a rating run; False (nothing done) for any other run."""
    from trainctl.cli.evaluate import locate_checkpoint
    from trainctl.training.checkpoint import load_checkpoint

    checkpoint = locate_checkpoint(target, tag)
    state = load_checkpoint(checkpoint)
    if not is_rating_config(state.get("config") or {}):
        if cv:
            raise TrainctlError("--cv applies to runs trained on ratings", fix="drop --cv")
        return False
    report = evaluate_ratings(checkpoint, state, overrides, cv=cv)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return True


def evaluate_ratings(
    checkpoint: Path, state: dict[str, Any], overrides: Sequence[str], *, cv: int | None
) -> dict[str, Any]:
    """Top-N figures of every method on the protocol split (the run's model measured as trained on it),
    RMSE/MAE on the run's own split, and with `cv` K folds of the rating predictors."""
    from trainctl.data.ratings import load_ratings, ranking_split, split_ratings
    from trainctl.recommend.evaluation import (
        cross_validate,
        evaluate_ranking,
        evaluate_ratings_split,
        run_dir_for_folds,
        run_dir_for_ranking,
    )
    from trainctl.recommend.trained import trained_model

    composed = compose(overrides, base=OmegaConf.create(state["config"]))
    data = composed.config.data
    run_dir = checkpoint.parent.parent
    ratings = load_ratings(data)
    model = trained_model(state)
    settings = method_settings(composed.config.model, data.liked_at)
    protocol = ranking_split(data)
    train, test = split_ratings(ratings, protocol)
    note = None
    if protocol is data:
        ranking_model = model
    else:  # the run trained on another split: its model is trained again on the protocol's
        note = f"{model.method}: trained again on the protocol's split, under {run_dir_for_ranking(run_dir)}"
        ranking_model = trained_model(
            protocol_run_state(composed.tree, protocol, run_dir_for_ranking(run_dir))
        )
    train_m, test_m = in_model_space(ranking_model, train), in_model_space(ranking_model, test)
    from trainctl.recommend.evaluation import matrix_of

    trained = {model.method: ranking_model.ranker(matrix_of(train_m), data.liked_at)}
    ranking = evaluate_ranking(train_m, test_m, trained=trained, settings=settings)
    own_train, own_test = split_ratings(ratings, data)  # exactly the split the run trained on
    mf = None
    if model.method == "mf":
        own_train, own_test = in_model_space(model, own_train), in_model_space(model, own_test)
        mf = model.ranker(matrix_of(own_train), data.liked_at)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "method": model.method,
        "data": ratings.source,
        "ratings": len(ratings),
        "users": ratings.num_users,
        "items": ratings.num_items,
        "protocol": {
            "split": "per_user",
            "test_fraction": protocol.test_fraction,
            "seed": protocol.split_seed,
            "train": len(train),
            "test": len(test),
            "users_scored": max((row.get("users", 0) for row in ranking.values()), default=0),
            "n": 10,
            "relevant": f"held-out rating >= {data.liked_at:g}",
            "candidates": "items with a training rating that the user did not rate in training",
            "note": note,
        },
        "ranking": ranking,
        "settings": {m: settings.describe(m) for m in ("ease", "item-knn", "item-cf", "popular")},
        "rating_split": {
            "split": str(getattr(data.split, "value", data.split)),
            "train": len(own_train),
            "test": len(own_test),
            "test_fraction": data.test_fraction,
            "folds": data.folds,
            "fold": data.fold,
            "seed": data.split_seed,
        },
        "rating": [
            r.to_dict() for r in evaluate_ratings_split(own_train, own_test, mf=mf, settings=settings)
        ],
    }
    if cv:
        if cv < 2:
            raise TrainctlError(f"--cv {cv}: cross-validation needs at least 2 folds")
        trainer = (
            mf_fold_trainer(composed.tree, cv, run_dir_for_folds(run_dir, cv))
            if model.method == "mf"
            else None
        )
        results = cross_validate(ratings, data, cv, settings=settings, train_mf_fold=trainer)
        report["cv"] = {"folds": cv, "seed": data.split_seed, "methods": [r.to_dict() for r in results]}
    if (run_dir / "config.yaml").is_file():
        results_file = run_dir / RESULTS_FILE
        results_file.write_text(json.dumps(report, indent=2) + "\n")
        report["written"] = str(results_file)
    return report


def method_settings(model_cfg: Any, liked_at: float) -> Any:
    """Settings of the methods fitted on the fly: the run's own for its kind (EASE, item-kNN)."""
    from dataclasses import fields

    from trainctl.recommend.ease import EASESettings
    from trainctl.recommend.item_knn import KNNRankerSettings
    from trainctl.recommend.methods import MethodSettings

    settings = MethodSettings(liked_at=liked_at)
    if model_cfg.name == "ease":
        settings.ease = EASESettings(**{f.name: getattr(model_cfg, f.name) for f in fields(EASESettings)})
    if model_cfg.name == "item_knn":
        settings.item_knn = KNNRankerSettings(
            **{f.name: getattr(model_cfg, f.name) for f in fields(KNNRankerSettings)}
        )
    return settings


def in_model_space(model: Any, ratings: Any) -> Any:
    """`ratings` indexed by the model's saved id mapping (unknown ids dropped)."""
    if model.user_ids is None or model.item_ids is None:
        return ratings
    return ratings.remap(model.user_ids, model.item_ids)


def protocol_run_state(tree: DictConfig, protocol: Any, root: Path) -> dict[str, Any]:
    """The checkpoint of the run's config trained on the protocol's split under `root` (trained now
    unless an earlier eval left one there)."""
    from trainctl.training.checkpoint import load_checkpoint

    done = sorted(root.glob("*/*/checkpoints/last.pt"))
    if not done:
        overrides = [
            "data.split=per_user",
            f"data.test_fraction={protocol.test_fraction}",
            "data.folds=0",
            "data.fold=0",
            f"run.root={root}",
        ]
        train_child_run(tree, overrides)
        done = sorted(root.glob("*/*/checkpoints/last.pt"))
    return load_checkpoint(done[-1])


def train_child_run(tree: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """Train `tree` with `overrides` as a run of its own (through the planner and launcher); its summary."""
    from trainctl.plan import make_plan
    from trainctl.runs.run_dir import create_run_dir, record_run
    from trainctl.runtime.launch import build_launcher
    from trainctl.runtime.worker import run_worker

    plan = make_plan(compose(overrides, base=tree))
    run = create_run_dir(Path(plan.config.run.root), plan.config.preset)
    plan.run_dir = run.path
    record_run(run, plan.tree, plan.overrides, plan.config.preset)
    if plan.world_size == 1:
        return run_worker(plan, console=False)
    launcher = build_launcher(plan.config.launcher)
    launcher.setup(plan)
    return launcher.launch(plan)


def mf_fold_trainer(tree: DictConfig, folds: int, root: Path) -> Callable[[int], tuple[float, float, float]]:
    """A function that trains mf on all folds but one as a run under `root`: (rmse, mae, seconds)."""

    def train_fold(fold: int) -> tuple[float, float, float]:
        epochs = int(tree.trainer.epochs)
        summary = train_child_run(
            tree,
            [
                "data.split=random",
                f"data.folds={folds}",
                f"data.fold={fold}",
                f"run.root={root}",
                f"trainer.eval_every={epochs}",
            ],
        )
        return summary["test"]["rmse"], summary["test"]["mae"], summary["wall seconds"]

    return train_fold


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
            "popular item" + (f"\n{protocol['note']}" if protocol["note"] else ""),
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
