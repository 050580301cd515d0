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
from trainctl.recommend import neighbours_or_popular
from trainctl.recommend.knn import KNNRecommender, KNNSettings
from trainctl.recommend.matrix import RatingMatrix
from trainctl.recommend.metrics import Recommender
from trainctl.recommend.popular import PopularRecommender
from trainctl.recommend.similarity import Similarity

FORMAT = 1
CACHE_DIR = "recommend"


@dataclass
class Fitted:
    """What a query needs: the method, the ratings it knows (to skip rated items), ids and titles."""

    method: str
    recommender: Recommender
    ratings: RatingMatrix  # every known rating, in the recommender's index space
    user_ids: np.ndarray
    item_ids: np.ndarray
    titles: np.ndarray  # "" where unknown
    learned_users: np.ndarray  # bool per user: the method learned from at least one of their ratings
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def fallback(self) -> PopularRecommender:
        return PopularRecommender(self.ratings)

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


def model_arrays(recommender: Recommender) -> dict[str, np.ndarray]:
    """The arrays that rebuild `recommender` besides the ratings (factors, or a similarity matrix)."""
    if isinstance(recommender, KNNRecommender):
        return {"sim": recommender.sim}
    if isinstance(recommender, PopularRecommender):
        return {}
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
    return Fitted(
        method,
        rebuild(method, ratings, model, meta.get("settings")),
        ratings,
        arrays["user_ids"],
        arrays["item_ids"],
        arrays["titles"],
        arrays["learned_users"],
        meta.get("description", ""),
        {k: v for k, v in meta.items() if k not in ("format", "method", "description", "fingerprint")},
    )


def rebuild(method: str, ratings: RatingMatrix, model: dict[str, np.ndarray], settings: Any) -> Recommender:
    if method == "mf":
        from trainctl.recommend.factors import FactorRecommender

        return FactorRecommender(model)
    if method == "popular":
        return neighbours_or_popular(method, ratings, KNNSettings())
    if method in ("user-cf", "item-cf"):
        knn = KNNSettings(**{**settings, "similarity": Similarity(settings["similarity"])})
        return neighbours_or_popular(method, ratings, knn, sim=model["sim"])
    raise TrainctlError(f"unknown method in a saved recommender: {method}")


def cache_path(run_dir: Path, method: str, settings: KNNSettings | None) -> Path:
    """Where a run keeps the fitted `method` (similarity settings are part of a k-NN file's name)."""
    suffix = f"-{settings.key()}" if settings is not None and method in ("user-cf", "item-cf") else ""
    return run_dir / CACHE_DIR / f"{method}{suffix}.npz"
