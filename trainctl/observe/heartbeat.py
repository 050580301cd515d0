"""Sink that keeps run.json's `heartbeat` fresh, so `runs ls` can tell a running run from a dead one."""

from __future__ import annotations

import time

from trainctl.observe.events import Event
from trainctl.runs.run_dir import RunDir

HEARTBEAT_EVERY_S = 30.0


class Heartbeat:
    """Stamps run.json with the time of the latest event, at most every HEARTBEAT_EVERY_S seconds."""

    def __init__(self, run: RunDir, every_s: float = HEARTBEAT_EVERY_S) -> None:
        self.run = run
        self.every_s = every_s
        self.last = -float("inf")

    def emit(self, event: Event) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.run.update_meta(heartbeat=time.strftime("%Y-%m-%dT%H:%M:%S"))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
