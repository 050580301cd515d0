"""Fault suite, part 2: full and read-only disks, how every run ends, declared ranges, and errors that
name their place (YAML file:line:column, the line of a bad rating)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

from tests.conftest import REPO, SINGLE, start_trainctl
from tests.integrity_helpers import (
    SMALL,
    duplicates,
    fingerprint,
    meta,
    small_run,
    step_records,
    wait_for,
    worker_pid,
)
from trainctl.api import plan_job
from trainctl.cli.app import app
from trainctl.config.compose import compose, conf_dir, options
from trainctl.config.ranges import Range, check_ranges, declared_ranges
from trainctl.config.validate import FIXED_SECTIONS, section_schema
from trainctl.errors import RunFailed, RunInterrupted, TrainctlError
from trainctl.runs.disk import DiskError
from trainctl.runs.lifecycle import ending_status, owning
from trainctl.runs.manifest import check
from trainctl.runs.run_dir import RunDir

runner = CliRunner()


def one_screen(text: str) -> bool:
    return "Traceback" not in text and len(text.strip().splitlines()) <= 6


# ---------------------------------------------------------------- a full disk, a read-only root
def test_a_full_disk_exits_2_on_one_screen_keeps_the_last_checkpoint_and_records_it(runs_root: Path) -> None:
    run = small_run(1, "model.hidden=[256]")  # checkpoints of ~250 KB
    limit = 150_000  # bytes a file may grow to: every small file fits, the next checkpoint does not

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [sys.executable, "-m", "trainctl", "train", "--resume", str(run), "trainer.epochs=3"],
        capture_output=True,
        text=True,
        env={**os.environ, "TRAINCTL_RUNS_DIR": str(runs_root)},
        cwd=REPO,
        preexec_fn=small_files,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert re.match(r"error: disk full: cannot write (best|last)-step46\.pt \(File too large", result.stderr)
    assert one_screen(result.stderr), result.stderr
    assert not [p for p in runs_root.rglob("*") if p.name.endswith(".tmp")]  # no temporary file left
    assert meta(run)["status"] == "disk full" and not (run / "run.lock").exists()
    assert os.readlink(run / "checkpoints" / "last.pt") == "last-step23.pt"  # the last complete one
    assert check(run / "checkpoints" / "last.pt").intact and duplicates(step_records(run)) == []


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` made read-only: chattr +i as root (which ignores permission bits), chmod otherwise."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode:
            pytest.skip("root ignores permission bits and this filesystem has no immutable flag (chattr +i)")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


def test_a_read_only_run_root_exits_2_on_one_screen(runs_root: Path) -> None:
    run = small_run(1)
    before = fingerprint(runs_root)
    with read_only(runs_root / "mlp_digits"):
        created = runner.invoke(app, ["train", *SMALL])
        assert created.exit_code == 2, created.output
        assert "cannot write" in created.output and "a read-only or protected folder" in created.output
        assert one_screen(created.output), created.output
    with read_only(run):
        resumed = runner.invoke(app, ["train", "--resume", str(run), "trainer.epochs=2"])
        assert resumed.exit_code == 2 and "cannot write" in resumed.output and one_screen(resumed.output)
    assert fingerprint(runs_root) == before


# ---------------------------------------------------------------- how runs end
def test_a_killed_rank_ends_the_run_as_killed(runs_root: Path) -> None:
    proc = start_trainctl("trainer.epochs=300", "model.hidden=[32]", "trainer.threads=1", runs=runs_root)
    wait_for(lambda: list(runs_root.glob("mlp_digits/*/logs/rank1.log")), what="rank 1")
    (run,) = (runs_root / "mlp_digits").iterdir()
    wait_for(lambda: (run / "metrics.jsonl").is_file(), what="the run's first records")
    os.kill(worker_pid(run, 1), signal.SIGKILL)
    _, errors = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "error: rank 1 " in errors, errors[-2000:]
    assert "was killed by SIGKILL" in errors or "stopped without reporting (killed or crashed)" in errors
    assert meta(run)["status"] == "killed" and not (run / "run.lock").exists()


def test_an_elastic_restart_rolls_metrics_back_to_the_checkpoint(runs_root: Path) -> None:
    common = ["trainer.epochs=4", "trainer.batch_size=16", "trainer.log_every=1", "model.hidden=[32]"]
    proc = start_trainctl(*common, "trainer.threads=1", "launcher.max_restarts=1", runs=runs_root)
    wait_for(lambda: list(runs_root.glob("mlp_digits/*/checkpoints/last.pt")), what="a first checkpoint")
    (run,) = (runs_root / "mlp_digits").iterdir()
    wait_for(lambda: len(step_records(run)) > 95, what="steps past the first checkpoint (step 90)")
    os.kill(worker_pid(run, 1), signal.SIGKILL)
    output, errors = proc.communicate(timeout=300)
    assert proc.returncode == 0, errors[-2000:]
    record = meta(run)
    assert (
        record["status"] == "finished" and record["restarts"] == 1 and record["rolled_back"][0]["records"] > 0
    )
    steps = step_records(run)
    assert duplicates(steps) == [] and steps == list(range(1, 4 * 90 + 1))


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RunInterrupted("stopped by SIGTERM; the last checkpoint is kept"), "interrupted"),
        (KeyboardInterrupt(), "interrupted"),
        (DiskError("disk full", full=True), "disk full"),
        (OSError(28, "No space left on device"), "disk full"),
        (RunFailed("rank 1 was killed by SIGKILL"), "failed"),
        (TrainctlError("no progress for 600 s"), "failed"),
    ],
)
def test_the_launching_command_records_endings_its_workers_could_not(
    runs_root: Path, error: BaseException, status: str
) -> None:
    """A hung job stopped by SIGTERM (its workers killed without a word), a full disk: run.json still
    says running, and the parent records how the run ended."""
    run = small_run(1)
    plan = plan_job(SMALL, download=False).plan  # the plan of a new run: its ending is this command's
    RunDir(run).update_meta(status="running")
    with pytest.raises(type(error)), owning(RunDir(run), plan, note=print):
        raise error
    assert meta(run)["status"] == status and not (run / "run.lock").exists()
    stalled = RunFailed("no progress for 600 s")
    stalled.status = "stalled"
    assert ending_status(stalled) == "stalled"


def test_a_non_finite_loss_before_any_checkpoint_says_so(runs_root: Path) -> None:
    result = runner.invoke(app, ["train", "conf=linreg", "optim.lr=1e6", *SINGLE])
    assert (
        result.exit_code == 1
        and "no checkpoint was written: the loss diverged before the first one" in result.output
    )
    (run,) = (runs_root / "linreg").iterdir()
    assert meta(run)["status"] == "failed" and not (run / "checkpoints" / "last.pt").exists()


# ---------------------------------------------------------------- declared ranges
def outside(interval: Range) -> object:
    """A value just outside `interval`."""
    if math.isinf(interval.low) and math.isinf(interval.high):
        return "inf"
    if math.isinf(interval.low):
        return interval.high + 1
    value = interval.low - 1 if interval.low_closed else interval.low
    return int(value) if value == int(value) else value


def ranged_fields() -> list[tuple[str, type, str, Range]]:
    """(section, schema, field, range) of every ranged field: of each option in conf/ and of the fixed
    sections (nested ones included)."""
    found = []
    groups = {"model": "model", "dataset": "data", "optim": "optim", "parallel": "parallel"}
    for group, section in (groups | {"launcher": "launcher", "compress": "compress"}).items():
        for option in options(group):
            schema = section_schema(section, OmegaConf.load(conf_dir() / group / f"{option}.yaml").name)
            found += [(section, schema, field, r) for field, r in declared_ranges(schema).items()]
    for section, schema in FIXED_SECTIONS.items():
        found += [(section, schema, field, r) for field, r in declared_ranges(schema).items()]
        for field in dataclasses.fields(schema):
            nested = field.default_factory() if field.default_factory is not dataclasses.MISSING else None
            if dataclasses.is_dataclass(nested):
                inner = type(nested)
                found += [(f"{section}.{field.name}", inner, k, r) for k, r in declared_ranges(inner).items()]
    return found


def test_every_declared_range_is_enforced(runs_root: Path) -> None:
    fields = ranged_fields()
    keys = {f"{section}.{field}" for section, _, field, _ in fields}
    assert len(keys) > 60 and keys >= {"model.dropout", "model.hidden", "data.test_fraction", "optim.lr"}
    for section, schema, field, interval in fields:
        bad = outside(interval)
        config = schema()
        setattr(config, field, [bad] if isinstance(getattr(config, field), list) else bad)
        with pytest.raises(TrainctlError, match=rf"^{section}\.{field}=\S+ (is|has \S+) outside") as caught:
            check_ranges(config, f"{section}.")
        assert caught.value.where == f"{section}.{field}" and str(interval) in caught.value.fix
    for overrides in (  # and composition checks every section
        ["parallel=pipeline", "parallel.microbatches=0"],
        ["compress=prune50", "compress.amount=1"],
        ["distill.alpha=2"],
        ["trainer.early_stopping.patience=0"],
        ["dataset=cifar10", "data.repeats=0"],
    ):
        with pytest.raises(TrainctlError, match="outside"):
            compose(overrides)
    assert not runs_root.exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.dropout=1.5", "model.dropout=1.5 is outside [0, 1)"),
        ("data.test_fraction=1.5", "data.test_fraction=1.5 is outside (0, 1)"),
        ("launcher.max_restarts=-1", "launcher.max_restarts=-1 is outside [0, inf)"),
        ("model.hidden=[0]", "model.hidden=[0] has 0 outside [1, inf)"),
        ("optim.lr=inf", "optim.lr=inf is outside (0, inf)"),
        ("optim.lr=nan", "optim.lr=nan is outside (0, inf)"),
    ],
)
def test_out_of_range_values_exit_2_before_any_run_dir(runs_root: Path, override: str, message: str) -> None:
    first = small_run(1)
    before = fingerprint(runs_root)
    result = runner.invoke(app, ["train", *SINGLE, override])
    assert result.exit_code == 2 and message in result.output and one_screen(result.output), result.output
    assert fingerprint(runs_root) == before and (runs_root / "latest").resolve() == first


# ---------------------------------------------------------------- errors that name their place
def test_yaml_errors_in_a_config_file_keep_file_line_and_column(tmp_path: Path) -> None:
    broken = tmp_path / "mine.yaml"
    broken.write_text("defaults:\n  - override /model: mlp\nmodel:\n  hidden: [64\ntrainer:\n  epochs: 1\n")
    result = runner.invoke(app, ["train", "--config", str(broken)])
    assert result.exit_code == 2 and one_screen(result.output)
    assert f"where: {broken}:5:8" in " ".join(result.output.split())
    assert "expected ',' or ']'" in result.output


def test_a_rating_that_is_no_number_names_its_line(tmp_path: Path, runs_root: Path) -> None:
    (tmp_path / "r.csv").write_text("userId,movieId,rating\n1,1,4\n1,2,5\n\n2,1,x\n2,2,3\n")
    args = ["conf=mf_movielens", f"data.root={tmp_path}", "data.path=r.csv", "data.format=csv", *SINGLE]
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2, result.output
    assert (
        "line 5: the rating 'x' is not a number" in result.output
        and f"{tmp_path / 'r.csv'}:5" in result.output
    )
    assert not runs_root.exists()
