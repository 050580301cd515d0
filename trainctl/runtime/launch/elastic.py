"""Start workers with torch.distributed's elastic agent (the engine of torchrun) and watch them."""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainctl.errors import RunFailed, RunInterrupted, TrainctlError
from trainctl.plan import Plan
from trainctl.runs.lock import LAUNCHER_PID
from trainctl.runs.run_dir import RunDir
from trainctl.runtime.launch.rank import elastic_worker, error_file, rank_log
from trainctl.runtime.launch.rendezvous import RendezvousDeadline, probe_store, rendezvous_error
from trainctl.runtime.launch.stall import Stall, StallWatch
from trainctl.runtime.threads import OURS, WAIT_VARIABLES, apply_wait_policy, wait_policy

TAIL_LINES = 20


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_elastic(
    plan: Plan,
    *,
    nnodes: int,
    nproc: int,
    rdzv_endpoint: str,
    run_id: str,
    max_restarts: int,
    rdzv_timeout: int,
    start_method: str,
    stall_timeout: float,
) -> dict[str, Any]:
    """Run `nproc` workers here as part of an `nnodes`-node job; rank 0's summary when it is here."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from trainctl.observe.rank_view import RankView

    assert plan.run_dir is not None
    run = RunDir(plan.run_dir)
    run.logs.mkdir(parents=True, exist_ok=True)
    config = LaunchConfig(
        min_nodes=nnodes,
        max_nodes=nnodes,
        nproc_per_node=nproc,
        run_id=run_id,
        rdzv_backend="c10d",
        rdzv_endpoint=rdzv_endpoint,
        # read_timeout bounds connecting to the store and each store call: with its default (60 s),
        # a server on the port that is not a c10d store held the job for minutes.
        rdzv_configs={"join_timeout": rdzv_timeout, "read_timeout": rdzv_timeout},
        max_restarts=max_restarts,
        monitor_interval=0.1,
        start_method=start_method,
        shutdown_timeout=60,
        logs_specs=DefaultLogsSpecs(log_dir=str(run.logs / "elastic")),
    )
    for name in ("torch.distributed.elastic", "torch.multiprocessing"):  # failures are reported below
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # Ranks on this node: all of them on one node; on several, any of them may be rank 0.
    ranks = list(range(nproc * nnodes)) if nnodes > 1 else list(range(nproc))
    stopper = Stopper(run)
    watch = StallWatch(run.logs, ranks, stall_timeout, stopper.stalled, require_file=nnodes > 1)
    console = ConsoleStderr(run.logs / "agent.log")
    deadline = RendezvousDeadline(
        run.logs, rdzv_timeout, rdzv_endpoint, stopper.rendezvous_expired, lambda: console.fd
    )
    try:
        with worker_environment(plan, nproc), console, deadline, watch, RankView(run.logs, ranks):
            prepare_start_method(start_method)
            if nnodes > 1:
                probe_store(rdzv_endpoint, rdzv_timeout, run.logs / "agent.log")
            results = elastic_launch(config, elastic_worker)(plan)
    except ChildFailedError as exc:
        raise stopper.stall_error(stall_timeout) or failure(run, exc, max_restarts) from None
    except KeyboardInterrupt:
        if stopper.rendezvous_timed_out:
            raise deadline.error from None
        raise
    except SignalException as exc:
        if stopper.stall is not None:
            raise stopper.stall_error(stall_timeout) from None
        saved = error_file(run, 0).is_file() and "RunInterrupted" in error_file(run, 0).read_text()
        raise RunInterrupted(
            f"stopped by {signal.Signals(exc.sigval).name}; "
            + ("the workers wrote a checkpoint" if saved else "the last checkpoint is kept"),
            where=str(run.checkpoint("last")),
            fix=f"continue with: trainctl train --resume {run.path}",
        ) from None
    except (RendezvousError, RuntimeError, ValueError, TimeoutError) as exc:
        if isinstance(exc, RuntimeError | ValueError | TimeoutError) and not deadline.waiting():
            raise  # not a rendezvous problem: a bug, with its traceback
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        cause = exc.__cause__
        if cause is not None and str(cause).strip():
            reason += f": {str(cause).strip().splitlines()[0]}"
        raise rendezvous_error(rdzv_endpoint, rdzv_timeout, reason, run.logs / "agent.log") from None
    return results.get(0) or {}  # rank 0's summary (keyed by global rank); {} on a node without rank 0


def prepare_start_method(start_method: str) -> None:
    """With forkserver, start the server now: it imports torch and the worker's modules once (no OpenMP
    work runs at import), and each worker forks from it, restarts included. torch._dynamo is among them:
    every optimizer imports it on first use, which costs seconds of CPU that each worker would pay again.

    Call it with stderr sent to the agent's log (ConsoleStderr): the server's stdout goes there too, so
    it does not hold this command's stdout open while it winds down after the command has exited (a
    caller reading our output would wait for it)."""
    if start_method != "forkserver":
        return
    multiprocessing.set_forkserver_preload(
        [
            "trainctl.runtime.launch._in_forkserver",
            "trainctl.runtime.launch.rank",
            "trainctl.runtime.worker",
            "torch._dynamo",
        ]
    )
    sys.stdout.flush()
    console_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        os.dup2(console_stdout, 1)
        os.close(console_stdout)


@contextlib.contextmanager
def worker_environment(plan: Plan, local_workers: int) -> Iterator[None]:
    """Variables the agent and the workers read, set for the launch and restored after it.

    The workers' process is started from it (spawn/forkserver), before torch loads OpenMP there; the
    OpenMP wait policy is decided for all `local_workers` workers' threads together."""
    values = {
        "OMP_NUM_THREADS": str(plan.threads_per_worker),
        LAUNCHER_PID: str(os.getpid()),  # rank 0 joins this process's hold on the run
        # Workers host their own store for each attempt instead of sharing the agent's rendezvous
        # store: with the shared store, gloo's connectFullMesh after a restart was refused or hung in
        # about half of our kill-and-restart trials here; with this setting 6 of 6 restarted cleanly.
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": os.environ.get("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1"),
    }
    saved = {name: os.environ.get(name) for name in (*values, *WAIT_VARIABLES, OURS)}
    os.environ.update(values)
    apply_wait_policy(wait_policy(plan.threads_per_worker * local_workers))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class ConsoleStderr:
    """Sends this process's C-level stderr (torch's C++ warnings and traces) to a log for the block;
    `fd` stays the console's."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.fd = 2

    def __enter__(self) -> ConsoleStderr:
        sys.stderr.flush()
        self.fd = os.dup(2)
        log = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 2)
        os.close(log)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self.fd, 2)
        os.close(self.fd)
        self.fd = 2


class Stopper:
    """Stops the launch from a watcher thread: SIGTERM to this process, whose agent then shuts the
    workers down; a rank that is stuck is killed, as it could not act on SIGTERM."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.stall: Stall | None = None
        self.rendezvous_timed_out = False

    def rendezvous_expired(self) -> None:
        # Before the workers start, the agent has no signal handler: interrupt its main thread instead.
        self.rendezvous_timed_out = True
        _thread.interrupt_main()

    def stalled(self, stall: Stall) -> None:
        self.stall = stall
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1.0)  # the agent is shutting down now: a killed rank is no failure to restart from
        for rank in stall.ranks:
            pid = local_worker_pid(self.run, rank)
            if pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def stall_error(self, timeout: float) -> RunFailed | None:
        if self.stall is None:
            return None
        first = self.stall.ranks[0]
        names = " and ".join(f"rank {r}" for r in self.stall.ranks)
        log = rank_log(self.run, first)
        tail = log.read_text(errors="replace").splitlines()[-TAIL_LINES:] if log.is_file() else []
        error = RunFailed(
            f"{names} reported nothing for over {timeout:g}s (launcher.stall_timeout); every rank was "
            f"stopped. Last lines of rank {first}'s log:\n" + "\n".join(tail),
            where=str(log),
            fix="if one step or evaluation really takes longer, raise launcher.stall_timeout; otherwise "
            "the rank is stuck (a hung collective, file system or deadlock): read its log",
        )
        error.status = "stalled"  # what run.json records as the run's ending
        return error


def local_worker_pid(run: RunDir, rank: int) -> int | None:
    """The pid of the rank's latest process when it runs on this host (from its log's start lines)."""
    log = rank_log(run, rank)
    if not log.is_file():
        return None
    lines = log.read_text(errors="replace").splitlines()
    starts = [line.split() for line in lines if line.startswith("rank ")]
    for words in reversed(starts):  # "rank R/W pid P restart N host H threads T"
        if len(words) >= 8 and words[2] == "pid" and words[6] == "host":
            return int(words[3]) if words[7] == socket.gethostname() else None
    return None


def failure(run: RunDir, exc: Any, max_restarts: int = 0) -> TrainctlError:
    """The error to show when workers failed: a user error a rank reported, or the root-cause rank's log
    tail. The root cause is a rank killed by a signal, else one that stopped without reporting its end
    (crashed), else the first failure the agent saw: the others then only lost their peer."""
    killed = sorted(r for r, f in exc.failures.items() if f.exitcode < 0)  # by a signal, from outside
    silent = [r for r in ranks_seen(run) if not reported_end(run, r)]
    rank = (killed or silent or [exc.get_first_failure()[0]])[0]
    reported = error_file(run, rank)
    if reported.is_file():
        data = json.loads(reported.read_text())
        kind = {"RunInterrupted": RunInterrupted, "RunFailed": RunFailed}.get(data["type"], TrainctlError)
        return kind(data["what"], where=data["where"], fix=data["fix"])
    code = exc.failures[rank].exitcode if rank in exc.failures else 0
    if rank in exc.failures:
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    else:
        how = "stopped without reporting (killed or crashed)"
    log = rank_log(run, rank)
    tail = log.read_text(errors="replace").splitlines()[-TAIL_LINES:] if log.is_file() else []
    error = RunFailed(
        f"rank {rank} {how}; every rank was stopped. Last lines of its log:\n" + "\n".join(tail),
        where=str(log),
        fix="read the rank's log; "
        + (
            f"the job restarted {max_restarts} time(s) (launcher.max_restarts={max_restarts}) and failed "
            f"again: resume it with `trainctl train --resume {run.path}` once the cause is fixed"
            if max_restarts
            else "with launcher.max_restarts=N the job restarts up to N times from its last checkpoint"
        ),
    )
    # how the run ends in run.json: a rank that stopped without a word was stopped by a signal
    error.status = "killed" if code < 0 or rank not in exc.failures else "failed"
    return error


def ranks_seen(run: RunDir) -> list[int]:
    """Ranks that left an events file, in order."""
    return sorted(int(p.name[4:].split(".")[0]) for p in run.logs.glob("rank*.events.jsonl"))


def reported_end(run: RunDir, rank: int) -> bool:
    """Whether the rank's events file ends with its end record (a rank that was killed has none)."""
    lines = (run.logs / f"rank{rank}.events.jsonl").read_text().splitlines()
    return bool(lines) and '"kind": "end"' in lines[-1]
