"""The command line: fast help, and bad input as a one-screen error with exit code 2 and no run dir."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainctl.cli.app import app

runner = CliRunner()


def test_help_is_fast_and_imports_no_torch() -> None:
    code = "import sys, trainctl.cli; print('torch' in sys.modules, 'hydra' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    for args in (["--help"], ["train", "--help"], ["configs", "show", "--help"]):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "trainctl", *args], capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        assert result.returncode == 0, result.stderr
        assert "Example" in result.stdout
        assert elapsed < 2.0, f"{args} took {elapsed:.2f}s"  # generous: shared CI machines vary


@pytest.mark.parametrize(
    "command",
    [["runs", "ls"], ["report"], ["lr-find"], ["sweep"], ["smoke"], ["eval"], ["recommend"], ["plan"]],
)
def test_every_command_help_shows_an_example(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Example: trainctl " + command[0] in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["optim.lrr=0.1"], "Did you mean 'optim.lr'?"),
        (["optm=adam"], "Did you mean 'optim'?"),
        (["optim=adm"], "Did you mean 'adam'?"),
        (["conf=mlp_mnst"], "Did you mean 'mlp_mnist'?"),
        (["trainer.epochs=abc"], "could not be converted to Integer"),
        (["trainer.device=gpu"], "expected one of [auto, cpu, cuda]"),
        (["model.hidden=[512,"], "malformed override"),
        (["model=linear", "model.hidden=[3]"], "unknown config key 'model.hidden'"),
        (["trainer.batch_size=0"], "trainer.batch_size must be at least 1"),
        (["optim.lr=-1"], "invalid optimizer settings"),
        (["optim.lr=1e-3,1e-2"], "is a sweep"),
    ],
)
def test_bad_input_exits_2_with_a_hint_and_writes_nothing(
    args: list[str], expected: str, runs_root: Path
) -> None:
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not runs_root.exists()


def test_typo_through_the_installed_command(runs_root: Path) -> None:
    installed = Path(sys.executable).parent / "trainctl"
    result = subprocess.run([str(installed), "train", "optim.lrr=0.1"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "optim.lr" in result.stderr and "Traceback" not in result.stderr
    assert not runs_root.exists()


def test_eval_of_a_missing_run_is_a_user_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "not a run directory" in result.output


def test_dry_run_prints_the_plan_and_writes_nothing(runs_root: Path) -> None:
    result = runner.invoke(app, ["train", "--dry-run", "trainer.batch_size=32"])
    assert result.exit_code == 0, result.output
    assert "global 32" in result.output and "mlp_digits" in result.output
    assert not runs_root.exists()
