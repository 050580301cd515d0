"""From a validated Config to a Plan: world size, batches, device, data and cross-field checks."""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from trainctl.config.compose import Composed
from trainctl.config.schema import Config, TrainerConfig
from trainctl.data.types import DataSpec
from trainctl.errors import TrainctlError
from trainctl.runtime.devices import resolve_device, worker_threads

if TYPE_CHECKING:
    from torch import nn


@dataclass
class Plan:
    """Everything a launcher needs, decided once in the parent and handed to every rank."""

    config: Config
    tree: dict[str, Any]  # the resolved config as plain data: what config.yaml holds
    overrides: list[str]
    world_size: int
    global_batch: int
    per_rank_batch: int
    micro_batch: int
    device: str
    threads_per_worker: int
    spec: DataSpec | None = None
    train_samples: int | None = None  # None when the data set is not on disk yet (dry runs)
    test_samples: int | None = None
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things composition changed that the user should know
    collective_timeout_s: float = 600.0
    run_dir: Path | None = None
    resume_from: Path | None = None
    recipe_args: dict[str, Any] = field(default_factory=dict)  # what a workflow hands its recipe (lr-find)

    @property
    def steps_per_epoch(self) -> int | None:
        return None if self.train_samples is None else math.ceil(self.train_samples / self.global_batch)


def require(ok: bool, passed: str, what: str, fix: str, checks: list[str]) -> None:
    """Record a passed cross-field check, or stop with a TrainctlError."""
    if not ok:
        raise TrainctlError(what, fix=fix)
    checks.append(passed)


def make_plan(
    composed: Composed,
    *,
    world_size: int,
    local_workers: int,
    launcher_checks: Sequence[str] = (),
    download: bool = True,
) -> Plan:
    """Check the config as a whole and derive the numbers every rank shares.

    `world_size` and `local_workers` (the workers sharing this machine's cores) come from the launcher
    config, or from the environment when an outside launcher (torchrun, srun) started us. With
    `download`, missing data files are fetched now, once, before any worker starts.
    """
    from trainctl.data import prepare_dataset
    from trainctl.models import build_model
    from trainctl.runtime.precision import check_precision

    cfg = composed.config
    checks = list(launcher_checks)
    require(
        world_size >= 1,
        f"world size {world_size}",
        f"the launcher asks for {world_size} processes",
        "use 1 or more",
        checks,
    )
    info = prepare_dataset(cfg.data, download=download)
    model = functools.cache(lambda: build_model(cfg.model, info.spec))  # built once, only if a check needs it
    data_world = strategy_checks(cfg, world_size, info.spec, model, checks)
    trainer_checks(cfg.trainer, checks)
    per_rank, micro = batch_layout(cfg.trainer, data_world, checks)
    schedule_checks(cfg.trainer, checks)
    require(
        importlib.util.find_spec(f"trainctl.recipes.{cfg.recipe}") is not None,
        f"recipe '{cfg.recipe}' exists",
        f"no recipe named '{cfg.recipe}'",
        "recipes live in recipes/<name>.py",
        checks,
    )
    device = resolve_device(cfg.trainer.device)
    checks.append(f"device {device}")
    checks.append(check_precision(cfg.trainer.precision, device))
    ema_checks(cfg, checks)
    check_optimizer(cfg, checks, model)
    return Plan(
        cfg,
        OmegaConf.to_container(composed.tree, enum_to_str=True),
        composed.overrides,
        world_size,
        cfg.trainer.batch_size,
        per_rank,
        micro,
        device,
        worker_threads(cfg.trainer.threads, local_workers),
        spec=info.spec,
        train_samples=info.train_samples,
        test_samples=info.test_samples,
        checks=checks,
        notes=composed.notes,
    )


def strategy_checks(
    cfg: Config, world_size: int, spec: DataSpec | None, model: Callable[[], nn.Module], checks: list[str]
) -> int:
    """The parallel mode, compression and distillation settings against the model and the world;
    returns how many ranks share the data (the data-parallel world)."""
    from trainctl.compress.checks import compression_checks
    from trainctl.runtime.parallel import build_strategy

    strategy = build_strategy(cfg.parallel)
    checks += strategy.check(cfg, world_size, model)
    checks += compression_checks(cfg, spec, model, strategy.owns_step)
    return strategy.data_world_for(world_size)


def trainer_checks(t: TrainerConfig, checks: list[str]) -> None:
    """The trainer's counts are at least 1 (max_steps and patience may also be null: off)."""
    for key in ("epochs", "batch_size", "grad_accum", "log_every", "eval_every", "eval_batch_size"):
        value = getattr(t, key)
        require(
            value >= 1,
            f"trainer.{key} >= 1",
            f"trainer.{key} must be at least 1, got {value}",
            f"set trainer.{key}=1 or more",
            checks,
        )
    for key, value in (("max_steps", t.max_steps), ("early_stopping.patience", t.early_stopping.patience)):
        if value is not None:  # null switches these off
            require(
                value >= 1,
                f"trainer.{key} >= 1",
                f"trainer.{key} must be at least 1, got {value}",
                f"set trainer.{key}=1 or more, or null",
                checks,
            )


def schedule_checks(t: TrainerConfig, checks: list[str]) -> None:
    """The learning-rate schedule's fractions of training."""
    require(
        0.0 <= t.warmup_ratio < 1.0,
        "0 <= trainer.warmup_ratio < 1",
        f"trainer.warmup_ratio must be in [0, 1), got {t.warmup_ratio}",
        "use e.g. 0.06",
        checks,
    )
    require(
        0.0 < t.pct_start < 1.0,
        "0 < trainer.pct_start < 1",
        f"trainer.pct_start must be in (0, 1), got {t.pct_start}",
        "use e.g. 0.25",
        checks,
    )


def ema_checks(cfg: Config, checks: list[str]) -> None:
    """trainer.ema is a decay in (0, 1), and the averaged copy needs a whole model per rank."""
    t = cfg.trainer
    require(
        t.ema is None or 0.0 < t.ema < 1.0,
        "0 < trainer.ema < 1",
        f"trainer.ema is the decay of the weight average and must be in (0, 1), got {t.ema}",
        "use e.g. trainer.ema=0.995, or trainer.ema=null to turn averaging off",
        checks,
    )
    require(
        t.ema is None or cfg.parallel.name in ("none", "ddp", "local_sgd"),
        "weight averaging runs on a whole model per rank",
        f"trainer.ema keeps a whole copy of the model, which parallel={cfg.parallel.name} splits",
        "use parallel=ddp (or none), or trainer.ema=null",
        checks,
    )


def batch_layout(t: TrainerConfig, data_world: int, checks: list[str]) -> tuple[int, int]:
    """(per-rank batch, micro-batch): the global batch split over the data-parallel ranks, then over
    trainer.grad_accum accumulation steps; both must divide exactly."""
    per_rank, rest = divmod(t.batch_size, data_world)
    require(
        rest == 0,
        f"batch_size {t.batch_size} divides over {data_world} data-parallel rank(s)",
        f"trainer.batch_size={t.batch_size} does not divide over {data_world} ranks",
        f"use a multiple of {data_world}",
        checks,
    )
    micro, rest = divmod(per_rank, t.grad_accum)
    require(
        rest == 0,
        f"per-rank batch {per_rank} divides into {t.grad_accum} accumulation step(s)",
        f"per-rank batch {per_rank} does not divide into trainer.grad_accum={t.grad_accum} micro-batches",
        "make trainer.batch_size a multiple of world size x grad_accum",
        checks,
    )
    return per_rank, micro


def check_optimizer(cfg: Config, checks: list[str], model: Callable[[], nn.Module]) -> None:
    """Build the optimizer once on a dummy parameter so torch validates its settings up front; per-layer
    rates (optim.layer_decay, optim.head_lr_scale) are grouped on the model itself, which must have layers."""
    import torch

    from trainctl.optim import build_optimizer
    from trainctl.optim.param_groups import param_groups

    if not 0.0 < cfg.optim.layer_decay <= 1.0:
        raise TrainctlError(
            f"optim.layer_decay={cfg.optim.layer_decay} is outside (0, 1]",
            where="optim.layer_decay",
            fix="use 1.0 for one rate everywhere, or e.g. 0.8 for layer-wise decay",
        )
    if cfg.optim.head_lr_scale <= 0.0:
        raise TrainctlError(
            f"optim.head_lr_scale={cfg.optim.head_lr_scale} must be positive",
            where="optim.head_lr_scale",
            fix="use 1.0 for the head at optim.lr, or e.g. 10 for a head learning ten times faster",
        )
    if cfg.optim.layer_decay != 1.0 or cfg.optim.head_lr_scale != 1.0:
        param_groups(cfg.optim, model())  # a model without layers is a named error here, before launch
    try:
        build_optimizer(cfg.optim, [torch.nn.Parameter(torch.zeros(1))])
    except ValueError as exc:
        raise TrainctlError(
            f"invalid optimizer settings: {exc}",
            where="optim",
            fix="see `trainctl configs show` for the optim keys",
        ) from None
    checks.append(f"optimizer {cfg.optim.name} accepts its settings")
