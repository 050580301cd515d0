"""Trained factor models as numpy arrays (rating mf, implicit softmax mf): scores without torch."""

from __future__ import annotations

from typing import Any

import numpy as np


class FactorRecommender:
    """rating(u, i) = global bias + user bias + item bias + P[u] . Q[i], clipped to the rating scale."""

    name = "mf"

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = arrays["user_factors"].astype(np.float32)
        self.item_factors = arrays["item_factors"].astype(np.float32)
        self.user_bias = arrays["user_bias"].reshape(-1).astype(np.float32)
        self.item_bias = arrays["item_bias"].reshape(-1).astype(np.float32)
        self.global_bias = float(arrays["global_bias"])
        self.low, self.high = (float(x) for x in arrays["rating_range"])

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> tuple[FactorRecommender, dict[str, Any]]:
        """The model and its extra state (id mappings) from an mf checkpoint's model state dict."""
        extra = state.get("_extra_state") or {}
        arrays = {
            name: state[f"{name}.weight"].float().numpy()
            for name in ("user_factors", "item_factors", "user_bias", "item_bias")
        }
        arrays["global_bias"] = np.array(state["global_bias"].item())
        low_high = extra.get("rating_range") or [-np.inf, np.inf]
        arrays["rating_range"] = np.array(low_high, dtype=np.float64)
        return cls(arrays), extra

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "user_bias": self.user_bias,
            "item_bias": self.item_bias,
            "global_bias": np.array(self.global_bias),
            "rating_range": np.array([self.low, self.high]),
        }

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        dots = np.einsum("ij,ij->i", self.user_factors[users], self.item_factors[items])
        raw = self.global_bias + self.user_bias[users] + self.item_bias[items] + dots
        return np.clip(raw.astype(np.float64), self.low, self.high)

    def scores(self, users: np.ndarray) -> np.ndarray:
        """(users x items) ranking scores: the predicted ratings as shown, clipped to the scale (equal
        ones are ordered by popularity, see metrics.top_n)."""
        users = np.asarray(users, dtype=np.int64)
        raw = self.user_factors[users] @ self.item_factors.T + self.item_bias[None, :]
        return np.clip(raw + self.user_bias[users, None] + self.global_bias, self.low, self.high)


class ImplicitFactorRecommender:
    """score(u, i) = P[u] . Q[i] + b[i]: the logits of the implicit softmax model (a ranker)."""

    name = "implicit-mf"

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = arrays["user_factors"].astype(np.float32)
        self.item_factors = arrays["item_factors"].astype(np.float32)
        self.item_bias = arrays["item_bias"].reshape(-1).astype(np.float32)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> tuple[ImplicitFactorRecommender, dict[str, Any]]:
        extra = state.get("_extra_state") or {}
        return cls(
            {
                "user_factors": state["user_factors.weight"].float().numpy(),
                "item_factors": state["item_factors.weight"].float().numpy(),
                "item_bias": state["item_bias"].float().numpy(),
            }
        ), extra

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "item_bias": self.item_bias,
        }

    def scores(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        return self.user_factors[users] @ self.item_factors.T + self.item_bias[None, :]
