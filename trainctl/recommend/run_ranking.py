"""Top-10 figures of a factor ranker (implicit_mf) at each evaluation of its run, beside loss and accuracy,
so that the run's summary and `runs ls` show the ranking metric a top-N model is for."""

from __future__ import annotations

from typing import Any

from trainctl.recommend import MODEL_METHODS
from trainctl.recommend.factors import ImplicitFactorRecommender
from trainctl.recommend.matrix import RatingMatrix
from trainctl.recommend.metrics import figures_only, ranking_metrics


class RunRanking:
    """The run's training and test ratings as matrices (read once); called with the model being
    evaluated, its top-10 figures on the test split (metrics.ranking_metrics)."""

    def __init__(self, data: Any) -> None:
        from trainctl.data.ratings import load_ratings, split_ratings

        ratings = load_ratings(data)
        train, test = split_ratings(ratings, data)
        shape = (ratings.num_users, ratings.num_items)
        self.train = RatingMatrix.build(train.users, train.items, train.values, shape).by_user
        self.test = RatingMatrix.build(test.users, test.items, test.values, shape).by_user
        self.liked_at = float(data.liked_at)

    def __call__(self, model: Any) -> dict[str, float]:
        state = {key: full(value) for key, value in model.state_dict().items()}
        ranker, _ = ImplicitFactorRecommender.from_state_dict(state)
        return figures_only(ranking_metrics(ranker, self.train, self.test, liked_at=self.liked_at))


def full(value: Any) -> Any:
    """A sharded parameter (DTensor) gathered whole on every rank; anything else as it is."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


def run_ranking(model_name: str, data: Any) -> RunRanking | None:
    """The ranking a trained factor ranker's run measures at each evaluation, else None (closed-form
    rankers measure theirs in recipes/closed_form.py, rating predictors are measured by RMSE)."""
    if MODEL_METHODS.get(model_name) != "implicit-mf" or getattr(data, "name", None) != "ratings":
        return None
    return RunRanking(data)
