"""The command line: help without heavy imports, bad input as a one-screen error (exit 2, no run dir)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainctl.cli.app import app

runner = CliRunner()


def test_help_imports_neither_torch_nor_hydra() -> None:
    """What keeps --help quick (its latency is measured by `python -m bench help`, not here)."""
    code = "import sys, trainctl.cli; print('torch' in sys.modules, 'hydra' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    for args in (["--help"], ["train", "--help"], ["configs", "show", "--help"]):
        result = subprocess.run([sys.executable, "-m", "trainctl", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "Example" in result.stdout


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
        (["trainer.batch_size=0"], "trainer.batch_size=0 is outside [1, inf)"),
        (["optim.lr=-1"], "optim.lr=-1.0 is outside (0, inf)"),
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


def test_settings_that_torch_refuses_exit_2_before_any_worker() -> None:
    result = runner.invoke(
        app, ["train", "--dry-run", "optim=sgd", "optim.nesterov=true", "optim.momentum=0"]
    )
    assert result.exit_code == 2
    assert "invalid optimizer settings: Nesterov momentum requires a momentum" in result.output


def test_planning_the_default_job_imports_neither_dynamo_nor_scikit_learn() -> None:
    """Each costs seconds of CPU in the launching process, which only checks settings and sizes."""
    code = (
        "import sys; from trainctl.api import plan_job; plan_job(['optim=adamw']); "
        "print(sorted(m for m in ('torch._dynamo', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
