"""A job's processes end with their launcher: Linux's parent-death signal, checked against its pid."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from trainctl.runs.lock import LAUNCHER_PID

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def parent_of(pid: int) -> int:
    """The parent pid of `pid` (0 when it is gone or unreadable)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - read whole at once
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past the command name


def end_with_launcher() -> None:
    """Have the kernel SIGKILL this process when its parent ends (the launcher, or the forkserver that the
    launcher started). The setting comes after this process started, so the parent may already have
    ended: then the parent is no longer the launcher or its child, and this process ends now.

    Outside Linux, or without a launcher named in the environment (torchrun), only the signal is set."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    launcher = int(os.environ.get(LAUNCHER_PID) or 0)
    if not launcher:
        return
    parent = os.getppid()
    if launcher not in (parent, parent_of(parent)):
        os.kill(os.getpid(), signal.SIGKILL)
