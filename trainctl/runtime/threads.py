"""The thread budget of a worker: the CPUs this process may really use, divided among its local workers."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
# With libgomp's default (active) wait policy an idle OpenMP thread spins for a while before it
# sleeps. On a box with other CPU-bound work, 2 threads then ran a plain MNIST MLP epoch in 43-75 s
# against 4 s on 1 thread; with PASSIVE, 2 threads took 0.8-4.9 s (bench threads has the figures).
# libgomp reads it once, when torch is imported, so it is set before that (cli main, worker start).
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}


@dataclass(frozen=True)
class ThreadBudget:
    """Threads per worker and, for people, where the number came from."""

    threads: int
    source: str


def positive_int(text: str | None) -> int | None:
    """`text` as an integer >= 1, else None (unset, empty, malformed)."""
    try:
        value = int(str(text).strip())
    except ValueError:
        return None
    return value if value >= 1 else None


def cgroup_dirs(root: Path, self_cgroup: Path) -> list[Path]:
    """The cgroup folders that may limit this process, innermost first (v2 and v1 cpu controller)."""
    dirs: list[Path] = []
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        names = controllers.split(",")
        if controllers == "":
            mount = root if (root / "cgroup.controllers").exists() else root / "unified"
        elif "cpu" in names:
            mount = root / controllers if (root / controllers).is_dir() else root / "cpu"
        else:
            continue
        folder = mount / path.lstrip("/")
        while True:  # every level up to the mount: the tightest limit wins
            dirs.append(folder)
            if folder == mount or mount not in folder.parents:
                break
            folder = folder.parent
    for fallback in (root, root / "cpu"):  # no /proc/self/cgroup (or a namespace): the mount itself
        if fallback not in dirs:
            dirs.append(fallback)
    return dirs


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> tuple[float, Path] | None:
    """The tightest CPU quota (in CPUs) of this process's cgroups and the file that sets it, or None."""
    found: list[tuple[float, Path]] = []
    for folder in cgroup_dirs(root, self_cgroup):
        v2 = folder / "cpu.max"  # "QUOTA PERIOD" or "max PERIOD"
        v1 = folder / "cpu.cfs_quota_us"  # "-1" for none; the period beside it
        try:
            if v2.is_file():
                quota, period = (v2.read_text().split() + ["100000"])[:2]
                if quota != "max" and int(period) > 0:
                    found.append((int(quota) / int(period), v2))
            elif v1.is_file():
                quota = int(v1.read_text().strip())
                period = int((folder / "cpu.cfs_period_us").read_text().strip())
                if quota > 0 and period > 0:
                    found.append((quota / period, v1))
        except (OSError, ValueError):
            continue
    return min(found, key=lambda item: item[0]) if found else None


def usable_cpus(
    affinity: set[int] | None = None, cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP
) -> tuple[int, str]:
    """The CPUs this process may run on: the affinity mask, capped by the cgroup's CPU quota."""
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    cpus = len(affinity) or os.cpu_count() or 1
    source = f"{cpus} CPU(s) in the affinity mask"
    quota = cgroup_cpu_quota(cgroup_root, self_cgroup)
    if quota is not None and quota[0] < cpus:
        cpus = max(1, math.floor(quota[0]))
        source = f"cgroup CPU quota {quota[0]:g} CPU(s) ({quota[1]})"
    return cpus, source


def thread_budget(
    local_workers: int,
    requested: int | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    affinity: set[int] | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    self_cgroup: Path = SELF_CGROUP,
) -> ThreadBudget:
    """Threads for each of `local_workers` workers that share this process's CPUs.

    `requested` (trainer.threads) wins; then OMP_NUM_THREADS, which is per process already (torchrun
    sets it for its workers); then SLURM_CPUS_PER_TASK; then the affinity mask and the cgroup quota.
    CPU counts are divided among the local workers, never below one thread each.
    """
    environ = os.environ if environ is None else environ
    if requested is not None:
        return ThreadBudget(requested, "trainer.threads")
    omp = positive_int(environ.get("OMP_NUM_THREADS"))
    if omp is not None:
        return ThreadBudget(omp, f"OMP_NUM_THREADS={omp}")
    slurm = positive_int(environ.get("SLURM_CPUS_PER_TASK"))
    if slurm is not None:
        cpus, source = slurm, f"SLURM_CPUS_PER_TASK={slurm}"
    else:
        cpus, source = usable_cpus(affinity, cgroup_root, self_cgroup)
    workers = max(1, local_workers)
    if workers > 1:
        source += f" / {workers} local workers"
    return ThreadBudget(max(1, cpus // workers), source)


def wait_policy_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The OpenMP wait policy to give a process that has not imported torch yet; the user's own
    OMP_WAIT_POLICY or GOMP_SPINCOUNT wins."""
    environ = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return {}
    return dict(WAIT_POLICY)
