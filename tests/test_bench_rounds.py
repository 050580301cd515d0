"""The benches' rounds: sides measured in turns with the order reversed every other round, and a
reference run on both sides of the measured one giving its ratio and an A/A control."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.common import bracketed, in_rounds


def test_rounds_reverse_the_order_every_other_round() -> None:
    order: list[str] = []

    def side(label: str) -> tuple[str, Callable[[], int]]:
        def measure() -> int:
            order.append(label)
            return len(order)  # which run this was

        return label, measure

    seen = in_rounds(3, [side("a"), side("b"), side("c")])
    assert order == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert seen == {"a": [1, 6, 7], "b": [2, 5, 8], "c": [3, 4, 9]}


def test_the_measured_run_is_compared_with_the_mean_of_the_references_around_it() -> None:
    # A steady drift of +10% per run: references at 1.0 and 1.2 around a measured run at 1.1.
    ratios, control = bracketed([1.1, 2.2], [1.0, 2.4], [1.2, 2.0])
    assert ratios == pytest.approx([1.0, 1.0])
    assert control == pytest.approx([1.2, 2.0 / 2.4])
