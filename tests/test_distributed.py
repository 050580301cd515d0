"""Distributed training: parallel modes against one process, launchers, restarts, failures, plans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import REPO, SINGLE, start_trainctl, torchrun, trainctl
from trainctl.cli.app import app
from trainctl.runtime.launch.elastic import free_port
from trainctl.training.checkpoint import load_checkpoint

runner = CliRunner()
# Tiny MNIST-format data: 64 train images, batch 16 -> 4 steps an epoch; no dropout, so that every
# mode computes the same function as one process.
TINY = [
    "conf=mlp_mnist",
    "model.dropout=0",
    "trainer.batch_size=16",
    "trainer.epochs=3",
    "trainer.threads=1",
    "trainer.schedule=constant",
    "optim=sgd",
    "optim.lr=0.05",
]


def final_state(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def train_run(runs: Path, *args: str) -> Path:
    result = trainctl("train", *args, runs=runs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return (runs / "latest").resolve()


def train_losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["kind"] == "train"]


@pytest.fixture(scope="module")
def single_run(tiny_mnist_module: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("single")
    return train_run(runs, *TINY, f"data.root={tiny_mnist_module}", *SINGLE)


@pytest.mark.parametrize("mode", ["ddp", "fsdp", "tensor", "pipeline"])
def test_two_ranks_end_where_one_process_ends(
    mode: str, single_run: Path, tiny_mnist_module: Path, tmp_path: Path
) -> None:
    run = train_run(tmp_path, *TINY, f"data.root={tiny_mnist_module}", "launcher.nproc=2", f"parallel={mode}")
    assert max_difference(final_state(single_run), final_state(run)) <= 1e-5
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    if mode == "pipeline":  # the same loss, step by step, as the unsplit model
        assert train_losses(run) == pytest.approx(train_losses(single_run), abs=1e-5)
    if mode == "fsdp":  # sharded checkpoints through torch.distributed.checkpoint, beside the full export
        kept = sorted((run / "checkpoints").glob("last-step*.pt"))
        folders = sorted(p.name for p in (run / "checkpoints").glob("last-step*.dcp"))
        assert folders == sorted(p.name.replace(".pt", ".dcp") for p in kept)  # pruned with their checkpoint


def test_local_sgd_with_k_1_equals_ddp_with_sgd(tiny_mnist_module: Path, tmp_path: Path) -> None:
    sgd = [
        *TINY,
        f"data.root={tiny_mnist_module}",
        "launcher.nproc=2",
        "optim=sgd",
        "optim.lr=0.05",
        "optim.momentum=0",
    ]
    ddp = train_run(tmp_path / "ddp", *sgd, "parallel=ddp")
    local = train_run(tmp_path / "local", *sgd, "parallel=local_sgd", "parallel.sync_every=1")
    assert max_difference(final_state(ddp), final_state(local)) <= 1e-5


def test_local_sgd_label_partition_gives_each_rank_its_own_labels(
    tiny_mnist_module: Path, tmp_path: Path
) -> None:
    run = train_run(
        tmp_path,
        *TINY,
        f"data.root={tiny_mnist_module}",
        "launcher.nproc=2",
        "parallel=local_sgd",
        "parallel.partition=label",
        "parallel.sync_every=2",
    )
    assert (run / "checkpoints" / "last.pt").is_file()


def test_multinode_processes_share_one_rendezvous(tiny_mnist_module: Path, tmp_path: Path) -> None:
    common = [*TINY, f"data.root={tiny_mnist_module}", "parallel=ddp"]
    reference = train_run(tmp_path / "one-node", *common, "launcher.nproc=2")
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "trainctl",
        "train",
        *common,
        "launcher=multinode",
        "launcher.nnodes=2",
        "launcher.nproc=1",
        f"launcher.rdzv_endpoint=127.0.0.1:{port}",
        "launcher.run_id=pair",
        "launcher.rdzv_timeout=60",
    ]
    env = {**os.environ, "TRAINCTL_RUNS_DIR": str(tmp_path / "two-nodes")}
    nodes = [
        subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    run = tmp_path / "two-nodes" / "mlp_mnist" / "pair"
    assert max_difference(final_state(reference), final_state(run)) <= 1e-5


def test_rendezvous_that_cannot_complete_fails_clearly(tmp_path: Path) -> None:
    started = time.perf_counter()
    result = trainctl(
        "train",
        "parallel=ddp",
        "launcher=multinode",
        "launcher.nnodes=2",
        "launcher.nproc=1",
        f"launcher.rdzv_endpoint=127.0.0.1:{free_port()}",
        "launcher.run_id=alone",
        "launcher.rdzv_timeout=3",
        runs=tmp_path,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "did not complete within 3s" in result.stderr and "Traceback" not in result.stderr
    assert time.perf_counter() - started < 60


def wait_for_train_records(runs: Path, count: int, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for metrics in runs.glob("*/*/metrics.jsonl"):
            if sum('"kind": "train"' in line for line in metrics.read_text().splitlines()) >= count:
                return metrics.parent
        time.sleep(0.05)
    raise AssertionError("the run never got that far")


def mnist_on_two_ddp_ranks(shared_data: Path) -> list[str]:
    """Three MNIST epochs on two ddp ranks: long enough to interrupt in the middle."""
    ddp = ["launcher.nproc=2", "parallel=ddp"]
    return ["conf=mlp_mnist", f"data.root={shared_data}", "trainer.epochs=3", *ddp]


def worker_pid(run: Path, rank: int) -> int:
    first = (run / "logs" / f"rank{rank}.log").read_text().splitlines()[0]  # "rank R/W pid P restart N"
    return int(first.split()[3])


def test_killed_worker_restarts_from_the_checkpoint_and_ends_like_an_uninterrupted_run(
    shared_data: Path, tmp_path: Path
) -> None:
    common = mnist_on_two_ddp_ranks(shared_data)
    reference = train_run(tmp_path / "straight", *common)
    runs = tmp_path / "killed"
    proc = start_trainctl(*common, "launcher.max_restarts=1", runs=runs)
    run = wait_for_train_records(runs, 16)  # 13 records an epoch: this is mid-way through epoch 2
    os.kill(worker_pid(run, 1), signal.SIGKILL)
    output, errors = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:] + errors[-3000:]
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "finished" and meta["restarts"] == 1
    assert "resuming from" in (run / "logs" / "rank0.log").read_text()
    assert max_difference(final_state(reference), final_state(run)) == 0.0


def test_a_dead_rank_stops_all_and_shows_its_log_tail(shared_data: Path, tmp_path: Path) -> None:
    proc = start_trainctl(
        "conf=mlp_mnist",
        f"data.root={shared_data}",
        "trainer.epochs=5",
        "launcher.nproc=2",
        "parallel=ddp",
        runs=tmp_path,
    )
    run = wait_for_train_records(tmp_path, 5)
    os.kill(worker_pid(run, 1), signal.SIGKILL)
    _, errors = proc.communicate(timeout=120)
    assert proc.returncode == 1
    first_line = next(line for line in errors.splitlines() if line.startswith("error:"))
    assert first_line.startswith("error: rank 1 ") and "every rank was stopped" in first_line, errors
    assert "SIGKILL" in first_line or "without reporting" in first_line
    assert "Last lines of its log" in errors and "step" in errors
    assert json.loads((run / "run.json").read_text())["status"] == "killed"


def test_ctrl_c_stops_every_rank_at_a_checkpoint_and_resumes(shared_data: Path, tmp_path: Path) -> None:
    common = mnist_on_two_ddp_ranks(shared_data)
    proc = start_trainctl(*common, runs=tmp_path)
    run = wait_for_train_records(tmp_path, 16)
    proc.send_signal(signal.SIGINT)
    _, errors = proc.communicate(timeout=120)
    assert proc.returncode == 130, errors
    assert "the workers wrote a checkpoint" in errors
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    resumed = trainctl("train", "--resume", str(run), runs=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run / "checkpoints" / "last.pt")["position"]["step"] == 3 * 125


def test_torchrun_workers_run_directly_in_one_run_dir(tiny_mnist_module: Path, tmp_path: Path) -> None:
    result = torchrun(tmp_path, "tr1", *TINY, f"data.root={tiny_mnist_module}", "parallel=ddp")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (run,) = (tmp_path / "mlp_mnist").iterdir()
    assert run.name == "tr1"
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "logs" / "rank1.events.jsonl").is_file()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["world_size"] == 2
    for rank in (0, 1):  # every rank keeps its log, as under trainctl's own launcher
        assert "step" in (run / "logs" / f"rank{rank}.log").read_text()


def test_plan_shows_layout_batches_launch_and_checks(runs_root: Path) -> None:
    result = runner.invoke(app, ["plan", "launcher.nproc=2", "parallel=pipeline", "parallel.microbatches=8"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for expected in (
        "2 rank(s), parallel pipeline",
        "global 64; per rank 64",
        "23 per epoch x 20 epochs",
        "rank 0: stage 0 = layers 0..3",
        "rank 1: stage 1 = layers 4..4",
        "torchrun --nproc-per-node 2",
        "8 micro-batches divide the batch of 64",
    ):
        assert expected in text, expected
    assert not runs_root.exists()
    fsdp = runner.invoke(app, ["train", "--dry-run", "launcher.nproc=2", "parallel=fsdp"])
    assert "1/2 of each of 2 blocks" in " ".join(fsdp.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["launcher.nproc=2", "parallel=tensor", "model=linear"], "does not support model=linear"),
        (["launcher.nproc=2", "parallel=pipeline", "parallel.microbatches=5"], "does not divide"),
        (["launcher.nproc=2", "parallel=none"], "parallel=none runs one process"),
        (["launcher.nproc=2", "parallel=tensor", "model.hidden=[255]"], "does not split over 2 ranks"),
        (["launcher.nproc=2", "parallel=pipeline", "parallel.schedule=1f2b"], "Did you mean '1f1b'"),
        (["launcher=multinode", "launcher.rdzv_endpoint=nohost"], "is not HOST:PORT"),
    ],
)
def test_planner_refuses_what_cannot_run(args: list[str], message: str, runs_root: Path) -> None:
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not runs_root.exists()


def test_slurm_dry_run_prints_a_valid_sbatch_script(tmp_path: Path) -> None:
    result = trainctl(
        "train",
        "--dry-run",
        "conf=mlp_mnist",
        "parallel=ddp",
        "launcher=slurm",
        "launcher.nnodes=2",
        "launcher.nproc=4",
        "launcher.partition=gpu",
        runs=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    script = result.stdout[result.stdout.index("#!/bin/bash") :]
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --partition=gpu",
        "srun --nodes=2 --ntasks-per-node=1 --cpus-per-task=4 trainctl train",
        "launcher=multinode launcher.nnodes=2 launcher.nproc=4",
        'launcher.run_id="$SLURM_JOB_ID"',
        "parallel=ddp",
    ):
        assert line in script, line
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    assert not (tmp_path / "mlp_mnist").exists()


def test_slurm_launch_without_sbatch_writes_the_script_and_says_how_to_submit(tmp_path: Path) -> None:
    no_sbatch = tmp_path / "bin"  # a PATH without sbatch, even where the machine has one
    no_sbatch.mkdir()
    result = trainctl(
        "train", "conf=linreg", "parallel=ddp", "launcher=slurm", runs=tmp_path, env={"PATH": str(no_sbatch)}
    )
    assert result.returncode == 2
    assert "sbatch is not installed here" in result.stderr
    (script,) = tmp_path.glob("linreg/*/slurm.sbatch")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
