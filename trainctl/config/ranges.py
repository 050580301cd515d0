"""Value ranges declared beside the schema fields (`ranged`), and the one check of a config against them."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainctl.errors import TrainctlError

INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")


@dataclass(frozen=True)
class Range:
    """An interval such as [0, 1) or (0, inf): a bound of inf is open, so a value in range is finite."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool

    @classmethod
    def parse(cls, text: str) -> Range:
        match = INTERVAL.match(text)
        if match is None:
            raise ValueError(f"not an interval: {text!r} (write e.g. '[0, 1)' or '(0, inf)')")
        opening, low, high, closing = match.groups()
        return cls(float(low), float(high), opening == "[", closing == "]")

    def __contains__(self, value: float) -> bool:
        if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def __str__(self) -> str:
        def bound(x: float) -> str:
            return "inf" if math.isinf(x) else f"{x:g}"

        return (
            f"{'[' if self.low_closed else '('}{bound(self.low)}, "
            f"{bound(self.high)}{']' if self.high_closed else ')'}"
        )


def ranged(
    default: Any = dataclasses.MISSING, interval: str = "", *, factory: Callable[[], Any] | None = None
) -> Any:
    """A dataclass field whose value (each item, for a list) must lie in `interval`; None is always
    accepted (it switches an option off). E.g. `dropout: float = ranged(0.0, "[0, 1)")`."""
    metadata = {"range": Range.parse(interval)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared_ranges(schema: Any) -> dict[str, Range]:
    """The ranged fields of a dataclass (its own and inherited), by name."""
    return {f.name: f.metadata["range"] for f in dataclasses.fields(schema) if "range" in f.metadata}


def check_ranges(config: Any, prefix: str = "") -> int:
    """Raise a TrainctlError for the first value outside its declared range, walking nested dataclasses;
    return how many values were checked."""
    checked = 0
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            checked += check_ranges(value, f"{key}.")
            continue
        interval = f.metadata.get("range")
        if interval is None or value is None:
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            checked += 1
            if item not in interval:
                many = isinstance(value, list | tuple)
                raise TrainctlError(
                    f"{key}={value} "
                    + (f"has {item} outside {interval}" if many else f"is outside {interval}"),
                    where=key,
                    fix=f"give {key} {'items' if many else 'a value'} in {interval}"
                    + (" (finite)" if math.isinf(interval.high) or math.isinf(interval.low) else ""),
                )
    return checked
