"""`plan --estimate`: the cost model's formulas, the projection of a run, --compare's choice and memory
marks, and end to end: the JSON fields, nothing left under the runs root or in the temp folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import REPO, SINGLE, trainctl
from trainctl.errors import TrainctlError
from trainctl.workflows.cost_model import (
    Network,
    Workload,
    compute_per_sample,
    ddp_comm_seconds,
    fsdp_comm_seconds,
    pipeline_bubble,
    pipeline_step_seconds,
    predict_step,
    ring_all_reduce_bytes,
)
from trainctl.workflows.estimate import Estimate, project, run_shape, what_if
from trainctl.workflows.estimate_compare import compare, needed_bytes, parse_size

FIELDS = (
    "startup_seconds",
    "seconds_per_step",
    "samples_per_second",
    "seconds_per_epoch",
    "total_seconds",
    "peak_memory_bytes_per_rank",
    "checkpoint_bytes",
)


# ---------------------------------------------------------------- the communication formulas
def test_network_time_is_latency_per_message_plus_bytes_over_bandwidth() -> None:
    assert Network(8.0, 0.0).seconds(1e9, 0) == pytest.approx(1.0)  # 8 Gbit at 8 Gbit/s
    assert Network(8.0, 10.0).seconds(0, 3) == pytest.approx(30e-6)


def test_ddp_is_a_ring_all_reduce_of_the_gradients() -> None:
    assert ring_all_reduce_bytes(4, 100.0) == pytest.approx(150.0)  # 2 x 3/4 x 100
    # 4 ranks, 1 GB of gradients, 8 Gbit/s, 10 us: 1.5 GB sent = 1.5 s, 6 messages = 60 us
    assert ddp_comm_seconds(4, 1e9, Network(8.0, 10.0)) == pytest.approx(1.5 + 60e-6)
    assert ddp_comm_seconds(1, 1e9, Network()) == 0.0


def test_fsdp_gathers_twice_and_reduce_scatters_once_per_block() -> None:
    # 2 ranks, 1 MB of parameters in 3 blocks: 3 x 1/2 x 1 MB = 1.5 MB at 8 Gbit/s = 1.5 ms;
    # 3 collectives x 3 blocks x 1 message x 10 us = 90 us
    assert fsdp_comm_seconds(2, 1e6, 3, Network(8.0, 10.0)) == pytest.approx(1.5e-3 + 90e-6)


def test_pipeline_bubble_and_step() -> None:
    assert pipeline_bubble(4, 8) == pytest.approx(3 / 11)
    assert pipeline_bubble(1, 8) == 0.0
    # 2 stages, 4 micro-batches, 1 s of batch compute, no activations: 5 slots of 1/2/4 s
    step, comm = pipeline_step_seconds(2, 4, 1.0, 0.0, 64, Network(8.0, 0.0))
    assert (step, comm) == (pytest.approx(0.625), 0.0)
    # 1 kB per sample, batch 64, 4 micro-batches: 16 kB forward + 16 kB back per slot = 32 us at 8 Gbit/s
    step, comm = pipeline_step_seconds(2, 4, 1.0, 1000.0, 64, Network(8.0, 0.0))
    assert comm == pytest.approx(5 * 32e-6)
    assert step == pytest.approx(0.625 + 5 * 32e-6)


def test_data_parallel_prediction_splits_compute_and_adds_communication() -> None:
    work = Workload("ddp", global_batch=100, compute_per_sample=0.01, parameter_bytes=1e6)
    net = Network(8.0, 0.0)
    one, four = predict_step(work, 1, net), predict_step(work, 4, net)
    assert one.step_seconds == pytest.approx(1.0) and one.comm_seconds == 0.0
    assert four.compute_seconds == pytest.approx(0.25)
    assert four.comm_seconds == pytest.approx(1.5e-3)  # 2 x 3/4 x 1 MB at 1 GB/s
    assert "ring all-reduce" in four.formula and four.assumptions


@pytest.mark.parametrize("mode", ["ddp", "fsdp", "pipeline"])
def test_compute_per_sample_inverts_the_prediction(mode: str) -> None:
    work = Workload(mode, 64, 0.002, 4e6, blocks=3, microbatches=4, boundary_bytes_per_sample=2048)
    net = Network(5.0, 30.0)
    measured = predict_step(work, 2, net).step_seconds
    back = compute_per_sample(measured, replace(work, compute_per_sample=0.0), 2, net)
    assert back == pytest.approx(0.002)


# ---------------------------------------------------------------- projecting a run
def test_run_shape_counts_epochs_evaluations_and_checkpoints() -> None:
    shape = run_shape(epochs=15, eval_every=5, steps_per_epoch=100, run_steps=1500)
    assert (shape.epochs, shape.eval_passes, shape.checkpoint_writes) == (15, 3, 18)
    capped = run_shape(epochs=15, eval_every=1, steps_per_epoch=100, run_steps=250)  # max_steps=250
    assert (capped.epochs, capped.eval_passes, capped.checkpoint_writes) == (3, 3, 6)
    inside = run_shape(epochs=15, eval_every=1, steps_per_epoch=100, run_steps=250, checkpoint_every=40)
    assert inside.checkpoint_writes == 6 + 5  # steps 40, 80, 120, 160, 240 (200 ends an epoch)


def rank_figures(step: float, peak: int, **extra: float) -> dict:
    return {
        "setup_seconds": 1.0,
        "first_step_at": 1003.0,
        "warmup_seconds": [0.5, 0.1],
        "step_seconds": [step] * 4,
        "input_seconds": [step / 4] * 4,
        "eval_seconds": 0.2,
        "eval_samples": 100,
        "checkpoint_seconds": 0.05,
        "memory": {"rss_bytes": peak},
        "finished_at": 1010.0,
        **extra,
    }


def test_project_adds_startup_warmup_steps_evaluations_checkpoints_and_teardown() -> None:
    from trainctl.config.compose import compose

    config = compose(["conf=linreg", "trainer.epochs=2"]).config
    measured = {
        "ranks": [rank_figures(0.1, 500), rank_figures(0.2, 700)],
        "steps_per_epoch": 10,
        "run_steps": 20,
        "test_samples": 1000,
        "checkpoint_bytes": 1234,
    }
    e = project(
        measured,
        overrides=["conf=linreg"],
        config=config,
        world_size=2,
        device="cpu",
        threads=1,
        command_started=1000.0,
        returned_at=1011.0,
    )
    assert e.startup_seconds == pytest.approx(3.0)
    assert e.seconds_per_step == pytest.approx(0.2)  # the slower rank sets the pace
    assert e.seconds_per_epoch == pytest.approx(2.0)
    assert e.eval_seconds == pytest.approx(2.0)  # 0.2 s for 100 of 1000 samples
    # 3 + warm-up 0.6 + 18 x 0.2 + 2 evaluations x 2 + 4 writes x 0.05 + teardown 1
    assert e.total_seconds == pytest.approx(3 + 0.6 + 3.6 + 4 + 0.2 + 1)
    assert e.peak_memory_bytes_per_rank == [500, 700]
    assert e.input_wait_fraction == pytest.approx(0.25) and e.bound == "compute"


def test_what_if_from_one_rank_gives_back_the_measured_step_and_adds_the_all_reduce() -> None:
    measured = replace(
        fake_estimate([], 10.0, 1),
        parallel="none",
        world_size=1,
        facts={"parameter_bytes": 1e6, "blocks": 3, "microbatches": 1, "layer_output_bytes": []},
    )
    net = Network(8.0, 0.0)
    assert what_if(measured, 1, net).step_seconds == pytest.approx(measured.seconds_per_step)
    two = what_if(measured, 2, net)
    assert two.compute_seconds == pytest.approx(measured.seconds_per_step / 2)
    assert two.comm_seconds == pytest.approx(1e-3)  # 2 x 1/2 x 1 MB at 1 GB/s
    piped = replace(measured, parallel="pipeline")
    with pytest.raises(TrainctlError, match="too few for 4 pipeline stages"):
        what_if(piped, 4, net)


def test_the_step_clock_measures_longer_for_long_runs_and_stops_at_the_budget() -> None:
    from trainctl.recipes.estimate import StepClock

    short = StepClock(warmup=3, measure_seconds=8.0, run_steps=10, command_started=time.time())
    assert short.warmup == 3 and not short.enough([0.1] * 6) and short.enough([0.1] * 7)  # all 10 steps
    long = StepClock(warmup=3, measure_seconds=8.0, run_steps=1000, command_started=time.time())
    assert not long.enough([1.0] * 4)  # at least 5 steps
    assert not long.enough([1.0] * 59) and long.enough([1.0] * 60)  # a tenth of ~1000 s, at most 60 s
    late = StepClock(warmup=3, measure_seconds=8.0, run_steps=1000, command_started=time.time() - 200)
    assert late.enough([0.01] * 5)  # 200 s spent: past max(30 s, 10% of the run) already


def test_batches_of_different_sizes_scale_the_step_to_the_epochs_mean_size() -> None:
    from trainctl.workflows.estimate import step_seconds

    # measured: 0.1 s + 1 ms per 100 elements; the epoch's batches average 3,000 elements
    sizes = [1000, 2000, 4000, 1000, 5000]
    figures = {
        "step_seconds": [0.1 + n / 100_000 for n in sizes],
        "input_sizes": sizes,
        "epoch_mean_input_size": 3000.0,
    }
    assert step_seconds(figures) == pytest.approx(0.13)
    assert step_seconds({**figures, "epoch_mean_input_size": None}) == pytest.approx(0.126)  # the mean


# ---------------------------------------------------------------- --compare
def fake_estimate(overrides: list[str], total: float, peak: int) -> Estimate:
    """An estimate whose figures the test chooses (a fake cost model's measurement)."""
    return Estimate(
        overrides=overrides,
        preset="linreg",
        parallel="ddp",
        world_size=2,
        device="cpu",
        threads_per_rank=1,
        global_batch=100,
        startup_seconds=1.0,
        first_step_seconds=0.1,
        seconds_per_step=total / 100,
        samples_per_second=1.0,
        steps_per_epoch=10,
        run_steps=100,
        epochs=10,
        seconds_per_epoch=total / 10,
        eval_passes=10,
        eval_seconds=0.0,
        checkpoint_writes=20,
        checkpoint_seconds=0.0,
        checkpoint_bytes=10,
        teardown_seconds=0.0,
        total_seconds=total,
        peak_memory_bytes_per_rank=[peak, peak],
        input_wait_fraction=0.0,
        bound="compute",
        warmup_steps=3,
        measured_steps=10,
        estimate_seconds=1.0,
    )


COSTS = {  # (parallel, nproc) -> (seconds for the run, peak bytes per rank)
    ("ddp", "1"): (40.0, 100),
    ("ddp", "2"): (25.0, 100),
    ("fsdp", "1"): (45.0, 100),
    ("fsdp", "2"): (20.0, 300),
}


def fake_measure(overrides: list[str]) -> Estimate:
    values = dict(o.split("=", 1) for o in overrides)
    total, peak = COSTS[(values["parallel"], values["launcher.nproc"])]
    return fake_estimate(overrides, total, peak)


def test_compare_suggests_the_fastest_variant() -> None:
    result = compare(["conf=linreg", "parallel=ddp,fsdp", "launcher.nproc=1,2"], fake_measure, budget=10**9)
    assert len(result.variants) == 4 and all(v.fits for v in result.variants)
    assert result.suggested is not None
    assert result.suggested.label == "parallel=fsdp launcher.nproc=2"
    assert result.suggested.command == "trainctl train conf=linreg parallel=fsdp launcher.nproc=2"


def test_a_budget_below_the_peak_marks_the_variant_and_the_next_fastest_is_suggested() -> None:
    # fsdp on 2 ranks needs 2 x 300 bytes; the budget holds 2 x 100 (ranks on one machine add up)
    result = compare(["conf=linreg", "parallel=ddp,fsdp", "launcher.nproc=1,2"], fake_measure, budget=250)
    fits = {v.label: v.fits for v in result.variants}
    assert fits["parallel=fsdp launcher.nproc=2"] is False
    assert fits["parallel=ddp launcher.nproc=2"] is True
    assert result.suggested is not None and result.suggested.label == "parallel=ddp launcher.nproc=2"
    assert needed_bytes(fake_estimate([], 1.0, 300), per_device=True) == 300


def test_a_variant_the_planner_refuses_is_listed_with_its_reason() -> None:
    def refusing(overrides: list[str]) -> Estimate:
        if "parallel=fsdp" in overrides:
            raise TrainctlError("parallel=fsdp does not support model=linear")
        return fake_estimate(overrides, 10.0, 1)

    result = compare(["parallel=ddp,fsdp"], refusing, budget=10**9)
    assert [v.error for v in result.variants] == [None, "parallel=fsdp does not support model=linear"]
    assert result.suggested is not None and result.suggested.label == "parallel=ddp"


def test_memory_budget_sizes() -> None:
    assert parse_size("512M") == 512 * 2**20
    assert parse_size("1.5GiB") == int(1.5 * 2**30)
    assert parse_size("1000") == 1000
    with pytest.raises(TrainctlError):
        parse_size("lots")


# ---------------------------------------------------------------- end to end
def tree(root: Path) -> dict[str, float]:
    """Every path under `root` with its modification time (a link: where it points)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else p.stat().st_mtime)
        for p in root.rglob("*")
    }


@pytest.fixture
def existing_runs(runs_root: Path) -> Path:
    """A runs root that already holds a run and a `latest` link to it."""
    run = runs_root / "linreg" / "20260101-000000"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("preset: linreg\n")
    (runs_root / "latest").symlink_to(Path("linreg") / "20260101-000000")
    return runs_root


def test_estimate_json_has_the_fields_and_writes_nothing(existing_runs: Path, tmp_path: Path) -> None:
    before = tree(existing_runs)
    temp = tmp_path / "temp"
    temp.mkdir()
    result = trainctl(
        "plan",
        "--estimate",
        "--json",
        "--world",
        "2",
        "conf=linreg",
        "trainer.epochs=2",
        *SINGLE,
        runs=existing_runs,
        env={"TMPDIR": str(temp)},
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    estimate = document["estimate"]
    for name in FIELDS:
        assert name in estimate, name
    assert estimate["run_steps"] == 200 and estimate["epochs"] == 2  # 10,000 samples / 100 x 2
    assert estimate["total_seconds"] > estimate["startup_seconds"] > 0
    assert len(estimate["peak_memory_bytes_per_rank"]) == 1 and estimate["peak_memory_bytes_per_rank"][0] > 0
    assert estimate["checkpoint_bytes"] > 0
    (prediction,) = document["what_if"]
    assert prediction["ranks"] == 2
    parts = prediction["compute_seconds"] + prediction["comm_seconds"]
    assert prediction["step_seconds"] == pytest.approx(parts)
    assert tree(existing_runs) == before  # nothing added, `latest` unmoved
    assert not list(temp.glob("trainctl-estimate-*"))  # the scratch folder is gone


def test_bad_input_exits_2_like_train_and_writes_nothing(runs_root: Path) -> None:
    result = trainctl("plan", "--estimate", "conf=linreg", "optim.lrr=0.1", runs=runs_root)
    assert result.returncode == 2
    assert "unknown config key 'optim.lrr'" in result.stderr and "Traceback" not in result.stderr
    assert not runs_root.exists()
    result = trainctl("train", "--estimate", "conf=linreg", runs=runs_root)  # without --dry-run
    assert result.returncode == 2 and "--dry-run" in result.stderr


def test_compare_marks_a_variant_over_the_memory_budget(runs_root: Path) -> None:
    result = trainctl(
        "plan",
        "--estimate",
        "--compare",
        "--json",
        "--memory-budget",
        "1M",  # below any process's resident memory
        "conf=linreg",
        "trainer.epochs=1",
        "trainer.batch_size=100,200",
        *SINGLE,
        runs=runs_root,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [v["fits"] for v in document["variants"]] == [False, False]
    assert document["suggested"] is None
    assert document["memory_available"]["bytes"] == 2**20
    assert not runs_root.exists()


def test_ctrl_c_leaves_nothing_behind(runs_root: Path, tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainctl", "plan", "--estimate", "conf=mlp_digits", *SINGLE],
        cwd=REPO,
        env={**os.environ, "TRAINCTL_RUNS_DIR": str(runs_root), "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(temp.glob("trainctl-estimate-*/mlp_digits/*/run.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "nothing was kept" in err
    assert not list(temp.glob("trainctl-estimate-*")) and not runs_root.exists()
