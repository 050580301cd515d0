"""A fitted recommender with the ratings and ids it answers for, saved as one .npz file in a run directory.

Loading needs numpy only, so a query against a cached model starts fast; each file records the
fingerprint (files, sizes, times, settings) it was built from and is rebuilt when that changes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import TrainctlError
from trainctl.recommend.item_scores import ItemItemRecommender
from trainctl.recommend.knn import KNNRecommender, KNNSettings
from trainctl.recommend.matrix import RatingMatrix
from trainctl.recommend.metrics import Ranker
from trainctl.recommend.popular import PopularRecommender
from trainctl.recommend.similarity import Similarity

FORMAT = 2
CACHE_DIR = "recommend"


@dataclass
class Fitted:
    """What a query needs: the method, the ratings it knows (to skip rated items), ids and titles."""

    method: str
    recommender: Ranker
    ratings: RatingMatrix  # every known rating, in the recommender's index space
    user_ids: np.ndarray
    item_ids: np.ndarray
    titles: np.ndarray  # "" where unknown
    learned_users: np.ndarray  # bool per user: the method can score them (factor models: trained on them)
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # settings that rebuild the recommender; notes

    @property
    def notes(self) -> list[str]:
        """What the ratings it was fitted on call for telling (trainctl.data.ratings.ratings_notes)."""
        return list(self.meta.get("notes") or [])

    def fallback(self) -> PopularRecommender:
        return PopularRecommender(self.ratings)

    def item_counts(self) -> np.ndarray:
        return self.ratings.by_item.counts()

    def save(self, path: Path, fingerprint: Any) -> None:
        """Write the .npz atomically (a temporary file renamed over `path`)."""
        meta = {
            "format": FORMAT,
            "method": self.method,
            "description": self.description,
            "fingerprint": fingerprint,
            **self.meta,
        }
        arrays = {f"ratings_{k}": v for k, v in self.ratings.arrays().items()}
        arrays.update(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            titles=np.asarray(self.titles, dtype=str),
            learned_users=self.learned_users,
            meta=np.array(json.dumps(meta)),
        )
        arrays.update({f"model_{k}": v for k, v in model_arrays(self.recommender).items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)


def find_user(ids: np.ndarray, user: str) -> int:
    """The dense index of a user id given on the command line; an error naming the valid ids otherwise."""
    wanted: Any = user
    if ids.dtype.kind in "iu":
        try:
            wanted = int(user)
        except ValueError:
            wanted = None
    position = int(np.searchsorted(ids, wanted)) if wanted is not None else len(ids)
    if position < len(ids) and ids[position] == wanted:
        return position
    raise TrainctlError(f"unknown user id '{user}'", fix=valid_users(ids))


def valid_users(ids: np.ndarray) -> str:
    if len(ids) == 0:
        return "the ratings have no users"
    if ids.dtype.kind in "iu":
        first, last = int(ids[0]), int(ids[-1])
        if last - first + 1 == len(ids):
            return f"user ids run from {first} to {last} ({len(ids):,} users)"
        return f"{len(ids):,} user ids between {first} and {last}"
    examples = ", ".join(str(x) for x in ids[:3])
    return f"{len(ids):,} users, with ids such as {examples}"


def model_arrays(recommender: Ranker) -> dict[str, np.ndarray]:
    """The arrays that rebuild `recommender` besides the ratings (factors, weights, similarities)."""
    if isinstance(recommender, KNNRecommender):
        return {"sim": recommender.sim}
    if isinstance(recommender, PopularRecommender):
        return {}
    if isinstance(recommender, ItemItemRecommender):
        weights = recommender.weights
        if isinstance(weights, np.ndarray):
            return {"weights": weights}
        return {"ptr": weights.ptr, "neighbours": weights.index, "similarities": weights.data}
    return recommender.arrays()  # type: ignore[attr-defined]


def load_fitted(path: Path, fingerprint: Any) -> Fitted | None:
    """The saved recommender at `path`, or None when it is missing, unreadable or out of date."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("format") != FORMAT or meta.get("fingerprint") != json.loads(json.dumps(fingerprint)):
        return None
    ratings = RatingMatrix.from_arrays({k[8:]: v for k, v in arrays.items() if k.startswith("ratings_")})
    model = {k[6:]: v for k, v in arrays.items() if k.startswith("model_")}
    method = meta["method"]
    extra = {k: v for k, v in meta.items() if k not in ("format", "method", "description", "fingerprint")}
    return Fitted(
        method,
        rebuild(method, ratings, model, extra),
        ratings,
        arrays["user_ids"],
        arrays["item_ids"],
        arrays["titles"],
        arrays["learned_users"],
        meta.get("description", ""),
        extra,
    )


def rebuild(method: str, ratings: RatingMatrix, model: dict[str, np.ndarray], meta: dict[str, Any]) -> Ranker:
    if method == "popular":
        return PopularRecommender(ratings)
    if method in ("user-cf", "item-cf"):
        settings = meta["settings"]
        knn = KNNSettings(**{**settings, "similarity": Similarity(settings["similarity"])})
        return KNNRecommender(ratings, user_based=method == "user-cf", settings=knn, sim=model["sim"])
    if method in ("mf", "implicit-mf", "ease", "item-knn"):
        from trainctl.recommend.trained import build_ranker

        return build_ranker(method, model, ratings, meta["liked_at"], meta.get("settings") or {})
    raise TrainctlError(f"unknown method in a saved recommender: {method}")


def cache_path(run_dir: Path, method: str, key: str = "") -> Path:
    """Where a run keeps the fitted `method` (`key` names settings that change the fit)."""
    return run_dir / CACHE_DIR / f"{method}{'-' + key if key else ''}.npz"
