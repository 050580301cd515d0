"""Runs that hold on any machine: safe worker start, the stall watch, the thread budget, run identity
under torchrun / srun / Slurm ids, the sbatch script and rendezvous failures."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, torchrun, trainctl
from trainctl.errors import TrainctlError
from trainctl.runs.identity import claim_run
from trainctl.runs.run_dir import RunDir, record_run
from trainctl.runtime.launch.elastic import free_port
from trainctl.runtime.launch.env import TorchrunEnv, first_host, port_for_job
from trainctl.runtime.threads import thread_budget
from trainctl.training.checkpoint import load_checkpoint

TINY = [
    "conf=mlp_mnist",
    "model.dropout=0",
    "trainer.batch_size=16",
    "trainer.epochs=2",
    "trainer.schedule=constant",
    "optim=sgd",
    "optim.lr=0.05",
]
BOUND_S = 300  # a hung launch is killed by this; never a timing assertion


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def train_tiny(
    runs: Path, data: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return trainctl("train", *TINY, f"data.root={data}", *args, runs=runs, timeout=BOUND_S, env=env)


def rank_start_lines(run: Path, rank: int) -> list[str]:
    """The "rank R/W pid P restart N host H threads T" lines a worker writes first into its log."""
    text = (run / "logs" / f"rank{rank}.log").read_text()
    return [line for line in text.splitlines() if line.startswith(f"rank {rank}/")]


# ---------------------------------------------------------------- workers start safely


def test_two_workers_with_two_threads_each_finish(tiny_mnist_module: Path, tmp_path: Path) -> None:
    """The parent plans (OpenMP work on 2 threads) before it starts the workers: forked copies of it
    hung for ever in gomp_team_barrier_wait_end."""
    ok(train_tiny(tmp_path, tiny_mnist_module, "launcher.nproc=2", "parallel=ddp", "trainer.threads=2"))
    run = (tmp_path / "latest").resolve()
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    for rank in (0, 1):
        assert rank_start_lines(run, rank)[0].endswith("threads 2")


def test_once_trainctl_exits_no_process_it_started_holds_its_output(tmp_path: Path) -> None:
    """A caller reading trainctl's output (a test, CI, a script) gets end-of-file when trainctl exits:
    the forkserver that outlives it by a moment writes to the agent's log, not to our pipes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainctl", "train", "trainer.epochs=1"],
        cwd=REPO,
        env={**os.environ, "TRAINCTL_RUNS_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.wait(timeout=BOUND_S) == 0  # the output is a few kB: it fits in the pipes
    for pipe in (proc.stdout, proc.stderr):
        assert pipe is not None
        os.set_blocking(pipe.fileno(), False)
        while True:
            try:
                chunk = os.read(pipe.fileno(), 65536)
            except BlockingIOError:
                pytest.fail("a process that trainctl started still holds its output open")
            if not chunk:
                break  # end of file: no writer is left


def test_one_worker_with_restarts_finishes(tiny_mnist_module: Path, tmp_path: Path) -> None:
    ok(
        train_tiny(
            tmp_path, tiny_mnist_module, "launcher.nproc=1", "launcher.max_restarts=2", "trainer.threads=2"
        )
    )
    run = (tmp_path / "latest").resolve()
    assert rank_start_lines(run, 0)[0].endswith("threads 2")  # an elastic worker, not this process


def test_a_silent_rank_is_named_and_the_job_stopped(tiny_mnist_module: Path, tmp_path: Path) -> None:
    result = train_tiny(
        tmp_path,
        tiny_mnist_module,
        "launcher.nproc=2",
        "parallel=ddp",
        "trainer.threads=1",
        "launcher.stall_timeout=15",  # rank 1 never beats: the longest silent, however slow the start
        "launcher.max_restarts=1",  # a stall stops the job: it is not restarted
        env={"TRAINCTL_FAULT_STALL_RANK": "1"},
    )
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert "rank 1" in error and "reported nothing for over 15s (launcher.stall_timeout)" in error
    assert "every rank was stopped" in error
    (run,) = (path.parent for path in tmp_path.glob("*/*/run.json"))  # `latest` moves once a run starts
    assert json.loads((run / "run.json").read_text())["status"] == "stalled"
    assert len(rank_start_lines(run, 1)) == 1  # no restart


# ---------------------------------------------------------------- thread budget


def test_thread_budget_explicit_settings_win() -> None:
    assert thread_budget(2, 3, environ={"OMP_NUM_THREADS": "1"}).threads == 3
    omp = thread_budget(
        2, environ={"OMP_NUM_THREADS": "1", "SLURM_CPUS_PER_TASK": "8"}, affinity={0, 1, 2, 3}
    )
    assert (omp.threads, omp.source) == (1, "OMP_NUM_THREADS=1")
    slurm = thread_budget(1, environ={"SLURM_CPUS_PER_TASK": "3"}, affinity=set(range(16)))
    assert (slurm.threads, slurm.source) == (3, "SLURM_CPUS_PER_TASK=3")
    assert thread_budget(2, environ={"SLURM_CPUS_PER_TASK": "3"}).threads == 1


def test_thread_budget_from_the_affinity_mask_divided_among_workers(tmp_path: Path) -> None:
    no_cgroup = {"cgroup_root": tmp_path / "none", "self_cgroup": tmp_path / "none" / "cgroup"}
    assert thread_budget(1, environ={}, affinity={0}, **no_cgroup).threads == 1
    four = thread_budget(2, environ={}, affinity={0, 1, 2, 3}, **no_cgroup)
    assert (four.threads, four.source) == (2, "4 CPU(s) in the affinity mask / 2 local workers")
    assert thread_budget(4, environ={}, affinity={0, 1}, **no_cgroup).threads == 1  # never below one


def test_thread_budget_from_a_cgroup_quota(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "job").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu\n")
    (v2 / "cpu.max").write_text("max 100000\n")
    (v2 / "job" / "cpu.max").write_text("250000 100000\n")  # 2.5 CPUs for this process's cgroup
    (tmp_path / "self-v2").write_text("0::/job\n")
    budget = thread_budget(
        1, environ={}, affinity=set(range(8)), cgroup_root=v2, self_cgroup=tmp_path / "self-v2"
    )
    assert budget.threads == 2 and "cgroup CPU quota 2.5" in budget.source
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "self-v1").write_text("4:memory:/x\n1:cpu:/\n")
    assert (
        thread_budget(
            1, environ={}, affinity=set(range(8)), cgroup_root=v1.parent, self_cgroup=tmp_path / "self-v1"
        ).threads
        == 3
    )
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")  # no quota: the mask decides
    assert (
        thread_budget(
            2, environ={}, affinity=set(range(8)), cgroup_root=v1.parent, self_cgroup=tmp_path / "self-v1"
        ).threads
        == 4
    )


@pytest.mark.parametrize(
    ("env", "affinity", "expected"),
    [
        ({"OMP_NUM_THREADS": "1"}, None, "1 thread(s) per rank (from OMP_NUM_THREADS=1)"),
        ({"SLURM_CPUS_PER_TASK": "3"}, None, "3 thread(s) per rank (from SLURM_CPUS_PER_TASK=3)"),
        ({}, {0}, "1 thread(s) per rank (from 1 CPU(s) in the affinity mask)"),
    ],
)
def test_plan_says_the_thread_count_and_where_it_came_from(
    env: dict[str, str], affinity: set[int] | None, expected: str, tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")}
    result = subprocess.run(
        [sys.executable, "-m", "trainctl", "plan", "conf=linreg", "launcher.nproc=1"],
        env={**clean, **env, "TRAINCTL_RUNS_DIR": str(tmp_path), "COLUMNS": "250"},
        preexec_fn=(lambda: os.sched_setaffinity(0, affinity)) if affinity else None,
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        cwd=REPO,
    )
    ok(result)
    assert expected in " ".join(result.stdout.split())


def test_ddp_in_a_world_of_one_says_so(tmp_path: Path) -> None:
    result = trainctl("plan", "conf=linreg", "parallel=ddp", "launcher.nproc=1", runs=tmp_path)
    ok(result)
    assert "parallel=ddp in a world of one process" in " ".join(result.stderr.split())


# ---------------------------------------------------------------- run identity


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_torchrun_id_reused_with_another_config_leaves_the_first_run_as_it_was(
    tiny_mnist_module: Path, tmp_path: Path
) -> None:
    common = [*TINY, f"data.root={tiny_mnist_module}", "parallel=ddp", "trainer.threads=1"]
    ok(torchrun(tmp_path, "exp1", *common))
    run = tmp_path / "mlp_mnist" / "exp1"
    launcher = yaml.safe_load((run / "config.yaml").read_text())["launcher"]
    assert (launcher["name"], launcher["nproc"]) == ("local", 2)  # the job's real shape
    before = digest(run)
    second = torchrun(tmp_path, "exp1", *common, "optim.lr=0.01")
    assert second.returncode != 0
    assert "torchrun --rdzv-id exp1 names a run that has finished" in second.stdout + second.stderr
    assert digest(run) == before
    assert sorted(p.name for p in (tmp_path / "mlp_mnist").iterdir()) == ["exp1"]


def claimed_run(tmp_path: Path, status: str, lr: float = 0.05) -> tuple[Path, dict]:
    """A run dir under a cluster id, as an earlier attempt of a job left it."""
    path = tmp_path / "runs" / "mlp_mnist" / "job7"
    (path / "checkpoints").mkdir(parents=True)
    tree = {
        "preset": "mlp_mnist",
        "optim": {"name": "sgd", "lr": lr},
        "launcher": {"name": "local", "nproc": 2},
    }
    record_run(RunDir(path), tree, ["optim.lr=0.05"], "mlp_mnist")
    RunDir(path).update_meta(status=status)
    (path / "checkpoints" / "last.pt").write_bytes(b"state")
    return path, tree


@pytest.mark.parametrize("status", ["running", "failed", "interrupted"])
def test_the_same_job_continues_its_unfinished_run(status: str, tmp_path: Path) -> None:
    path, tree = claimed_run(tmp_path, status)
    requeued = {**tree, "launcher": {"name": "multinode", "nnodes": 1}}  # how it is launched may change
    claimed = claim_run(path, requeued, "Slurm step 7.0")
    assert claimed.run.path == path and claimed.resume_from == path / "checkpoints" / "last.pt"


@pytest.mark.parametrize(
    ("status", "lr", "message"),
    [
        ("finished", 0.05, "names a run that has finished"),
        ("running", 0.01, "with another config: optim.lr differ"),
    ],
)
def test_a_finished_run_or_another_config_is_refused_untouched(
    status: str, lr: float, message: str, tmp_path: Path
) -> None:
    path, tree = claimed_run(tmp_path, status)
    before = digest(path)
    latest = tmp_path / "runs" / "latest"
    with pytest.raises(TrainctlError, match=message) as refused:
        claim_run(path, {**tree, "optim": {"name": "sgd", "lr": lr}}, "launcher.run_id=job7")
    assert refused.value.exit_code == 2 and refused.value.where == str(path)
    assert digest(path) == before and not latest.exists()


def test_multinode_run_id_of_a_finished_run_is_refused(tiny_mnist_module: Path, tmp_path: Path) -> None:
    path, _ = claimed_run(tmp_path, "finished")
    before = digest(path)
    result = train_tiny(
        tmp_path / "runs",
        tiny_mnist_module,
        "parallel=ddp",
        "launcher=multinode",
        "launcher.nnodes=1",
        f"launcher.rdzv_endpoint=127.0.0.1:{free_port()}",
        "launcher.run_id=job7",
    )
    assert result.returncode == 2, result.stderr
    assert "launcher.run_id=job7 names a run that has finished" in result.stderr
    assert digest(path) == before


# ---------------------------------------------------------------- srun, one task per rank


def free_slurm_job_id() -> str:
    """A job id whose rendezvous port (port_for_job) is free right now."""
    for job in range(4000, 9999, 37):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port_for_job(str(job))))
            except OSError:
                continue
        return str(job)
    raise AssertionError("no free port in the job-id range")


def test_srun_tasks_are_the_ranks_of_one_job(tiny_mnist_module: Path, tmp_path: Path) -> None:
    job = free_slurm_job_id()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMP_NUM"))}
    tasks = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trainctl",
                "train",
                *TINY,
                f"data.root={tiny_mnist_module}",
                "parallel=ddp",
            ],
            env={
                **base,
                "TRAINCTL_RUNS_DIR": str(tmp_path),
                "SLURM_JOB_ID": job,
                "SLURM_STEP_ID": "0",
                "SLURM_PROCID": str(rank),
                "SLURM_LOCALID": str(rank),
                "SLURM_NTASKS": "2",
                "SLURM_NNODES": "1",
                "SLURM_NODELIST": "127.0.0.1",
                "SLURM_CPUS_PER_TASK": "2",  # per task: each rank gets 2 threads
            },
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [task.communicate(timeout=BOUND_S)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    (run,) = (tmp_path / "mlp_mnist").iterdir()
    assert run.name == f"{job}.0"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["world_size"] == 2
    assert yaml.safe_load((run / "config.yaml").read_text())["launcher"]["nproc"] == 2
    assert (run / "logs" / "rank1.events.jsonl").is_file()
    meta = json.loads((run / "run.json").read_text())
    assert (meta["threads"], meta["threads_source"]) == (2, "SLURM_CPUS_PER_TASK=2")


def test_srun_environment_is_read_as_torchrun_would_set_it() -> None:
    env = {
        "SLURM_JOB_ID": "123456",
        "SLURM_STEP_ID": "2",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_STEP_NUM_NODES": "2",
        "SLURM_STEP_NODELIST": "gpu[07-08]",
    }
    task = TorchrunEnv.from_srun(env)
    assert task is not None
    assert (task.rank, task.world_size, task.local_rank, task.local_world_size) == (5, 8, 1, 4)
    assert (task.master_addr, task.master_port, task.run_id) == ("gpu07", 18456, "123456.2")
    assert TorchrunEnv.from_srun({k: v for k, v in env.items() if k != "SLURM_STEP_ID"}) is None  # sbatch
    assert TorchrunEnv.from_srun({**env, "SLURM_STEP_NUM_TASKS": "1"}) is None
    assert first_host("node1,node2") == "node1" and first_host("cpu[001-004,9]") == "cpu001"


# ---------------------------------------------------------------- sbatch


def fake_tool(folder: Path, name: str, body: str) -> None:
    tool = folder / name
    tool.write_text(f"#!/bin/bash\n{body}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


def test_sbatch_script_takes_its_port_from_the_job_id_and_cpus_from_the_plan(tmp_path: Path) -> None:
    fake = tmp_path / "bin"  # first on PATH: no test ever reaches a real scheduler
    fake.mkdir()
    fake_tool(fake, "sbatch", f'cp "$1" {tmp_path}/submitted.sbatch; echo "Submitted batch job 101"')
    fake_tool(fake, "scontrol", "seq -f 'node%g' 1 20000")  # a long list: the script must read it all
    fake_tool(fake, "srun", 'echo "$@"')
    result = trainctl(
        "train",
        "conf=linreg",
        "parallel=ddp",
        "launcher=slurm",
        "launcher.nnodes=2",
        "launcher.nproc=2",
        "trainer.threads=3",
        runs=tmp_path / "runs",
        env={"PATH": f"{fake}:{os.environ['PATH']}"},
    )
    ok(result)
    assert "Submitted batch job 101" in result.stdout
    script = tmp_path / "submitted.sbatch"
    assert "#SBATCH --cpus-per-task=6" in script.read_text()  # 2 workers x 3 threads
    endpoints = set()
    for job in ("101", "102"):
        ran = subprocess.run(
            ["bash", str(script)],
            env={"PATH": f"{fake}:/usr/bin:/bin", "SLURM_JOB_ID": job, "SLURM_JOB_NODELIST": "node[1-2]"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr
        assert "--cpus-per-task=6" in ran.stdout and f"launcher.run_id={job}" in ran.stdout
        endpoints.add(next(w for w in ran.stdout.split() if w.startswith("launcher.rdzv_endpoint=")))
    assert endpoints == {"launcher.rdzv_endpoint=node1:15101", "launcher.rdzv_endpoint=node1:15102"}


# ---------------------------------------------------------------- rendezvous failures


def multinode(endpoint: str, timeout: int) -> list[str]:
    return [
        "train",
        "conf=linreg",
        "parallel=ddp",
        "launcher=multinode",
        "launcher.nnodes=2",
        "launcher.nproc=1",
        f"launcher.rdzv_endpoint={endpoint}",
        "launcher.run_id=alone",
        f"launcher.rdzv_timeout={timeout}",
    ]


def test_an_unresolvable_rendezvous_host_exits_2_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    result = trainctl(*multinode("nohost.invalid:29500", 10), runs=tmp_path, timeout=BOUND_S)
    took = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert "the rendezvous host 'nohost.invalid' does not resolve" in result.stderr
    assert "Traceback" not in result.stderr and "socket.cpp" not in result.stderr
    assert took < 25, f"took {took:.0f}s"
    assert not (tmp_path / "linreg").exists()  # refused before any run dir


def test_a_port_held_by_another_server_exits_2_with_the_traces_in_the_log(tmp_path: Path) -> None:
    with socket.socket() as server:  # accepts connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        result = trainctl(*multinode(f"127.0.0.1:{port}", 5), runs=tmp_path, timeout=BOUND_S)
    assert result.returncode == 2, result.stderr
    assert (
        f"a server that is not a torch.distributed rendezvous store holds 127.0.0.1:{port}" in result.stderr
    )
    assert "Traceback" not in result.stderr and "frame #" not in result.stderr
    assert len(result.stderr.splitlines()) <= 10
    assert (tmp_path / "linreg" / "alone" / "logs" / "agent.log").is_file()
