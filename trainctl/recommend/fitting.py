"""Get a fitted recommender for a run (cached in the run directory) or for a ratings folder or file."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.data.ratings import Ratings, RatingsConfig, config_source, ratings_notes
from trainctl.errors import TrainctlError
from trainctl.recommend import MODEL_METHODS, TRAINED_ONLY
from trainctl.recommend.matrix import RatingMatrix
from trainctl.recommend.methods import MethodSettings
from trainctl.recommend.store import Fitted, cache_path, find_user, load_fitted


@dataclass(frozen=True)
class RatingsOrigin:
    """Where the ratings come from: a run trained on them (its data config and checkpoint), or a path."""

    data: RatingsConfig
    run_dir: Path | None = None
    model: str | None = None  # the run's model name (config.yaml)

    @property
    def label(self) -> str:
        return f"run {self.run_dir}" if self.run_dir else f"data {config_source(self.data).ratings_file}"

    @property
    def run_method(self) -> str | None:
        """The method the run's model is (mf, ease, item-knn, implicit-mf), None without a run."""
        return MODEL_METHODS.get(self.model or "")

    def checkpoint(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "checkpoints" / "last.pt"


def run_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}


def origin_of_run(run_dir: Path) -> RatingsOrigin:
    """The ratings a run trained on, read from its config.yaml (no config composition: fast)."""
    config = run_config(run_dir)
    data = config.get("data") or {}
    if data.get("name") != "ratings":
        raise TrainctlError(
            f"the run was not trained on ratings (its data set is '{data.get('name')}')",
            where=str(run_dir),
            fix="train one with: trainctl train conf=ease_movielens, or pass --data PATH",
        )
    known = {f.name for f in fields(RatingsConfig)}
    model = (config.get("model") or {}).get("name")
    return RatingsOrigin(RatingsConfig(**{k: v for k, v in data.items() if k in known}), run_dir, model)


def latest_rating_run(root: Path) -> Path:
    """The newest run under `root` that trained on ratings and has a checkpoint (whatever `latest` is)."""
    candidates = [
        p.parent.parent for p in root.glob("*/*/checkpoints/last.pt") if p.parent.parent.name != "latest"
    ]
    candidates += [p.parent.parent for p in root.glob("sweeps/*/*/checkpoints/last.pt")]

    def recorded(path: Path) -> int:
        try:
            return (path / "config.yaml").stat().st_mtime_ns
        except OSError:
            return 0

    for path in sorted(set(candidates), key=recorded, reverse=True):
        try:
            if (run_config(path).get("data") or {}).get("name") == "ratings":
                return path
        except (OSError, ValueError):
            continue
    raise TrainctlError(
        f"no run trained on ratings under {root}",
        fix="train one (trainctl train conf=ease_movielens), or recommend from a folder with --data PATH",
    )


def origin_of_path(path: Path) -> RatingsOrigin:
    """A ratings folder (MovieLens layout) or CSV file used directly; nothing is downloaded."""
    if not path.exists():
        raise TrainctlError(f"no such ratings folder or file: {path}", fix="give a folder or a CSV file")
    return RatingsOrigin(RatingsConfig(name="ratings", root=".", path=str(path.resolve()), download=False))


def uses_run_model(origin: RatingsOrigin, method: str) -> bool:
    return origin.run_dir is not None and origin.run_method == method


def fingerprint(origin: RatingsOrigin, method: str, settings: MethodSettings) -> list[Any]:
    """What a cached recommender depends on: data files, the checkpoint of a run's model, settings."""
    parts: list[Any] = [method, config_source(origin.data).fingerprint()]
    if uses_run_model(origin, method):
        stat = origin.checkpoint().stat() if origin.checkpoint().is_file() else None
        parts.append(
            [str(origin.checkpoint()), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1]
        )
    else:
        parts.append(settings.key(method))
    return parts


def settings_key(settings: MethodSettings, method: str) -> str:
    """A short name for the settings of an on-the-fly fit (part of its cache file's name)."""
    key = settings.key(method)
    if not key:
        return ""
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]


def fitted_recommender(
    origin: RatingsOrigin, method: str, settings: MethodSettings, user: str | None = None
) -> Fitted:
    """A cached recommender when it is up to date; else fit it and cache it: in the run, or for a
    ratings folder in the user's cache (data_cache_dir) under the data files' fingerprint.

    Without a run, item-knn computes only the neighbours of `user`'s rated items (exact for them).
    """
    if origin.run_dir is None and method == "item-knn":
        return fit(origin, method, settings, user)  # one user's neighbours: quicker than a cache read
    stamp = fingerprint(origin, method, settings)
    if origin.run_dir is None:  # a ratings folder: kept in the user's cache, by the data's fingerprint
        key = hashlib.sha1(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]
        path = data_cache_dir() / f"{method}-{key}.npz"
    else:
        key = "" if uses_run_model(origin, method) else settings_key(settings, method)
        path = cache_path(origin.run_dir, method, key)
    cached = load_fitted(path, stamp)
    if cached is not None:
        return cached
    result = fit(origin, method, settings)
    try:
        result.save(path, stamp)
    except OSError:
        if origin.run_dir is not None:
            raise
        print(f"note: cannot cache the fit in {path.parent}; the next query fits again", file=sys.stderr)
    return result


def data_cache_dir() -> Path:
    """Where fits on ratings folders are kept: $TRAINCTL_CACHE_DIR/recommend (default ~/.cache/trainctl)."""
    return Path(os.environ.get("TRAINCTL_CACHE_DIR") or "~/.cache/trainctl").expanduser() / "recommend"


def fit(origin: RatingsOrigin, method: str, settings: MethodSettings, user: str | None = None) -> Fitted:
    """Fit `method` on every rating of the origin (a run's own model: load it from its checkpoint)."""
    from trainctl.data.ratings import load_ratings
    from trainctl.recommend.methods import fit_method

    ratings = load_ratings(origin.data)
    notes = ratings_notes(ratings, config_source(origin.data).titles_file)
    if uses_run_model(origin, method):
        return fit_trained(origin, ratings, settings.liked_at, notes)
    if method in TRAINED_ONLY:
        model = "mf" if method == "mf" else "implicit_mf"
        raise TrainctlError(
            f"{method} needs a trained run of model={model}",
            fix=f"train one: trainctl train conf={model}_movielens data.path={origin.data.path}; "
            "or pick --method ease, item-knn, user-cf, item-cf or popular",
        )
    matrix = RatingMatrix.build(
        ratings.users, ratings.items, ratings.values, (ratings.num_users, ratings.num_items)
    )
    rows, description = None, settings.describe(method)
    if method == "item-knn" and user is not None:
        index = find_user(ratings.user_ids, user)
        ptr = matrix.by_user.ptr
        rows = matrix.by_user.index[ptr[index] : ptr[index + 1]]
    recommender = fit_method(method, matrix, settings, rows)
    learned = np.bincount(ratings.users, minlength=ratings.num_users) > 0
    meta = {"liked_at": settings.liked_at, "settings": settings.key(method), "notes": notes}
    return Fitted(
        method,
        recommender,
        matrix,
        ratings.user_ids,
        ratings.item_ids,
        titles_of(ratings),
        learned,
        description,
        meta,
    )


def titles_of(ratings: Ratings) -> np.ndarray:
    return ratings.titles if ratings.titles is not None else np.full(ratings.num_items, "", dtype=object)


def fit_trained(origin: RatingsOrigin, ratings: Ratings, liked_at: float, notes: list[str]) -> Fitted:
    """The run's trained model with its saved id mappings; factor models mark the users they learned."""
    from trainctl.data.ratings import split_ratings
    from trainctl.recommend.trained import trained_model
    from trainctl.training.checkpoint import load_checkpoint

    model = trained_model(load_checkpoint(origin.checkpoint()))
    user_ids = model.user_ids if model.user_ids is not None else ratings.user_ids
    item_ids = model.item_ids if model.item_ids is not None else ratings.item_ids
    known = ratings.remap(user_ids, item_ids)
    matrix = RatingMatrix.build(known.users, known.items, known.values, (len(user_ids), len(item_ids)))
    if model.item_item:  # scores any user from their ratings
        learned = np.bincount(known.users, minlength=len(user_ids)) > 0
    else:
        train, _ = split_ratings(ratings, origin.data)
        learned = np.bincount(train.remap(user_ids, item_ids).users, minlength=len(user_ids)) > 0
    meta = {"liked_at": liked_at, "settings": model.settings, "notes": notes}
    return Fitted(
        model.method,
        model.ranker(matrix, liked_at),
        matrix,
        user_ids,
        item_ids,
        titles_of(known),
        learned,
        model.describe(),
        meta,
    )
