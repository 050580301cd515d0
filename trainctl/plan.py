"""From a validated Config to a Plan: world size, batches, device, data and cross-field checks."""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from trainctl.config.compose import Composed
from trainctl.config.schema import Config, Device
from trainctl.data.types import DataSpec
from trainctl.errors import TrainctlError
from trainctl.runtime.threads import thread_budget

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
    threads_source: str = "trainer.threads"  # where threads_per_worker came from (thread_budget)
    spec: DataSpec | None = None
    train_samples: int | None = None  # None when the data set is not on disk yet (dry runs)
    test_samples: int | None = None
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things composition changed that the user should know
    collective_timeout_s: float = 600.0
    run_dir: Path | None = None
    resume_from: Path | None = None

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
    world_size: int | None = None,
    cpu_sharers: int | None = None,
    download: bool = True,
) -> Plan:
    """Check the config as a whole and derive the numbers every rank shares.

    `world_size` comes from the environment when an outside launcher (torchrun, srun) started us, and
    `cpu_sharers` (the workers that share this process's CPUs); otherwise the launcher config decides
    both. With `download`, missing data files are fetched now, once, before any worker starts.
    """
    from trainctl.compress.checks import compression_checks  # issue 5: compress=..., distill.teacher
    from trainctl.data import prepare_dataset
    from trainctl.models import build_model
    from trainctl.runtime.launch import build_launcher
    from trainctl.runtime.parallel import build_strategy
    from trainctl.runtime.precision import check_precision

    cfg = composed.config
    t = cfg.trainer
    checks: list[str] = []
    launcher = build_launcher(cfg.launcher)
    checks += launcher.check() if world_size is None else []
    world = world_size or launcher.world_size()
    require(
        world >= 1, f"world size {world}", f"the launcher asks for {world} processes", "use 1 or more", checks
    )
    info = prepare_dataset(cfg.data, download=download)
    strategy = build_strategy(cfg.parallel)
    model = functools.cache(lambda: build_model(cfg.model, info.spec))  # built once, only if a check needs it
    checks += strategy.check(cfg, world, model)
    checks += compression_checks(cfg, info.spec, model, strategy.owns_step)
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
    data_world = strategy.data_world_for(world)
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
    require(
        importlib.util.find_spec(f"trainctl.recipes.{cfg.recipe}") is not None,
        f"recipe '{cfg.recipe}' exists",
        f"no recipe named '{cfg.recipe}'",
        "recipes live in recipes/<name>.py",
        checks,
    )
    device = resolve_device(t.device)
    checks.append(f"device {device}")
    checks.append(check_precision(t.precision, device))
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
    check_optimizer(cfg, checks, model)
    if cpu_sharers is None:
        cpu_sharers = (
            int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if world_size else getattr(cfg.launcher, "nproc", 1)
        )
    threads = thread_budget(cpu_sharers, t.threads)
    notes = list(composed.notes)
    if world == 1 and cfg.parallel.name != "none":
        notes.append(
            f"parallel={cfg.parallel.name} in a world of one process: it trains like parallel=none "
            "(to run several ranks: launcher.nproc=N, torchrun --nproc-per-node N, or srun -n N)"
        )
    tree = OmegaConf.to_container(composed.tree, enum_to_str=True)
    return Plan(
        cfg,
        tree,
        composed.overrides,
        world,
        t.batch_size,
        per_rank,
        micro,
        device,
        threads.threads,
        threads_source=threads.source,
        spec=info.spec,
        train_samples=info.train_samples,
        test_samples=info.test_samples,
        checks=checks,
        notes=notes,
    )


def resolve_device(device: Device | str) -> str:
    """`auto` means cuda when a GPU is visible, else cpu; asking for a missing GPU is an error."""
    import torch

    name = Device(device).value
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainctlError("trainer.device=cuda but no GPU is visible", fix="use trainer.device=auto or cpu")
    return name


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
