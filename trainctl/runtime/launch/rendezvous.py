"""Rendezvous failures made short and clear: a host that does not resolve, a port held by another kind
of server, nodes that never join; torch's own waits there run for minutes."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from trainctl.errors import TrainctlError

RENDEZVOUS_GRACE_S = 4  # past launcher.rdzv_timeout, a launch in which no worker started is stopped
HARD_STOP_S = 4  # past that, if torch's C++ still holds the main thread, the process exits


def check_endpoint(endpoint: str) -> None:
    """Refuse a rendezvous host that does not resolve, before torch retries it for minutes."""
    host, _, port = endpoint.rpartition(":")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise TrainctlError(
            f"the rendezvous host '{host}' does not resolve ({exc})",
            where=f"launcher.rdzv_endpoint={endpoint}",
            fix="use the first node's hostname or IP address, as every node can resolve it",
        ) from None


def probe_store(endpoint: str, timeout: int, log: Path) -> None:
    """Connect to the rendezvous store as a client first, unless this node will host it (the port is
    free here). torch's client waits for ever on a port where another kind of server answers: the
    probe waits in a thread, and gives up after `timeout`."""
    from datetime import timedelta

    from torch.distributed import TCPStore
    from torch.distributed.elastic.rendezvous.utils import _matches_machine_hostname

    host, _, port_text = endpoint.rpartition(":")
    port = int(port_text)
    if _matches_machine_hostname(host) and port_is_free(port):
        return
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            TCPStore(host, port, is_master=False, multi_tenant=True, timeout=timedelta(seconds=timeout))
            outcome.append(None)
        except Exception as exc:  # what the client met is the message; the C++ trace is in the log
            outcome.append(exc)

    thread = threading.Thread(target=connect, daemon=True, name="trainctl-store-probe")
    thread.start()
    thread.join(timeout)  # the launch's deadline (timeout + grace) comes after this
    if thread.is_alive() and accepts_connections(host, port):
        raise TrainctlError(
            f"a server that is not a torch.distributed rendezvous store holds {endpoint}: it accepted the "
            f"connection but did not answer within {timeout}s",
            where=str(log),
            fix="choose a free port for launcher.rdzv_endpoint (the same on every node)",
        )
    if thread.is_alive() or (outcome and outcome[0] is not None):
        error = outcome[0] if outcome else None
        reason = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else ""
        raise rendezvous_error(endpoint, timeout, f"no rendezvous store answered {reason}".strip(), log)


def accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def rendezvous_error(endpoint: str, timeout: int, reason: str, log: Path | None = None) -> TrainctlError:
    return TrainctlError(
        f"the rendezvous at {endpoint} did not complete within {timeout}s ({reason})",
        where=str(log) if log else None,
        fix="start the same command on every node with the same launcher.rdzv_endpoint and "
        "launcher.run_id; check that nothing else listens on that port; or raise launcher.rdzv_timeout",
    )


class RendezvousDeadline:
    """Stops a launch in which no worker started `timeout` (+ grace) seconds after it began: first by
    interrupting the main thread; if torch's C++ holds that thread, by printing the error on the
    console and exiting with 2."""

    def __init__(
        self,
        logs: Path,
        timeout: int,
        endpoint: str,
        on_expire: Callable[[], None],
        console_fd: Callable[[], int],
    ) -> None:
        self.logs, self.timeout, self.on_expire, self.console_fd = logs, timeout, on_expire, console_fd
        self.error = rendezvous_error(endpoint, timeout, "not every node joined", logs / "agent.log")
        self.began = time.time()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True, name="trainctl-rdzv-deadline")

    def __enter__(self) -> RendezvousDeadline:
        self.began = time.time()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()

    def waiting(self) -> bool:
        """True while the agent has started no worker in this launch: it makes a folder per attempt
        under logs/elastic/ once the rendezvous completed."""
        attempts = self.logs.glob("elastic/*/attempt_*")
        return not any(p.stat().st_mtime >= self.began for p in attempts)

    def watch(self) -> None:
        if self.done.wait(self.timeout + RENDEZVOUS_GRACE_S) or not self.waiting():
            return
        self.on_expire()
        if self.done.wait(HARD_STOP_S):
            return
        message = f"error: {self.error.what}\n  where: {self.error.where}\n  fix: {self.error.fix}\n"
        os.write(self.console_fd(), message.encode())
        os._exit(self.error.exit_code)
