"""A run's trained recommender (mf, implicit-mf, EASE, item-kNN) read from its checkpoint as numpy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainctl.errors import TrainctlError
from trainctl.recommend import MODEL_METHODS
from trainctl.recommend.matrix import Compressed, RatingMatrix
from trainctl.recommend.metrics import Ranker


@dataclass
class TrainedModel:
    """The model's arrays and id mappings; `ranker` scores users against the ratings it is given."""

    method: str
    arrays: dict[str, np.ndarray]
    user_ids: np.ndarray | None
    item_ids: np.ndarray | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def item_item(self) -> bool:
        return self.method in ("ease", "item-knn")

    def ranker(self, known: RatingMatrix, liked_at: float) -> Ranker:
        """A ranker over `known` ratings (in the model's index space): item-item models score a user's
        rated items, factor models their learned factors."""
        return build_ranker(self.method, self.arrays, known, liked_at, self.settings)

    def describe(self) -> str:
        if self.method == "mf":
            return f"mf: {self.arrays['user_factors'].shape[1]} factors, the run's last checkpoint"
        if self.method == "implicit-mf":
            return (
                f"implicit-mf: {self.arrays['user_factors'].shape[1]} factors (softmax), the run's checkpoint"
            )
        details = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.settings.items()
        )
        return f"{self.method}: {details}, fitted by the run"


def build_ranker(
    method: str, arrays: dict[str, np.ndarray], known: RatingMatrix, liked_at: float, settings: dict[str, Any]
) -> Ranker:
    """The numpy ranker of a trained model's `arrays` (as TrainedModel.arrays or a cached file holds)."""
    if method == "mf":
        from trainctl.recommend.factors import FactorRecommender

        return FactorRecommender(arrays)
    if method == "implicit-mf":
        from trainctl.recommend.factors import ImplicitFactorRecommender

        return ImplicitFactorRecommender(arrays)
    from trainctl.recommend.interactions import implicit_rows
    from trainctl.recommend.item_scores import ItemItemRecommender

    interactions = implicit_rows(known.by_user, liked_at, settings["weak_weight"])
    if method == "ease":
        return ItemItemRecommender(method, arrays["weights"], interactions)
    n = known.num_items
    neighbours = Compressed(arrays["ptr"], arrays["neighbours"], arrays["similarities"], (n, n))
    return ItemItemRecommender(method, neighbours, interactions)


def trained_model(state: dict[str, Any]) -> TrainedModel:
    """The recommender a checkpoint holds; an error when its model is not one."""
    from trainctl.models.mf import ids_from_state

    name = (state.get("config") or {}).get("model", {}).get("name")
    method = MODEL_METHODS.get(name)
    if method is None:
        raise TrainctlError(
            f"the run's model '{name}' is not a recommender",
            fix=f"train one of: {', '.join(MODEL_METHODS)} (e.g. conf=ease_movielens)",
        )
    model = state["model"]
    extra = model.get("_extra_state") or {}
    user_ids, item_ids = ids_from_state(extra.get("user_ids")), ids_from_state(extra.get("item_ids"))
    if method == "mf":
        from trainctl.recommend.factors import FactorRecommender

        arrays = FactorRecommender.from_state_dict(model)[0].arrays()
        return TrainedModel(method, arrays, user_ids, item_ids)
    if method == "implicit-mf":
        from trainctl.recommend.factors import ImplicitFactorRecommender

        arrays = ImplicitFactorRecommender.from_state_dict(model)[0].arrays()
        return TrainedModel(method, arrays, user_ids, item_ids)
    names = ("weights",) if method == "ease" else ("ptr", "neighbours", "similarities")
    arrays = {key: model[key].numpy() for key in names}
    return TrainedModel(method, arrays, user_ids, item_ids, dict(extra.get("settings") or {}))
