"""Closed-form item-item rankers (EASE, item-kNN) as modules: their weights are buffers that
recipes/closed_form.py fits (with trainctl.recommend) and saves in a checkpoint like any model's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from trainctl.config.schema import ModelConfig
from trainctl.data.sets.ratings import rating_spec
from trainctl.data.types import DataSpec
from trainctl.models import MODELS
from trainctl.models.mf import ids_state, load_ids_state
from trainctl.models.ranker_settings import EASESettings, KNNRankerSettings


@dataclass
class EASEConfig(ModelConfig, EASESettings):
    """EASE: model.lam (L2 strength), model.weak_weight (a rated but not liked item's weight)."""


@dataclass
class ItemKNNConfig(ModelConfig, KNNRankerSettings):
    """Item-kNN for top-N: model.k neighbours per item, model.alpha, model.weak_weight, model.shrinkage."""


class ItemItemModel(nn.Module):
    """The weights W of an item-item ranker (score of item i = sum over rated j of w(u, j) W[j, i]).

    EASE keeps W dense (`weights`); item-kNN keeps each item's neighbours as sparse rows (`ptr`,
    `neighbours`, `similarities`). The id mappings and settings travel in the state dict.
    """

    def __init__(self, kind: str, num_items: int, settings: dict[str, Any], user_ids: Any, item_ids: Any):
        super().__init__()
        self.kind = kind
        self.settings = settings
        self.user_ids, self.item_ids = user_ids, item_ids
        self.register_buffer("weights", torch.zeros(0, num_items))
        self.register_buffer("ptr", torch.zeros(num_items + 1, dtype=torch.int64))
        self.register_buffer("neighbours", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("similarities", torch.zeros(0))

    def set_weights(self, weights: np.ndarray) -> None:
        """EASE's fitted (items x items) matrix."""
        self.weights = torch.from_numpy(np.ascontiguousarray(weights))

    def set_neighbours(self, ptr: np.ndarray, neighbours: np.ndarray, similarities: np.ndarray) -> None:
        """Item-kNN's fitted neighbour rows: row j's neighbours[ptr[j]:ptr[j + 1]] and their similarities."""
        self.ptr = torch.from_numpy(ptr)
        self.neighbours = torch.from_numpy(neighbours)
        self.similarities = torch.from_numpy(similarities)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted weights as numpy, named as trainctl.recommend.trained reads a checkpoint."""
        if self.kind == "ease":
            return {"weights": self.weights.numpy()}
        return {name: getattr(self, name).numpy() for name in ("ptr", "neighbours", "similarities")}

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(f"{self.kind} is fitted in closed form by recipe=closed_form, not by gradients")

    def get_extra_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "settings": dict(self.settings), **ids_state(self)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.kind, self.settings = state["kind"], dict(state["settings"])
        load_ids_state(self, state)

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:
        """Buffers take the saved sizes first (a fitted model's differ from a freshly built one's)."""
        for name in ("weights", "ptr", "neighbours", "similarities"):
            if name in state:
                setattr(self, name, torch.empty_like(state[name]))
        return super().load_state_dict(state, strict=strict, assign=assign)


def settings_of(cfg: ModelConfig, schema: type) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in schema.__dataclass_fields__}


@MODELS.register("ease", EASEConfig)
def build_ease(cfg: EASEConfig, spec: DataSpec) -> ItemItemModel:
    ratings = rating_spec(spec, "model=ease")
    return ItemItemModel(
        "ease", ratings.num_items, settings_of(cfg, EASESettings), ratings.user_ids, ratings.item_ids
    )


@MODELS.register("item_knn", ItemKNNConfig)
def build_item_knn(cfg: ItemKNNConfig, spec: DataSpec) -> ItemItemModel:
    ratings = rating_spec(spec, "model=item_knn")
    return ItemItemModel(
        "item_knn", ratings.num_items, settings_of(cfg, KNNRankerSettings), ratings.user_ids, ratings.item_ids
    )
