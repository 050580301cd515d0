"""Settings of the closed-form item-item rankers (EASE, item-kNN): the fields of their model configs and
what the numpy code that fits them reads. No torch here, so a query on a ratings folder stays light."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from trainctl.config.ranges import ranged


@dataclass
class KNNRankerSettings:
    """Defaults chosen on validation splits of ml-100k's training ratings (conf/preset/item_knn_movielens)."""

    k: int = ranged(200, "[1, inf)")
    alpha: float = ranged(0.5, "[0, 1]")
    # weight of a rated but not liked item in the implicit matrix
    weak_weight: float = ranged(0.5, "[0, 1]")

    def describe(self) -> str:
        return f"k={self.k} neighbours per item, asymmetric cosine alpha={self.alpha:g}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EASESettings:
    """Defaults chosen on validation splits of ml-100k's training ratings (conf/preset/ease_movielens)."""

    lam: float = ranged(300.0, "(0, inf)")
    # weight of a rated but not liked item in the implicit matrix
    weak_weight: float = ranged(0.5, "[0, 1]")

    def describe(self) -> str:
        return f"lambda={self.lam:g}, rated-not-liked weight {self.weak_weight:g}"

    def to_dict(self) -> dict:
        return asdict(self)
