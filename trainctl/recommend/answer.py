"""The top N items a user has not rated, from a run's model or a ratings folder: the method a query
gets when it names none (the best ranker available), the minimum-evidence ordering, the reasons, and
popular items, with a note, for a user with too few ratings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import TrainctlError, suggestion
from trainctl.recommend import METHODS, RANKERS
from trainctl.recommend.knn import KNNSettings
from trainctl.recommend.popular import DESCRIPTION as POPULAR
from trainctl.recommend.similarity import Similarity
from trainctl.recommend.store import Fitted, find_user
from trainctl.runs.run_dir import default_runs_root, resolve_run

MIN_USER_RATINGS = 3  # fewer known ratings than this: the most popular items, with a note


@dataclass
class Recommendation:
    """One answer: the user, the method that produced it (or popularity, with a note), the ranked items."""

    user: Any
    method: str
    description: str
    note: str | None
    items: list[dict[str, Any]]
    source: str
    data_notes: list[str] = field(default_factory=list)  # about the ratings file (ratings_notes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "method": self.method,
            "description": self.description,
            "note": self.note,
            "source": self.source,
            "items": self.items,
            "data_notes": self.data_notes,
        }


def method_settings(method: str, k: int | None, similarity: str, shrinkage: float, liked_at: float) -> Any:
    """The settings of the chosen method; --k is the neighbour count of whichever k-NN is used."""
    from trainctl.recommend.methods import MethodSettings

    try:
        kind = Similarity(similarity)
    except ValueError:
        choices = [s.value for s in Similarity]
        raise TrainctlError(
            f"unknown similarity '{similarity}'.{suggestion(similarity, choices)}",
            fix=f"choose one of: {', '.join(choices)}",
        ) from None
    if (k is not None and k < 1) or shrinkage < 0:
        raise TrainctlError("--k must be at least 1 and --shrinkage at least 0")
    settings = MethodSettings(liked_at=liked_at)
    settings.knn = KNNSettings(k=k or KNNSettings.k, similarity=kind, shrinkage=shrinkage)
    if k is not None and method == "item-knn":
        settings.item_knn = replace(settings.item_knn, k=k)
    return settings


def pick_method(method: str | None, run_method: str | None) -> str:
    """The method asked for, else the best ranker available: the run's own when it is a ranker, else
    EASE (beside a rating model, or on a ratings folder)."""
    if method is None:
        return run_method if run_method in RANKERS else "ease"
    if method not in METHODS:
        raise TrainctlError(
            f"unknown method '{method}'.{suggestion(method, METHODS)}",
            fix=f"choose one of: {', '.join(METHODS)}",
        )
    return method


def recommend_for(fitted: Fitted, user: str, n: int) -> Recommendation:
    """The top `n` items for `user` among those they have not rated; popular items, with a note, when
    the method cannot score them (no or too few ratings)."""
    from trainctl.recommend.metrics import popularity_tiebreak, top_n

    index = find_user(fitted.user_ids, user)
    users = np.array([index])
    counts = fitted.item_counts()
    rated = fitted.ratings.by_user.dense_mask(users)
    candidates = int((~rated[0] & (counts > 0)).sum())
    if n > candidates:
        raise TrainctlError(
            f"--n {n} is more than the {candidates:,} items user {user} can be recommended",
            fix=f"ask for at most --n {candidates} (items with ratings that the user has not rated)",
        )
    known = int(rated.sum())
    recommender, note, method = fitted.recommender, None, fitted.method
    if known < MIN_USER_RATINGS or not fitted.learned_users[index]:
        recommender, method = fitted.fallback(), "popular"
        why = (
            f"has {known} rating(s), fewer than {MIN_USER_RATINGS}"
            if known < MIN_USER_RATINGS
            else f"has no ratings that {fitted.method} learned from"
        )
        note = f"user {user} {why}: the most popular items instead"
    scores = recommender.scores(users)
    top = top_n(scores, rated | (counts == 0)[None, :], n, popularity_tiebreak(counts))[0]
    top = top[top >= 0]
    shown = displayed_scores(recommender, method, index, top, scores[0])
    because = getattr(recommender, "because", None)
    reasons = because(index, top) if callable(because) else None
    items = []
    for rank, item in enumerate(top.tolist()):
        items.append(
            {
                "rank": rank + 1,
                "item": plain(fitted.item_ids[item]),
                "title": str(fitted.titles[item]),
                "score": round(float(shown[rank]), 4),
                "ratings": int(counts[item]),
                "because": None if reasons is None else [str(fitted.titles[j]) for j in reasons[rank]],
            }
        )
    description = POPULAR if method == "popular" else fitted.description
    return Recommendation(plain(fitted.user_ids[index]), method, description, note, items, "", fitted.notes)


def displayed_scores(
    recommender: Any, method: str, user: int, top: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """What a line shows as its score: the predicted rating for rating predictors (mf, k-NN CF), the
    ranker's own score otherwise; for popular, what orders its list: the item's number of ratings."""
    if method == "popular":
        return np.floor(scores[top])  # the count; the fraction only breaks ties by the damped mean
    predict = getattr(recommender, "predict", None)
    if callable(predict):
        return predict(np.full(len(top), user), top)
    return scores[top]


def plain(value: Any) -> Any:
    """A numpy scalar as a plain Python value (for JSON)."""
    return value.item() if hasattr(value, "item") else value


def recommend(
    user: str,
    *,
    n: int = 10,
    method: str | None = None,
    run: str | None = None,
    data: Path | None = None,
    k: int | None = None,
    similarity: str = "pearson",
    shrinkage: float = 100.0,
) -> Recommendation:
    """Resolve the run or data, get the fitted recommender (cached for a run) and answer the query."""
    from trainctl.recommend.fitting import (
        fitted_recommender,
        latest_rating_run,
        origin_of_path,
        origin_of_run,
    )

    if n < 1:
        raise TrainctlError(f"--n {n}: at least one item must be asked for", where="--n", fix="--n 10")
    if run is not None and data is not None:
        raise TrainctlError(
            "give --run or --data, not both",
            fix="--run uses a trained run's model and data; --data fits a method on PATH",
        )
    if data is not None:
        origin = origin_of_path(data)
    else:
        root = default_runs_root()
        path = resolve_run(run, root).path if run is not None else latest_rating_run(root)
        origin = origin_of_run(path)
    chosen = pick_method(method, origin.run_method)
    settings = method_settings(chosen, k, similarity, shrinkage, origin.data.liked_at)
    try:
        fitted = fitted_recommender(origin, chosen, settings, user)
    except TrainctlError as exc:
        if method is not None or chosen != "ease" or "EASE on" not in exc.what:
            raise
        fitted = fitted_recommender(origin, "item-knn", settings, user)  # catalogue too large for EASE
    answer = recommend_for(fitted, user, n)
    answer.source = origin.label
    return answer
