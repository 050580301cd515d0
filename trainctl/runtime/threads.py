"""The thread budget of a worker: the CPUs this process may really use, divided among its local workers."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
LOADAVG = Path("/proc/loadavg")
# The OpenMP wait policy (libgomp reads it once, when torch is imported, so it is decided before that:
# cli main for a one-process job, the launcher for its workers). MNIST MLP, 1 process x 2 threads,
# s/epoch on this 2-core box (bench/plain_mlp.py, median of 2 alternating runs each):
#
#   wait policy                               quiet box   one other CPU-bound process
#   libgomp default (spin 300k, then sleep)     0.304        1.690
#   OMP_WAIT_POLICY=ACTIVE                      0.308        1.745
#   OMP_WAIT_POLICY=PASSIVE                     0.764        0.659
#   GOMP_SPINCOUNT=1000                         0.332        0.987
#   GOMP_SPINCOUNT=10000                        0.326        2.721
#   1 thread (reference)                        0.518        0.687
#
# A passive wait puts each thread to sleep between the many short parallel regions of a step and
# halves a small model's speed on a quiet box; a spinning thread steals the core that another process
# needs, and no bounded spin count was good under load. So: libgomp's default when the job's threads
# fit the CPUs that nothing else is using, PASSIVE only when they do not (oversubscribed).
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# Set beside a wait policy that trainctl chose (not the user), so a later decision may replace it.
OURS = "TRAINCTL_OMP_WAIT"


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


def runnable_elsewhere(loadavg: Path = LOADAVG, samples: int = 5) -> int:
    """Processes running or ready to run right now besides this one (the kernel's runnable count in
    /proc/loadavg, the median of a few samples 2 ms apart); 0 where it cannot be read."""
    counts: list[int] = []
    for i in range(samples):
        try:
            counts.append(int(loadavg.read_text().split()[3].split("/")[0]))
        except (OSError, IndexError, ValueError):
            return 0
        if i + 1 < samples:
            time.sleep(0.002)
    return max(0, sorted(counts)[len(counts) // 2] - 1)


@dataclass(frozen=True)
class WaitPolicy:
    """The OpenMP wait variables to give processes that have not imported torch yet, and why."""

    env: dict[str, str]
    reason: str


def wait_policy(
    threads_on_host: int | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cpus: int | None = None,
    busy_elsewhere: int | None = None,
) -> WaitPolicy:
    """libgomp's default wait when the job's `threads_on_host` (all its local workers' threads; None:
    the default budget, every usable CPU) fit the CPUs that `busy_elsewhere` other runnable processes
    leave free; PASSIVE when they do not. The user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins."""
    environ = os.environ if environ is None else environ
    if OURS not in environ and any(name in environ for name in WAIT_VARIABLES):
        return WaitPolicy({}, "set by the user")
    if cpus is None:
        cpus = usable_cpus()[0]
    threads = cpus if threads_on_host is None else threads_on_host
    busy = runnable_elsewhere() if busy_elsewhere is None else busy_elsewhere
    free = max(0, cpus - busy)
    if threads <= free or threads <= 1:
        return WaitPolicy({}, f"libgomp default: {threads} thread(s) fit {free} free CPU(s) of {cpus}")
    return WaitPolicy(
        {**PASSIVE, OURS: "1"},
        f"PASSIVE: {threads} thread(s) on {cpus} CPU(s) with {busy} other process(es) running",
    )


def apply_wait_policy(policy: WaitPolicy, environ: MutableMapping[str, str] | None = None) -> None:
    """Put `policy` into `environ` (default os.environ), replacing a policy trainctl set earlier; the
    user's own variables stay."""
    environ = os.environ if environ is None else environ
    if policy.reason == "set by the user":
        return
    if OURS in environ:
        for name in (*WAIT_VARIABLES, OURS):
            environ.pop(name, None)
    environ.update(policy.env)
