"""A DataLoader worker ends with the rank that reads from it, even when that rank is SIGKILLed.

Workers fork from the rank's forkserver, which outlives a killed rank while any worker lives (each
worker holds the pipe whose end tells the server to stop), and a worker only watches the server: the
pair would live on, holding the run's lock. So each worker watches its rank's pid (a pidfd, Linux 5.3+)
from a daemon thread and kills itself when the rank has ended; the server then sees its pipe close."""

from __future__ import annotations

import os
import select
import signal
import threading


def end_with(pid: int) -> None:
    """SIGKILL this process as soon as process `pid` has ended (now, if it already has)."""
    try:
        watched = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGKILL)
        return
    except (AttributeError, OSError):  # no pidfd here: torch's watchdog still ends idle workers
        return

    def wait() -> None:
        select.select([watched], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait, name=f"end-with-{pid}", daemon=True).start()
