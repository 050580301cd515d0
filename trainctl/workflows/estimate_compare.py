"""`trainctl plan --estimate --compare`: estimate each variant of a sweep, mark the ones that do not fit
the memory available, and suggest the fastest one that fits with the command that trains it."""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainctl.errors import RunInterrupted, TrainctlError
from trainctl.workflows.estimate import Estimate
from trainctl.workflows.sweep_grid import expand

UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass
class Memory:
    """Memory the job may use: bytes for all ranks of the machine (CPU) or per device (GPU)."""

    bytes: int
    source: str
    per_device: bool = False


def parse_size(text: str) -> int:
    """'512M', '2G', '1.5GiB', '1000000' -> bytes (binary units)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise TrainctlError(
            f"--memory-budget {text!r} is not a size", fix="write bytes or a size such as 512M, 2G, 1.5GiB"
        )
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def read_number(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().split()[0])
    return None


def cgroup_room(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes left under this process's cgroup memory limit (v2 memory.max, v1 limit_in_bytes); None
    when there is no limit."""
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        limit, usage = read_number(root / limit_file), read_number(root / usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            return max(limit - usage, 0)
    return None


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def available_memory(device: str, budget: int | None = None) -> Memory | None:
    """What a job may use here: --memory-budget when given; on a GPU the free memory of the emptiest
    device; on the CPU the smaller of MemAvailable and the room under the cgroup limit."""
    if budget is not None:
        return Memory(budget, "--memory-budget", per_device=device == "cuda")
    if device == "cuda":
        import torch

        free = min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
        return Memory(free, "free GPU memory (torch.cuda.mem_get_info)", per_device=True)
    found = [
        (value, source)
        for value, source in ((mem_available(), "MemAvailable"), (cgroup_room(), "the cgroup memory limit"))
        if value is not None
    ]
    if not found:
        return None
    value, source = min(found)
    return Memory(value, source)


def needed_bytes(estimate: Estimate, per_device: bool) -> int:
    """Memory the job needs: its largest rank per device, or all its ranks together on one machine
    (resident sets counted whole: pages the ranks share are counted in each, an upper bound)."""
    peaks = estimate.peak_memory_bytes_per_rank
    return max(peaks) if per_device else sum(peaks)


@dataclass
class Variant:
    """One variant of a comparison: its overrides, and its estimate or why it cannot run."""

    overrides: list[str]
    label: str
    estimate: Estimate | None = None
    error: str | None = None
    fits: bool | None = None

    @property
    def command(self) -> str:
        return shlex.join(["trainctl", "train", *self.overrides])


@dataclass
class Comparison:
    variants: list[Variant]
    memory: Memory | None
    suggested: Variant | None


Measure = Callable[[list[str]], Estimate]


def compare(
    args: Sequence[str],
    measure: Measure,
    *,
    device: Callable[[Estimate], str] = lambda estimate: estimate.device,
    budget: int | None = None,
    on_variant: Callable[[Variant], None] = lambda variant: None,
) -> Comparison:
    """Estimate every combination of the sweep's values (Hydra syntax: a,b  range(...)  choice(...)),
    one after the other; a variant the planner refuses is listed with its reason."""
    jobs = expand(args)
    variants = []
    memory: Memory | None = None
    for job in jobs:
        variant = Variant(list(job.overrides), job.label)
        try:
            variant.estimate = measure(list(job.overrides))
        except RunInterrupted:
            raise
        except TrainctlError as exc:
            variant.error = exc.what.splitlines()[0]
        if variant.estimate is not None:
            memory = memory or available_memory(device(variant.estimate), budget)
            if memory is not None:
                variant.fits = needed_bytes(variant.estimate, memory.per_device) <= memory.bytes
        on_variant(variant)
        variants.append(variant)
    candidates = [v for v in variants if v.estimate is not None and v.fits is not False]
    suggested = min(candidates, key=lambda v: v.estimate.total_seconds) if candidates else None  # type: ignore[union-attr]
    return Comparison(variants, memory, suggested)
