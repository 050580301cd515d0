"""Learning-rate schedules: the shape of each over a known number of steps."""

from __future__ import annotations

import pytest
import torch

from trainctl.config.schema import TrainerConfig
from trainctl.optim.schedules import build_scheduler


def lrs(schedule: str, total: int = 100, steps_per_epoch: int = 10, **trainer: float) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.9)
    cfg = TrainerConfig(schedule=schedule, **trainer)
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch=steps_per_epoch, total_steps=total)
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_constant_with_warmup() -> None:
    seen = lrs("constant", warmup_ratio=0.1)
    assert seen[0] == pytest.approx(0.1) and seen[9] == pytest.approx(1.0) and seen[-1] == pytest.approx(1.0)


def test_step_decays_every_step_size_epochs() -> None:
    seen = lrs("step", step_size=2, gamma=0.5)
    assert (
        seen[19] == pytest.approx(1.0) and seen[20] == pytest.approx(0.5) and seen[40] == pytest.approx(0.25)
    )


def test_cosine_falls_from_peak_to_min_lr() -> None:
    seen = lrs("cosine", min_lr=0.1)
    assert seen[0] == pytest.approx(1.0) and seen[50] == pytest.approx(0.55, abs=0.02)
    assert seen[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in zip(seen, seen[1:], strict=False))


def test_linear_warmup_then_decay() -> None:
    seen = lrs("linear", warmup_ratio=0.06)
    assert max(seen) == pytest.approx(1.0) and seen.index(max(seen)) == 5
    assert seen[-1] < 0.02


def test_onecycle_peaks_at_the_optimizer_lr_after_pct_start() -> None:
    seen = lrs("onecycle", pct_start=0.3)
    assert max(seen) == pytest.approx(1.0, rel=1e-3)
    assert 25 <= seen.index(max(seen)) <= 31
    assert seen[0] < 0.05 and seen[-1] < 1e-3
