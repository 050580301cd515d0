"""`trainctl recommend`: the top N items a user has not rated, from a run's model or a ratings folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import TrainctlError, suggestion
from trainctl.recommend import METHODS
from trainctl.recommend.knn import KNNSettings
from trainctl.recommend.popular import DESCRIPTION as POPULAR
from trainctl.recommend.similarity import Similarity
from trainctl.recommend.store import Fitted


@dataclass
class Recommendation:
    """One answer: the user, the method that produced it (or its fallback), and the ranked items."""

    user: Any
    method: str
    description: str
    fallback: str | None
    items: list[dict[str, Any]]
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "method": self.method,
            "description": self.description,
            "fallback": self.fallback,
            "source": self.source,
            "items": self.items,
        }


def parse_settings(k: int, similarity: str, shrinkage: float) -> KNNSettings:
    try:
        kind = Similarity(similarity)
    except ValueError:
        choices = [s.value for s in Similarity]
        raise TrainctlError(
            f"unknown similarity '{similarity}'.{suggestion(similarity, choices)}",
            fix=f"choose one of: {', '.join(choices)}",
        ) from None
    if k < 1 or shrinkage < 0:
        raise TrainctlError("--k must be at least 1 and --shrinkage at least 0")
    return KNNSettings(k=k, similarity=kind, shrinkage=shrinkage)


def pick_method(method: str | None, using_run: bool) -> str:
    if method is None:
        return "mf" if using_run else "item-cf"
    if method not in METHODS:
        raise TrainctlError(
            f"unknown method '{method}'.{suggestion(method, METHODS)}",
            fix=f"choose one of: {', '.join(METHODS)}",
        )
    return method


def user_index(fitted: Fitted, user: str) -> int:
    """The dense index of a user id given on the command line; an error naming the valid ids otherwise."""
    ids = fitted.user_ids
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


def recommend_for(fitted: Fitted, user: str, n: int) -> Recommendation:
    """The top `n` items for `user` that they have not rated; popular items when the method knows no
    rating of theirs (labelled as the fallback)."""
    from trainctl.recommend.metrics import top_n

    index = user_index(fitted, user)
    users = np.array([index])
    recommender, fallback = fitted.recommender, None
    if not fitted.learned_users[index]:
        recommender = fitted.fallback()
        fallback = (
            f"user {user} has no ratings that {fitted.method} learned from: the most popular items instead"
        )
    top = top_n(recommender.scores(users), fitted.ratings.by_user.dense_mask(users), n)[0]
    top = top[top >= 0]
    predicted = recommender.predict(np.full(len(top), index), top)
    items = [
        {
            "rank": rank + 1,
            "item": plain(fitted.item_ids[item]),
            "title": str(fitted.titles[item]),
            "predicted_rating": round(float(rating), 3),
        }
        for rank, (item, rating) in enumerate(zip(top, predicted, strict=True))
    ]
    method = "popular" if fallback else fitted.method
    description = POPULAR if fallback else fitted.description
    return Recommendation(plain(fitted.user_ids[index]), method, description, fallback, items, "")


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
    k: int = 40,
    similarity: str = "pearson",
    shrinkage: float = 100.0,
) -> Recommendation:
    """Resolve the run or data, get the fitted recommender (cached for a run) and answer the query."""
    from trainctl.recommend.fitting import fitted_recommender, origin_of_path, origin_of_run

    if run is not None and data is not None:
        raise TrainctlError(
            "give --run or --data, not both",
            fix="--run uses a trained run's model and data; --data fits user-cf, item-cf or popular on PATH",
        )
    if data is not None:
        origin = origin_of_path(data)
    else:
        from trainctl.runs.run_dir import default_runs_root, resolve_run

        origin = origin_of_run(resolve_run(run or "latest", default_runs_root()).path)
    chosen = pick_method(method, origin.run_dir is not None)
    fitted = fitted_recommender(origin, chosen, parse_settings(k, similarity, shrinkage))
    answer = recommend_for(fitted, user, n)
    answer.source = origin.label
    return answer


def render(answer: Recommendation, as_json: bool) -> None:
    """Print the answer as a rich table, or as JSON."""
    if as_json:
        print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Top {len(answer.items)} for user {answer.user} · {answer.method}",
        caption=answer.fallback or answer.description,
        caption_style="yellow" if answer.fallback else "dim",
    )
    table.add_column("#", justify="right")
    table.add_column("item", justify="right")
    table.add_column("title")
    table.add_column("predicted", justify="right")
    for row in answer.items:
        table.add_row(str(row["rank"]), str(row["item"]), row["title"], f"{row['predicted_rating']:.2f}")
    console = Console()
    console.print(table)
    console.print(f"[dim]{answer.source}[/]")
