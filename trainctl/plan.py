"""From a validated Config to a Plan: world size, batches, device, data and cross-field checks (the
range of each single value is declared beside its schema field and checked by trainctl.config.ranges)."""

from __future__ import annotations

import functools
import importlib.util
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from trainctl.config.compose import Composed
from trainctl.config.ranges import check_ranges
from trainctl.config.schema import Config, TrainerConfig
from trainctl.data.types import DataSpec
from trainctl.errors import TrainctlError
from trainctl.runtime.devices import resolve_device
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
    recipe_args: dict[str, Any] = field(default_factory=dict)  # what a workflow hands its recipe (lr-find)
    # What `--resume` applied (its overrides and the values they changed), recorded when the run starts
    resume_record: dict[str, Any] | None = None
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # this command's start of the run

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

    `world_size` and `local_workers` (the workers sharing this process's CPU allocation) come from the
    launcher config, or from the environment when an outside launcher (torchrun, srun) started us. With
    `download`, missing data files are fetched now, once, before any worker starts.
    """
    from trainctl.data import prepare_dataset
    from trainctl.models import build_model
    from trainctl.runtime.precision import check_precision

    cfg = composed.config
    checks = [f"{check_ranges(cfg)} values within their declared ranges", *launcher_checks]
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
    target_model_check(cfg, model, checks)
    per_rank, micro = batch_layout(cfg.trainer, data_world, checks)
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
    threads = thread_budget(local_workers, cfg.trainer.threads)
    notes = list(composed.notes) + list(info.notes)
    if world_size == 1 and cfg.parallel.name != "none":
        notes.append(
            f"parallel={cfg.parallel.name} in a world of one process: it trains like parallel=none "
            "(to run several ranks: launcher.nproc=N, torchrun --nproc-per-node N, or srun -n N)"
        )
    return Plan(
        cfg,
        OmegaConf.to_container(composed.tree, enum_to_str=True),
        composed.overrides,
        world_size,
        cfg.trainer.batch_size,
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


def target_model_check(cfg: Config, model: Callable[[], nn.Module], checks: list[str]) -> None:
    """A `model._target_` is built once here, with what the data gives it: wrong arguments or a built
    object that is no torch module stop before any worker starts."""
    from trainctl.config.targets import is_target

    if is_target(cfg.model):
        built = model()
        count = sum(p.numel() for p in built.parameters())
        checks.append(f"model {cfg.model.name} builds ({count:,} parameters)")


def ema_checks(cfg: Config, checks: list[str]) -> None:
    """The averaged copy of trainer.ema needs a whole model per rank."""
    require(
        cfg.trainer.ema is None or cfg.parallel.name in ("none", "ddp", "local_sgd"),
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


EMPTY_PARAMETERS = "empty parameter list"  # torch.optim.Optimizer's error once the settings pass


def check_optimizer(cfg: Config, checks: list[str], model: Callable[[], nn.Module]) -> None:
    """Let torch validate the optimizer's settings up front; per-layer rates (optim.layer_decay,
    optim.head_lr_scale) are grouped on the model itself, which must have layers.

    The optimizer is built over no parameters: torch checks every setting first, then refuses the empty
    list before it adds a parameter group (whose first use imports torch._dynamo, seconds of CPU)."""
    from trainctl.config.targets import is_target
    from trainctl.optim import build_optimizer
    from trainctl.optim.param_groups import param_groups

    if is_target(cfg.optim):  # its keys were checked against its signature when the config was composed
        checks.append(f"optimizer {cfg.optim.name}'s keys match its signature")
        return
    if cfg.optim.layer_decay != 1.0 or cfg.optim.head_lr_scale != 1.0:
        param_groups(cfg.optim, model())  # a model without layers is a named error here, before launch
    try:
        build_optimizer(cfg.optim, [])
    except ValueError as exc:
        if EMPTY_PARAMETERS not in str(exc):
            raise TrainctlError(
                f"invalid optimizer settings: {exc}",
                where="optim",
                fix="see `trainctl configs show` for the optim keys",
            ) from None
    checks.append(f"optimizer {cfg.optim.name} accepts its settings")
