"""Start workers with torch.distributed's elastic agent (the engine of torchrun) and watch them."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
from typing import Any

from trainctl.errors import RunFailed, RunInterrupted, TrainctlError
from trainctl.plan import Plan
from trainctl.runs.run_dir import RunDir
from trainctl.runtime.launch.rank import elastic_worker, error_file, rank_log

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
        rdzv_configs={"join_timeout": rdzv_timeout},
        max_restarts=max_restarts,
        monitor_interval=0.1,
        start_method=start_method,
        shutdown_timeout=60,
        logs_specs=DefaultLogsSpecs(log_dir=str(run.logs / "elastic")),
    )
    os.environ["OMP_NUM_THREADS"] = str(plan.threads_per_worker)
    # Workers host their own store for each attempt instead of sharing the agent's rendezvous store:
    # with the shared store, gloo's connectFullMesh after a restart was refused or hung in about
    # half of our kill-and-restart trials here; with this setting 6 of 6 restarted cleanly.
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    for name in ("torch.distributed.elastic", "torch.multiprocessing"):  # failures are reported below
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # Ranks on this node: all of them on one node; on several, any of them may be rank 0.
    ranks = list(range(nproc * nnodes)) if nnodes > 1 else list(range(nproc))
    try:
        with RankView(run.logs, ranks):
            results = elastic_launch(config, elastic_worker)(plan)
    except ChildFailedError as exc:
        raise failure(run, exc) from None
    except SignalException as exc:
        saved = error_file(run, 0).is_file() and "RunInterrupted" in error_file(run, 0).read_text()
        raise RunInterrupted(
            f"stopped by {signal.Signals(exc.sigval).name}; "
            + ("the workers wrote a checkpoint" if saved else "the last checkpoint is kept"),
            where=str(run.checkpoint("last")),
            fix=f"continue with: trainctl train --resume {run.path}",
        ) from None
    except RendezvousError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainctlError(
            f"the rendezvous at {rdzv_endpoint} did not complete within {rdzv_timeout}s ({reason})",
            fix=f"start the same command on all {nnodes} nodes with the same launcher.rdzv_endpoint and "
            "launcher.run_id, or raise launcher.rdzv_timeout",
        ) from None
    return results.get(0) or {}  # rank 0's summary (keyed by global rank); {} on a node without rank 0


def failure(run: RunDir, exc: Any) -> TrainctlError:
    """The error to show when workers failed: a user error a rank reported, or the root-cause rank's log
    tail. The root cause is a rank that stopped without reporting its end (killed, crashed), else the
    first failure the agent saw: the others then only lost their peer."""
    silent = [r for r in ranks_seen(run) if not reported_end(run, r)]
    rank = silent[0] if silent else exc.get_first_failure()[0]
    reported = error_file(run, rank)
    if reported.is_file():
        data = json.loads(reported.read_text())
        kind = {"RunInterrupted": RunInterrupted, "RunFailed": RunFailed}.get(data["type"], TrainctlError)
        return kind(data["what"], where=data["where"], fix=data["fix"])
    if rank in exc.failures:
        code = exc.failures[rank].exitcode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    else:
        how = "stopped without reporting (killed or crashed)"
    log = rank_log(run, rank)
    tail = log.read_text(errors="replace").splitlines()[-TAIL_LINES:] if log.is_file() else []
    return RunFailed(
        f"rank {rank} {how}; every rank was stopped. Last lines of its log:\n" + "\n".join(tail),
        where=str(log),
        fix="read the rank's log; with launcher.max_restarts>0 the job restarts from its last checkpoint",
    )


def ranks_seen(run: RunDir) -> list[int]:
    """Ranks that left an events file, in order."""
    return sorted(int(p.name[4:].split(".")[0]) for p in run.logs.glob("rank*.events.jsonl"))


def reported_end(run: RunDir, rank: int) -> bool:
    """Whether the rank's events file ends with its end record (a rank that was killed has none)."""
    lines = (run.logs / f"rank{rank}.events.jsonl").read_text().splitlines()
    return bool(lines) and '"kind": "end"' in lines[-1]
