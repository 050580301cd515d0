"""The learning-rate range test: an exponentially rising rate, a plot, and the steepest-descent rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from trainctl.recipes.lr_find import rates, smooth, suggest
from typer.testing import CliRunner

from trainctl.cli.app import app

runner = CliRunner()


def test_suggestion_is_the_steepest_fall_before_the_minimum() -> None:
    lrs = rates(1e-5, 1.0, 101)
    # A loss that falls fastest at 1e-3 (a tanh step in log-rate) and blows up past 0.1.
    loss = [2 - math.tanh(math.log10(r) + 3) + (50 * (r - 0.1) if r > 0.1 else 0) for r in lrs]
    steepest, min_over_10 = suggest(lrs, loss)
    assert steepest == pytest.approx(1e-3, rel=0.15)
    assert min_over_10 == pytest.approx(0.1 / 10, rel=0.15)
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])  # bias-corrected from the first step


def test_lr_find_on_linreg_suggests_a_working_rate_and_saves_the_plot(runs_root: Path) -> None:
    result = runner.invoke(app, ["lr-find", "conf=linreg", "--steps", "120", "--start-lr", "1e-5"])
    assert result.exit_code == 0, result.output
    assert "suggested optim.lr=" in result.output
    (folder,) = (runs_root / "lr_find" / "linreg").iterdir()
    saved = json.loads((folder / "lr_find.json").read_text())
    assert 1e-3 < saved["suggested"] < 2.0  # SGD on y=2x learns from ~1e-3 and diverges past ~2
    assert saved["rates"] == sorted(saved["rates"]) and len(saved["losses"]) == len(saved["rates"])
    assert (folder / "lr_find.png").stat().st_size > 10_000
