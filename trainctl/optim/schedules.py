"""Learning-rate schedules stepped once per optimizer step: constant, step, cosine, linear, one-cycle."""

from __future__ import annotations

import functools
import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from trainctl.config.schema import Schedule, TrainerConfig
from trainctl.config.targets import SCHEDULER, Targeted, instantiate, target_section


def multiplier(
    step: int, *, schedule: str, warmup: int, total: int, decay_every: int, gamma: float, floor: float
) -> float:
    """The factor on the peak learning rate at `step` (warm-up is linear from zero)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == Schedule.step.value:
        return gamma ** (step // decay_every)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == Schedule.cosine.value:
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == Schedule.linear.value:
        return floor + (1.0 - floor) * (1.0 - progress)
    return 1.0


def build_scheduler(
    cfg: TrainerConfig,
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    total_steps: int,
    target: Targeted | None = None,
) -> LRScheduler:
    """The schedule of `cfg.schedule` over `total_steps`, peaking at the optimizer's learning rate; or the
    `scheduler._target_` class, given the optimizer and, where it asks for them, total_steps (also as
    T_max), steps_per_epoch and epochs."""
    if target is not None:
        return instantiate(
            target_section(target),
            SCHEDULER,
            "scheduler",
            optimizer,
            total_steps=total_steps,
            T_max=total_steps,
            steps_per_epoch=steps_per_epoch,
            epochs=cfg.epochs,
        )
    schedule = Schedule(cfg.schedule)
    if schedule is Schedule.onecycle:
        defaults = optimizer.defaults
        return OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=total_steps,
            pct_start=cfg.pct_start,
            cycle_momentum=defaults.get("momentum", 0) > 0 or "betas" in defaults,
        )
    peak = optimizer.param_groups[0]["lr"]
    factor = functools.partial(
        multiplier,
        schedule=schedule.value,
        warmup=round(cfg.warmup_ratio * total_steps),
        total=total_steps,
        decay_every=max(1, cfg.step_size * steps_per_epoch),
        gamma=cfg.gamma,
        floor=cfg.min_lr / peak if peak else 0.0,
    )
    return LambdaLR(optimizer, factor)
