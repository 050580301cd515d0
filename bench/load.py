"""Whether a benchmark ran on a quiet machine: the load average at the start and, while a ratio is
measured, the processes running that are not the benchmark's own."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")
UNDER_LOAD = "under load, not a result"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_line() -> str:
    """The load averages and cores, printed when `make bench` starts."""
    one, five, fifteen = os.getloadavg()
    quiet = "quiet" if one <= cores() / 2 else f"busy: above half the cores, ratios here may be {UNDER_LOAD}"
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {cores()} cores ({quiet})"


def parents(proc: Path = PROC) -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state letter) of every process readable in `proc`."""
    table: dict[int, tuple[int, str]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def descendants(root: int, table: dict[int, tuple[int, str]]) -> set[int]:
    """`root` and every process it started, at any depth."""
    ours = {root}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in table.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                grew = True
    return ours


def running_elsewhere(me: int, table: dict[int, tuple[int, str]]) -> int:
    """Processes in state R that are neither `me` nor started by it (at any depth)."""
    ours = descendants(me, table)
    return sum(1 for pid, (_, state) in table.items() if state == "R" and pid not in ours)


class ForeignLoad:
    """Samples, while a measurement runs, how many processes outside this benchmark are running.

    The 1-minute load average cannot judge a ratio: the benchmark's own workers raise it to the core
    count. A mean of foreign running processes above half the cores marks the ratio as under load."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s = every_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(running_elsewhere(os.getpid(), parents()))

    def __enter__(self) -> ForeignLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 0.0

    def verdict(self) -> str:
        """"" on a quiet machine, else a note to print beside the ratio."""
        if self.mean <= cores() / 2:
            return ""
        return f"  [{UNDER_LOAD}: {self.mean:.1f} other processes running on average]"
