"""Recipe: fit a closed-form item-item ranker (model=ease or model=item_knn) on a ratings split.

Read top to bottom: the training ratings become the implicit matrix (liked ratings weigh 1, others
model.weak_weight); each rank takes every world_size-th user, its item-item co-occurrence blocks
are summed over ranks (all-reduce), so every rank holds the same model; rank 0 measures top-10
ranking on the test split and saves the checkpoint. There is no loss curve: one fit, no steps to
resume (a resumed run fits again, with the same result).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainctl.config.schema import Config
from trainctl.data.ratings import load_ratings, split_ratings
from trainctl.data.sets.ratings import ratings_spec
from trainctl.models import build_model
from trainctl.models.ranker_settings import KNNRankerSettings
from trainctl.observe.events import EpochRecord, EvalRecord, RunStart
from trainctl.recommend.ease import ease_weights
from trainctl.recommend.interactions import Reduce, implicit_matrices
from trainctl.recommend.item_knn import knn_neighbours
from trainctl.recommend.matrix import RatingMatrix
from trainctl.recommend.metrics import figures_only, ranking_metrics
from trainctl.recommend.trained import build_ranker
from trainctl.runtime.collectives import all_reduce_sum, barrier, gather_to_rank0
from trainctl.training.checkpoint import FORMAT, rng_state, save_checkpoint, seed_everything

if TYPE_CHECKING:
    from trainctl.recommend.matrix import Compressed
    from trainctl.runtime.worker import WorkerContext

LOSS_CURVE = False  # `trainctl smoke` checks a fit and its determinism, not a falling loss


def summed_over_ranks(block: np.ndarray) -> np.ndarray:
    return all_reduce_sum(torch.from_numpy(np.ascontiguousarray(block))).numpy()


def main(cfg: Config, ctx: WorkerContext) -> dict[str, Any]:
    seed_everything(cfg.trainer.seed)
    if ctx.resume_from is not None:
        ctx.message("a closed-form fit has no steps to resume: fitting again", "warning")
    ratings = load_ratings(cfg.data)
    train, test = split_ratings(ratings, cfg.data)
    shape = (ratings.num_users, ratings.num_items)
    model = build_model(cfg.model, ratings_spec(ratings, train, cfg.data))
    ctx.reporter.emit(
        RunStart(
            run_dir=str(ctx.run.path),
            preset=cfg.preset,
            epochs=1,
            steps_per_epoch=1,
            start_epoch=0,
            start_step=0,
            world_size=ctx.world_size,
            parameters=0,
            train_samples=len(train),
            test_samples=len(test),
            rank=ctx.rank,
        )
    )
    started = time.perf_counter()
    mine = train.users % ctx.world_size == ctx.rank  # this rank's users
    weak = cfg.model.weak_weight  # type: ignore[attr-defined]
    by_user, by_item = implicit_matrices(
        train.users[mine], train.items[mine], train.values[mine], shape, cfg.data.liked_at, weak
    )
    fit(model, by_item, by_user, summed_over_ranks if ctx.world_size > 1 else None)
    ctx.reporter.emit(
        EpochRecord(epoch=0, step=1, seconds=time.perf_counter() - started, samples=len(train), rank=ctx.rank)
    )
    metrics: dict[str, float] = {}
    if ctx.is_main:
        evaluated = time.perf_counter()
        metrics = test_ranking(model, train, test, shape, cfg.data.liked_at, weak)
        ctx.reporter.emit(
            EvalRecord(
                step=1,
                epoch=0,
                split="test",
                metrics=metrics,
                seconds=time.perf_counter() - evaluated,
                rank=ctx.rank,
            )
        )
    save(model, cfg, ctx, metrics)
    return {
        "epochs": 1,
        "steps": 1,
        "test": metrics,
        "model": {"kind": model.kind, **model.settings},
        "wall seconds": time.perf_counter() - ctx.started,
        "run dir": str(ctx.run.path),
    }


def fit(model: Any, by_item: Compressed, by_user: Compressed, reduce: Reduce) -> None:
    """Fit the model's weights on this rank's users (`reduce` sums co-occurrence blocks over ranks)."""
    if model.kind == "ease":
        model.set_weights(ease_weights(by_item, by_user, model.settings["lam"], reduce))
        return
    settings = KNNRankerSettings(**model.settings)
    rows = knn_neighbours(by_item, by_user, settings, reduce=reduce)
    model.set_neighbours(rows.ptr, rows.index, rows.data)


def test_ranking(
    model: Any, train: Any, test: Any, shape: tuple[int, int], liked_at: float, weak: float
) -> dict[str, float]:
    """Top-10 figures of the fitted model on the test split (every user's training ratings count)."""
    train_matrix = RatingMatrix.build(train.users, train.items, train.values, shape)
    method = "ease" if model.kind == "ease" else "item-knn"
    ranker = build_ranker(method, model.arrays(), train_matrix, liked_at, model.settings)
    test_matrix = RatingMatrix.build(test.users, test.items, test.values, shape)
    return figures_only(ranking_metrics(ranker, train_matrix.by_user, test_matrix.by_user, liked_at=liked_at))


def save(model: Any, cfg: Config, ctx: WorkerContext, metrics: dict[str, float]) -> None:
    """Rank 0 writes last.pt and best.pt (the same fit) in the supervised recipe's layout."""
    rngs = gather_to_rank0(rng_state())
    if ctx.is_main:
        state = {
            "format": FORMAT,
            "model": model.state_dict(),
            "optimizer": {},
            "scheduler": {},
            "rng": rngs,
            "position": {"epoch": 1, "batch": 0, "step": 1},
            "best": metrics.get("ndcg@10"),
            "total_steps": 1,
            "world_size": ctx.world_size,
            "config": ctx.plan.tree,
            "ema": None,
            "grad_scaler": {},
        }
        for tag in ("last", "best"):  # verified on load against the manifest save_checkpoint writes
            save_checkpoint(state, ctx.run.checkpoints, tag, step=1)
    barrier()
