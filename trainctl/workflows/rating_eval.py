"""Evaluate a run trained on ratings: top-10 figures of every method on the per-user protocol (the run's
model trained again on it, as a job, when its own split differs), RMSE/MAE of the rating predictors on
the run's split, and K-fold cross-validation (mf trained once per fold, each fold a job of its own)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainctl.config.compose import compose
from trainctl.errors import TrainctlError
from trainctl.observe.ticker import Ticker

RESULTS_FILE = "eval-ratings.json"


def is_rating_config(config: dict[str, Any]) -> bool:
    """Whether a saved run config trained on the ratings data set."""
    return (config.get("data") or {}).get("name") == "ratings"


def evaluate_ratings(
    checkpoint: Path, state: dict[str, Any], overrides: Sequence[str], *, cv: int | None
) -> dict[str, Any]:
    """Top-N figures of every method on the protocol split (the run's model measured as trained on it),
    RMSE/MAE on the run's own split, and with `cv` K folds of the rating predictors."""
    from trainctl.data.ratings import config_source, load_ratings, ranking_split, ratings_notes, split_ratings
    from trainctl.recommend.evaluation import (
        cross_validate,
        evaluate_ranking,
        evaluate_ratings_split,
        matrix_of,
        run_dir_for_folds,
        run_dir_for_ranking,
    )
    from trainctl.recommend.trained import trained_model

    composed = compose(overrides, base=OmegaConf.create(state["config"]))
    data = composed.config.data
    run_dir = checkpoint.parent.parent
    ratings = load_ratings(data)
    notes = ratings_notes(ratings, config_source(data).titles_file)
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
        "notes": notes,
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
            # left out of the means (metrics.ranking_metrics): nothing a method could list was liked
            "users_excluded": max((row.get("users_excluded", 0) for row in ranking.values()), default=0),
            "items_excluded": max((row.get("items_excluded", 0) for row in ranking.values()), default=0),
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
        with Ticker(f"{cv}-fold cross-validation", total=cv, unit="folds") as ticker:  # a line every 10 s
            trainer = (
                mf_fold_trainer(composed.tree, cv, run_dir_for_folds(run_dir, cv), ticker)
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

    from trainctl.models.ranker_settings import EASESettings, KNNRankerSettings
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
    """The checkpoint of the run's config trained on the protocol's split under `root` (trained now, as
    a job, unless an earlier eval left one there)."""
    from trainctl.api import run_job
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
        root.mkdir(parents=True, exist_ok=True)
        run_job(overrides, base=tree, output=root / "train.log")
        done = sorted(root.glob("*/*/checkpoints/last.pt"))
    return load_checkpoint(done[-1])


def mf_fold_trainer(
    tree: DictConfig, folds: int, root: Path, ticker: Ticker
) -> Callable[[int], tuple[float, float, float]]:
    """A function that trains mf on all folds but one as a run under `root`: (rmse, mae, seconds);
    `ticker` learns how many folds are done."""
    from trainctl.api import run_job

    def train_fold(fold: int) -> tuple[float, float, float]:
        ticker.update(fold)
        epochs = int(tree.trainer.epochs)
        overrides = [
            "data.split=random",
            f"data.folds={folds}",
            f"data.fold={fold}",
            f"run.root={root}",
            f"trainer.eval_every={epochs}",
        ]
        root.mkdir(parents=True, exist_ok=True)
        summary = run_job(overrides, base=tree, output=root / f"fold{fold}.log")
        return summary["test"]["rmse"], summary["test"]["mae"], summary["wall seconds"]

    return train_fold
