"""Get a fitted recommender for a run (cached in the run directory) or for a ratings folder or file."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.data.ratings import Ratings, RatingsConfig, config_source
from trainctl.errors import TrainctlError
from trainctl.recommend.knn import KNNSettings
from trainctl.recommend.matrix import RatingMatrix
from trainctl.recommend.store import Fitted, cache_path, load_fitted


@dataclass(frozen=True)
class RatingsOrigin:
    """Where the ratings come from: a run trained on them (its data config and checkpoint), or a path."""

    data: RatingsConfig
    run_dir: Path | None = None

    @property
    def label(self) -> str:
        return f"run {self.run_dir}" if self.run_dir else f"data {config_source(self.data).ratings_file}"

    def checkpoint(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "checkpoints" / "last.pt"


def origin_of_run(run_dir: Path) -> RatingsOrigin:
    """The ratings a run trained on, read from its config.yaml (no config composition: fast)."""
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    data = config.get("data") or {}
    if data.get("name") != "ratings":
        raise TrainctlError(
            f"the run was not trained on ratings (its data set is '{data.get('name')}')",
            where=str(run_dir),
            fix="train one with: trainctl train conf=mf_movielens, or pass --data PATH",
        )
    known = {f.name for f in fields(RatingsConfig)}
    return RatingsOrigin(RatingsConfig(**{k: v for k, v in data.items() if k in known}), run_dir)


def origin_of_path(path: Path) -> RatingsOrigin:
    """A ratings folder (MovieLens layout) or CSV file used directly; nothing is downloaded."""
    if not path.exists():
        raise TrainctlError(f"no such ratings folder or file: {path}", fix="give a folder or a CSV file")
    return RatingsOrigin(RatingsConfig(name="ratings", root=".", path=str(path.resolve()), download=False))


def fingerprint(origin: RatingsOrigin, method: str, settings: KNNSettings) -> list[Any]:
    """What a cached recommender depends on: data files, the checkpoint for mf, k-NN settings."""
    parts: list[Any] = [method, config_source(origin.data).fingerprint()]
    if method == "mf":
        stat = origin.checkpoint().stat() if origin.checkpoint().is_file() else None
        parts.append(
            [str(origin.checkpoint()), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1]
        )
    if method in ("user-cf", "item-cf"):
        parts.append(settings.to_dict())
    return parts


def fitted_recommender(origin: RatingsOrigin, method: str, settings: KNNSettings) -> Fitted:
    """A run's cached recommender when it is up to date; else fit it (and cache it for a run)."""
    if origin.run_dir is None:
        return fit(origin, method, settings)
    path = cache_path(origin.run_dir, method, settings)
    key = fingerprint(origin, method, settings)
    cached = load_fitted(path, key)
    if cached is not None:
        return cached
    result = fit(origin, method, settings)
    result.save(path, key)
    return result


def fit(origin: RatingsOrigin, method: str, settings: KNNSettings) -> Fitted:
    """Fit `method` on every rating of the origin (mf: load the run's trained model instead)."""
    from trainctl.data.sets.ratings import load_ratings

    if method == "mf" and origin.run_dir is None:
        raise TrainctlError(
            "mf needs a trained run",
            fix=f"train one: trainctl train conf=mf_movielens data.path={origin.data.path}; "
            "or pick --method user-cf, item-cf or popular",
        )
    ratings = load_ratings(origin.data)
    if method == "mf":
        return fit_mf(origin, ratings)
    matrix = RatingMatrix.build(
        ratings.users, ratings.items, ratings.values, (ratings.num_users, ratings.num_items)
    )
    return fitted(method, matrix, ratings, np.ones(ratings.num_users, dtype=bool), settings)


def fitted(
    method: str, matrix: RatingMatrix, ratings: Ratings, learned: np.ndarray, settings: KNNSettings
) -> Fitted:
    """Fit a k-NN or popularity recommender on `matrix`."""
    from trainctl.recommend.knn import KNNRecommender
    from trainctl.recommend.popular import DESCRIPTION, PopularRecommender

    if method == "popular":
        recommender: Any = PopularRecommender(matrix)
        description = DESCRIPTION
        meta: dict[str, Any] = {}
    else:
        recommender = KNNRecommender(matrix, user_based=method == "user-cf", settings=settings)
        description = f"{method}: {settings.describe()}"
        meta = {"settings": settings.to_dict()}
    titles = ratings.titles if ratings.titles is not None else np.full(ratings.num_items, "", dtype=object)
    return Fitted(
        method, recommender, matrix, ratings.user_ids, ratings.item_ids, titles, learned, description, meta
    )


def fit_mf(origin: RatingsOrigin, ratings: Ratings) -> Fitted:
    """The run's trained factors, with its saved id mappings; users without training ratings are marked."""
    from trainctl.data.ratings import split_ratings
    from trainctl.models.mf import ids_from_state
    from trainctl.recommend.factors import FactorRecommender
    from trainctl.training.checkpoint import load_checkpoint

    assert origin.run_dir is not None, "checked by fit()"

    state = load_checkpoint(origin.checkpoint())
    if state.get("config", {}).get("model", {}).get("name") != "mf":
        raise TrainctlError(
            "the run's model is not mf", where=str(origin.run_dir), fix="pick --method user-cf or item-cf"
        )
    model, extra = FactorRecommender.from_state_dict(state["model"])
    user_ids, item_ids = ids_from_state(extra.get("user_ids")), ids_from_state(extra.get("item_ids"))
    if user_ids is None or item_ids is None:
        user_ids, item_ids = ratings.user_ids, ratings.item_ids
    train, _ = split_ratings(ratings, origin.data)
    known = ratings.remap(user_ids, item_ids)
    trained = train.remap(user_ids, item_ids)
    matrix = RatingMatrix.build(known.users, known.items, known.values, (len(user_ids), len(item_ids)))
    learned = np.bincount(trained.users, minlength=len(user_ids)) > 0
    titles = known.titles if known.titles is not None else np.full(len(item_ids), "", dtype=object)
    description = f"mf: {model.user_factors.shape[1]} factors, the run's last checkpoint"
    return Fitted("mf", model, matrix, user_ids, item_ids, titles, learned, description)
