"""Sweeps: expand Hydra sweep syntax into jobs, name each job by its override set, and track its state."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trainctl.config.compose import GROUP_ALIASES, groups, options
from trainctl.errors import TrainctlError


@dataclass(frozen=True)
class Job:
    """One point of a sweep: its full override set (its identity) and the swept part (its label)."""

    overrides: tuple[str, ...]
    swept: tuple[str, ...]

    @property
    def key(self) -> str:
        """Stable identity: the same override set always maps to the same job directory."""
        return hashlib.sha1("\n".join(sorted(self.overrides)).encode()).hexdigest()[:8]

    @property
    def dirname(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", ",".join(self.swept))[:80] or "job"
        return f"{slug}-{self.key}"

    @property
    def label(self) -> str:
        return " ".join(self.swept) or "(no swept values)"


def glob_options(key: str) -> list[str]:
    """The options a `group=glob(...)` sweep chooses from: the group's YAML files."""
    group = GROUP_ALIASES.get(key, key)
    if group not in groups():
        raise TrainctlError(
            f"glob() sweeps config group options, and '{key}' is not a group",
            fix=f"groups: {', '.join(groups())}",
        )
    return options(group)


def expand(args: Sequence[str]) -> list[Job]:
    """Every combination of the sweep's values (Hydra syntax: a,b  range(...)  choice(...)  glob(...))."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    axes: list[list[str]] = []
    swept_keys: set[int] = set()
    for index, text in enumerate(args):
        try:
            (override,) = parser.parse_overrides([text])
        except HydraException as exc:
            raise TrainctlError(f"malformed override '{text}': {str(exc).splitlines()[0]}") from None
        if not override.is_sweep_override():
            axes.append([text])
            continue
        key = override.get_key_element()
        if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
            values = override.value().filter(glob_options(key))
        elif override.is_discrete_sweep():
            values = list(override.sweep_string_iterator())
        else:
            raise TrainctlError(
                f"'{text}' is an interval sweep: it needs a search algorithm, not a grid",
                fix="list values (a,b,c), or use range(start,stop,step) or choice(...)",
            )
        if not values:
            raise TrainctlError(f"'{text}' sweeps no values")
        axes.append([f"{key}={value}" for value in values])
        swept_keys.add(index)
    jobs = []
    for combo in itertools.product(*axes):
        swept = tuple(combo[i] for i in sorted(swept_keys))
        jobs.append(Job(tuple(combo), swept))
    if len({job.key for job in jobs}) != len(jobs):
        raise TrainctlError("the sweep lists the same job twice", fix="remove repeated values")
    return jobs


def sweep_name(args: Sequence[str], jobs: list[Job]) -> str:
    """The default sweep directory name: the preset and the swept keys, so a sweep re-run with the
    same keys (even with values added) finds its finished jobs."""
    preset = next((a.split("=", 1)[1] for a in args if a.split("=", 1)[0] in ("conf", "preset")), None)
    keys = sorted({item.split("=", 1)[0] for job in jobs for item in job.swept})
    if preset is not None and "conf" in keys:
        preset = None
    name = "+".join(keys) or "single"
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", f"{preset or 'sweep'}-{name}")


def sweep_dir(root: Path, name: str) -> Path:
    return root / "sweeps" / name
