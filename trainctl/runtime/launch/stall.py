"""The stall watch: a rank that reports nothing for launcher.stall_timeout seconds stops the job."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

POLL_S = 0.5


@dataclass
class RankClock:
    """When one rank's events file last grew, and whether its latest record is its end."""

    path: Path
    since: float  # time.monotonic() of the last growth (or of the watch's start)
    size: int = -1
    ended: bool = False

    def refresh(self, now: float) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size != self.size:
            self.size, self.since = size, now
            self.ended = last_kind(self.path) == "end"  # a restarted rank writes again: watched again


def last_kind(path: Path) -> str | None:
    """The `kind` of the last complete record in an events file."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = f.read().decode(errors="replace").splitlines()
        return json.loads(lines[-1]).get("kind") if lines else None
    except (OSError, ValueError):
        return None


@dataclass
class Stall:
    """Ranks that reported nothing for longer than the timeout, the most silent first."""

    ranks: list[int]
    silent_s: dict[int, float] = field(default_factory=dict)


class StallWatch:
    """Polls logs/rank<N>.events.jsonl of `ranks`; calls `on_stall` once when any rank that has not
    ended stays silent for `timeout_s`. With `require_file`, a rank is watched only once its file
    exists (ranks of other nodes, whose files may never appear here)."""

    def __init__(
        self,
        logs: Path,
        ranks: list[int],
        timeout_s: float,
        on_stall: Callable[[Stall], None],
        *,
        require_file: bool = False,
        poll_s: float = POLL_S,
    ) -> None:
        self.logs, self.ranks, self.timeout_s = logs, ranks, timeout_s
        self.on_stall, self.require_file, self.poll_s = on_stall, require_file, poll_s
        self.stall: Stall | None = None
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True, name="trainctl-stall-watch")

    def __enter__(self) -> StallWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()

    def loop(self) -> None:
        start = time.monotonic()
        clocks = {r: RankClock(self.logs / f"rank{r}.events.jsonl", start) for r in self.ranks}
        while not self.stop_event.wait(self.poll_s):
            now = time.monotonic()
            silent: dict[int, float] = {}
            for rank, clock in clocks.items():
                clock.refresh(now)
                if clock.ended or (self.require_file and clock.size < 0):
                    continue
                if now - clock.since > self.timeout_s:
                    silent[rank] = now - clock.since
            if silent:
                self.stall = Stall(sorted(silent, key=lambda r: (-silent[r], r)), silent)
                self.on_stall(self.stall)
                return
