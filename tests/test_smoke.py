"""Smoke checks: falling loss, resume equals a straight run, one seed gives one result, and a broken
resume is caught."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import SINGLE
from trainctl.cli.app import app
from trainctl.workflows.smoke import difference, loss_falls, smoke

runner = CliRunner()


def test_loss_must_be_finite_and_fall() -> None:
    assert loss_falls([2.0, 1.8, 1.5, 1.1])[0]
    assert not loss_falls([1.0, 1.0, 1.0, 1.0])[0]
    assert not loss_falls([1.0, 2.0, 3.0, 4.0])[0]
    ok, why = loss_falls([2.0, math.nan, 1.0, 0.5])
    assert not ok and "non-finite loss at logged step 2" in why
    assert not loss_falls([])[0]


def test_difference_names_what_differs() -> None:
    a = {"w": torch.ones(2), "ids": {"user": [1, 2]}, "scale": (1.0, 5.0)}
    assert difference(a, {"w": torch.ones(2), "ids": {"user": [1, 2]}, "scale": (1.0, 5.0)}) is None
    assert "w differs (max abs difference 0.5)" in str(difference(a, {**a, "w": torch.tensor([1.0, 1.5])}))
    assert "ids.user[1] differs" in str(difference(a, {**a, "ids": {"user": [1, 3]}}))


def test_resume_and_determinism_checks_pass_on_a_correct_recipe(tmp_path: Path) -> None:
    (result,) = smoke(
        ["mlp_digits"], SINGLE, steps=8, check_resume=True, check_determinism=True, keep=tmp_path
    )
    assert result.ok, result.failures
    assert any("resume: 4 steps + resume + 4 give bit-identical weights" in c for c in result.checks)
    assert any("determinism" in c for c in result.checks)


def test_resume_check_fails_when_resume_forgets_the_optimizer_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Break resuming on purpose: the optimizer restarts with empty Adam moments after a resume.
    monkeypatch.setattr(torch.optim.Optimizer, "load_state_dict", lambda self, state: None)
    (result,) = smoke(["mlp_digits"], SINGLE, steps=8, check_resume=True, keep=tmp_path)
    assert not result.ok
    assert any(f.startswith("resume: 4 steps + resume + 4:") and "differs" in f for f in result.failures)


def test_smoke_command_exits_1_on_a_diverging_preset_and_0_on_a_good_one() -> None:
    bad = runner.invoke(app, ["smoke", "conf=linreg", "optim.lr=100", "--steps", "6"])
    assert bad.exit_code == 1, bad.output
    assert "FAILED linreg" in bad.output and "smoke failed: linreg" in bad.output
    good = runner.invoke(app, ["smoke", "conf=linreg", "--steps", "6", "--check-determinism"])
    assert good.exit_code == 0, good.output
    assert "smoke passed: 1 preset(s)" in good.output
    unknown = runner.invoke(app, ["smoke", "conf=linrg"])
    assert unknown.exit_code == 2 and "Did you mean 'linreg'?" in unknown.output
