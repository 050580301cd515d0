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
    # the minimum-evidence rule of the k-NN methods: a similarity from n common raters is scaled by
    # (n - 1) / (n - 1 + shrinkage), so items with a few ratings do not reach top lists on them. 10 kept
    # every item with 1-4 ratings out of all 610 top-10s of a latest-small-shaped folder (unshrunk: 36
    # slots of 6 users; 2 and 5 did too, but leave an item with 4 co-raters up to 0.6 and 0.375 of its
    # similarity); on ml-100k it cost 0.003 of mean validation nDCG@10 (0.2035 against 0.2065)
    shrinkage: float = ranged(10.0, "[0, inf)")

    def describe(self) -> str:
        return (
            f"k={self.k} neighbours per item, asymmetric cosine alpha={self.alpha:g}, "
            f"shrinkage {self.shrinkage:g}"
        )

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
