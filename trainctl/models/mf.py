"""Biased matrix factorisation: rating = global mean + user bias + item bias + user factors . item factors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from trainctl.config.ranges import ranged
from trainctl.config.schema import ModelConfig
from trainctl.data.sets.ratings import RatingSpec, rating_spec
from trainctl.data.types import DataSpec, Task
from trainctl.models import MODELS


@dataclass
class MFConfig(ModelConfig):
    factors: int = ranged(50, "[1, inf)")
    # factors start as N(0, init_std); biases at 0, the global bias at the mean
    init_std: float = ranged(0.01, "[0, inf)")
    # L2 on the factor rows each training rating uses, per rating (as Funk/Surprise SVD)
    reg: float = ranged(0.1, "[0, inf)")
    bias_reg: float = ranged(0.1, "[0, inf)")  # the same for the user and item biases


class MatrixFactorization(nn.Module):
    """Embeddings for users and items; the id -> index mappings travel in the state dict.

    In training mode, `forward` keeps the L2 penalty of the rows it used in `self.penalty`; the
    recipes add it to the loss through `training_penalty()` (the Penalized interface of models/).
    In eval mode predictions are clipped to the rating scale.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        factors: int,
        *,
        init_std: float = 0.01,
        reg: float = 0.0,
        bias_reg: float = 0.0,
        global_mean: float = 0.0,
        rating_range: tuple[float, float] | None = None,
        user_ids: Any = None,
        item_ids: Any = None,
    ) -> None:
        super().__init__()
        self.user_factors = nn.Embedding(num_users, factors)
        self.item_factors = nn.Embedding(num_items, factors)
        self.user_bias = nn.Embedding(num_users, 1)
        self.item_bias = nn.Embedding(num_items, 1)
        nn.init.normal_(self.user_factors.weight, 0.0, init_std)
        nn.init.normal_(self.item_factors.weight, 0.0, init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.global_bias = nn.Parameter(torch.tensor(float(global_mean)))
        self.reg, self.bias_reg = reg, bias_reg
        self.rating_range = rating_range
        self.user_ids, self.item_ids = user_ids, item_ids
        self.penalty: torch.Tensor | None = None

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        users, items = pairs[:, 0], pairs[:, 1]
        p, q = self.user_factors(users), self.item_factors(items)
        bu, bi = self.user_bias(users).squeeze(1), self.item_bias(items).squeeze(1)
        prediction = self.global_bias + bu + bi + (p * q).sum(dim=1)
        if self.training:
            rows = self.reg * (p.pow(2).sum(1) + q.pow(2).sum(1)) + self.bias_reg * (bu.pow(2) + bi.pow(2))
            self.penalty = rows.mean()
            return prediction
        self.penalty = None
        if self.rating_range is not None:
            prediction = prediction.clamp(*self.rating_range)
        return prediction

    def training_penalty(self) -> torch.Tensor | None:
        return self.penalty

    def get_extra_state(self) -> dict[str, Any]:
        """The id mappings and rating scale, saved with the weights (plain data: weights_only loads it)."""
        return {**ids_state(self), "rating_range": list(self.rating_range) if self.rating_range else None}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        load_ids_state(self, state)
        self.rating_range = tuple(state["rating_range"]) if state["rating_range"] else None


def ids_to_state(ids: Any) -> torch.Tensor | list[str] | None:
    """Integer ids as an int64 tensor, other ids as a list of strings."""
    if ids is None:
        return None
    ids = np.asarray(ids)
    return torch.from_numpy(ids.astype(np.int64)) if ids.dtype.kind in "iu" else [str(i) for i in ids]


def factor_args(cfg: Any, ratings: RatingSpec) -> dict[str, Any]:
    """What every factor model is built from: the data's sizes and id mappings, the config's factors."""
    return {
        "num_users": ratings.num_users,
        "num_items": ratings.num_items,
        "factors": cfg.factors,
        "init_std": cfg.init_std,
        "reg": cfg.reg,
        "user_ids": ratings.user_ids,
        "item_ids": ratings.item_ids,
    }


def ids_state(model: Any) -> dict[str, Any]:
    """A ratings model's user and item id mappings as plain data for its extra state."""
    return {"user_ids": ids_to_state(model.user_ids), "item_ids": ids_to_state(model.item_ids)}


def load_ids_state(model: Any, state: dict[str, Any]) -> None:
    """Set a ratings model's id mappings from its extra state."""
    model.user_ids, model.item_ids = ids_from_state(state["user_ids"]), ids_from_state(state["item_ids"])


def ids_from_state(state: torch.Tensor | list[str] | None) -> np.ndarray | None:
    if state is None:
        return None
    return state.numpy() if isinstance(state, torch.Tensor) else np.asarray(state, dtype=str)


@MODELS.register("mf", MFConfig)
def build_mf(cfg: MFConfig, spec: DataSpec) -> MatrixFactorization:
    ratings = rating_spec(
        spec,
        "model=mf",
        Task.regression,
        target_fix="use model=implicit_mf for data.target=item (conf=implicit_mf_movielens)",
    )
    return MatrixFactorization(
        **factor_args(cfg, ratings),
        bias_reg=cfg.bias_reg,
        global_mean=ratings.rating_mean,
        rating_range=(ratings.rating_min, ratings.rating_max),
    )
