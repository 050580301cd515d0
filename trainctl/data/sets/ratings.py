"""Ratings (MovieLens or any CSV) as a regression task: inputs (user, item) index pairs, targets ratings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainctl.data import DATASETS, DataInfo
from trainctl.data.ratings import (
    Ratings,
    RatingsConfig,
    RatingsTarget,
    config_source,
    load_ratings,
    ratings_notes,
    split_ratings,
)
from trainctl.data.types import DataBundle, DataSpec, Split, Task
from trainctl.errors import TrainctlError


@dataclass(frozen=True)
class RatingSpec(DataSpec):
    """A DataSpec for (user, item) -> rating data: sizes, the id mappings and the rating scale."""

    num_users: int = 0
    num_items: int = 0
    user_ids: Any = field(default=None, compare=False)  # np.ndarray: index -> the id in the file
    item_ids: Any = field(default=None, compare=False)
    rating_mean: float = 0.0  # over the training split
    rating_min: float = 0.0
    rating_max: float = 0.0


def as_split(ratings: Ratings, target: RatingsTarget = RatingsTarget.rating) -> Split:
    """(user, item) pairs -> ratings; or, for implicit feedback, users -> the items they rated."""
    if RatingsTarget(target) is RatingsTarget.item:
        return Split(torch.from_numpy(ratings.users.reshape(-1, 1)), torch.from_numpy(ratings.items))
    pairs = torch.from_numpy(np.stack([ratings.users, ratings.items], axis=1))
    return Split(pairs, torch.from_numpy(ratings.values.astype(np.float32)))


def bundle_of(ratings: Ratings, cfg: RatingsConfig) -> DataBundle:
    """The train and test splits of `ratings` as `cfg` splits them, with their spec."""
    if len(ratings) < 2:
        raise TrainctlError(f"{ratings.source} holds {len(ratings)} rating(s); a split needs at least 2")
    train, test = split_ratings(ratings, cfg)
    spec = ratings_spec(ratings, train, cfg)
    return DataBundle(train=as_split(train, cfg.target), test=as_split(test, cfg.target), spec=spec)


def prepare_ratings(cfg: RatingsConfig, download: bool) -> DataInfo:
    """The sizes of the splits, and the notes the plan shows about the file (as `recommend` and `eval`
    show them): repeated ratings, rated items the titles file lacks (a mismatched one: exit 2)."""
    ratings = load_ratings(cfg)
    notes = ratings_notes(ratings, config_source(cfg).titles_file)
    bundle = bundle_of(ratings, cfg)
    return DataInfo(bundle.spec, len(bundle.train), len(bundle.test), tuple(notes))


@DATASETS.register("ratings", RatingsConfig, prepare=prepare_ratings)
def load_ratings_dataset(cfg: RatingsConfig) -> DataBundle:
    return bundle_of(load_ratings(cfg), cfg)


def ratings_spec(ratings: Ratings, train: Ratings, cfg: RatingsConfig) -> RatingSpec:
    """The spec of `ratings` trained on `train`: (user, item) -> rating, or user -> item (data.target)."""
    implicit = RatingsTarget(cfg.target) is RatingsTarget.item
    return RatingSpec(
        input_shape=(1,) if implicit else (2,),
        num_outputs=ratings.num_items if implicit else 1,
        task=Task.classification if implicit else Task.regression,
        num_users=ratings.num_users,
        num_items=ratings.num_items,
        user_ids=ratings.user_ids,
        item_ids=ratings.item_ids,
        rating_mean=float(train.values.mean()),
        rating_min=float(ratings.values.min()),
        rating_max=float(ratings.values.max()),
    )


def rating_spec(spec: DataSpec, needed_by: str, task: Task | None = None, target_fix: str = "") -> RatingSpec:
    """`spec` as a RatingSpec, or an error saying that `needed_by` needs a ratings data set (with the
    target that gives `task`, when one is named; `target_fix` says how to get it)."""
    if not isinstance(spec, RatingSpec):
        raise TrainctlError(
            f"{needed_by} needs a ratings data set (user, item, rating)",
            fix="use dataset=ratings (e.g. conf=mf_movielens)",
        )
    if task is not None and spec.task is not task:
        learns, target = (
            ("predicts ratings", "rating")
            if task is Task.regression
            else ("learns which items a user rates", "item")
        )
        raise TrainctlError(f"{needed_by} {learns}: it needs data.target={target}", fix=target_fix)
    return spec
