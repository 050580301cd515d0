"""Ctrl-C as `Interrupted`: a KeyboardInterrupt that, once handled, leaves the exit code to trainctl."""

from __future__ import annotations

import signal
import threading
from types import FrameType

# CPython (3.11, 3.12) marks the interpreter to kill itself with SIGINT at exit when an exception of
# exactly KeyboardInterrupt leaves code run from a string (exec/eval of source: dataclasses, namedtuples
# and other modules build methods that way while they are imported), even when a caller catches it.
# Under `python -m trainctl`, a Ctrl-C that lands there ends the process as killed by SIGINT (-2)
# after trainctl has handled it and chosen exit code 130. A subclass is not marked, and every
# `except KeyboardInterrupt` still catches it.


class Interrupted(KeyboardInterrupt):
    """The user pressed Ctrl-C (SIGINT)."""


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def handle_ctrl_c() -> None:
    """Make SIGINT raise Interrupted in this process, where it still has Python's default handler (a
    shell that started us with SIGINT ignored keeps it ignored)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, raise_interrupted)
