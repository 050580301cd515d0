"""Dataclass schemas of the config tree; each component's own fields live beside the component."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING

from trainctl.config.ranges import ranged


@dataclass
class ComponentConfig:
    """Base of a config section chosen from a registry by its `name`."""

    name: str = MISSING


@dataclass
class ModelConfig(ComponentConfig):
    """Base of every `model/` option."""


class Sampler(str, Enum):
    random = "random"  # a seeded shuffle of every sample, once per epoch
    balanced = "balanced"  # draws with replacement, each class equally likely (skewed labels)
    length = "length"  # shuffled batches of similar length (token data: less padding)


@dataclass
class DataConfig(ComponentConfig):
    """Base of every `dataset/` option (the section is called `data`)."""

    sampler: Sampler = Sampler.random


@dataclass
class FileDataConfig(DataConfig):
    """A data set read from files under `root` (default $TRAINCTL_DATA_DIR, else ~/.cache/trainctl/data)."""

    root: str = "${oc.env:TRAINCTL_DATA_DIR,'~/.cache/trainctl/data'}"
    download: bool = True


@dataclass
class OptimConfig(ComponentConfig):
    """Base of every `optim/` option."""

    lr: float = ranged(1e-3, "(0, inf)")
    weight_decay: float = ranged(0.0, "[0, inf)")
    # < 1: each layer below the head learns at layer_decay x the rate above
    layer_decay: float = ranged(1.0, "(0, 1]")
    # the head (what follows the last layer) learns at head_lr_scale x lr
    head_lr_scale: float = ranged(1.0, "(0, inf)")
    decay_norm_and_bias: bool = True  # false: no weight decay on biases and normalisation weights


@dataclass
class ParallelConfig(ComponentConfig):
    """Base of every `parallel/` option."""


@dataclass
class CompressConfig(ComponentConfig):
    """Base of every `compress/` option."""


@dataclass
class LauncherConfig(ComponentConfig):
    """Base of every `launcher/` option."""


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"  # autocast to bfloat16 (CPU and GPU)
    fp16 = "fp16"  # autocast to float16 with a gradient scaler (GPU only)


class ClassWeights(str, Enum):
    none = "none"
    balanced = "balanced"  # loss weight of class c: n / (classes * count of c in the train split)


class Schedule(str, Enum):
    constant = "constant"
    step = "step"
    cosine = "cosine"
    onecycle = "onecycle"
    linear = "linear"


class Logger(str, Enum):
    """Where metrics go besides metrics.jsonl (always written): `logger=tensorboard`, or a list."""

    jsonl = "jsonl"
    tensorboard = "tensorboard"
    mlflow = "mlflow"  # options in the `mlflow` section (`logger.mlflow.KEY` is accepted as `mlflow.KEY`)


@dataclass
class EarlyStoppingConfig:
    """End a run whose evaluation metric stopped improving (off while patience is null)."""

    metric: str | None = None  # null: trainer.monitor (the task's main metric)
    # evaluations without an improvement before stopping; null: never stop
    patience: int | None = ranged(None, "[1, inf)")
    min_delta: float = ranged(0.0, "[0, inf)")  # an improvement must beat the best value by more than this


@dataclass
class TrainerConfig:
    """The training loop: length, batching, schedule, evaluation, logging, seed and device."""

    epochs: int = ranged(10, "[1, inf)")
    # global: samples per optimizer step over all ranks and accumulation steps
    batch_size: int = ranged(64, "[1, inf)")
    grad_accum: int = ranged(1, "[1, inf)")
    grad_clip: float | None = ranged(None, "(0, inf)")  # max global grad norm; null disables clipping
    schedule: Schedule = Schedule.constant
    # fraction of all steps spent warming up linearly (cosine, linear, constant)
    warmup_ratio: float = ranged(0.0, "[0, 1)")
    step_size: int = ranged(1, "[1, inf)")  # step schedule: epochs between decays
    gamma: float = ranged(0.1, "(0, inf)")  # step schedule: decay factor
    pct_start: float = ranged(0.25, "(0, 1)")  # onecycle: fraction of steps rising to optim.lr
    min_lr: float = ranged(0.0, "[0, inf)")  # cosine/linear: final learning rate
    label_smoothing: float = ranged(0.0, "[0, 1)")
    eval_every: int = ranged(1, "[1, inf)")  # epochs between evaluations (the last epoch always evaluates)
    eval_batch_size: int = ranged(1024, "[1, inf)")
    log_every: int = ranged(10, "[1, inf)")  # optimizer steps between logged metrics
    seed: int = ranged(0, "[0, inf)")
    device: Device = Device.auto
    # torch intra-op threads per worker; null: the cores divided among workers
    threads: int | None = ranged(None, "[1, inf)")
    monitor: str | None = None  # metric that picks best.pt; null: the task's main metric
    # stop after this many optimizer steps; the schedule still spans `epochs`
    max_steps: int | None = ranged(None, "[1, inf)")
    # last.pt and the keep_checkpoints - 1 checkpoints before it stay on disk, verified fall-backs
    keep_checkpoints: int = ranged(2, "[1, inf)")
    # also write last.pt every N optimizer steps inside an epoch; null: at each epoch's end only
    checkpoint_every: int | None = ranged(None, "[1, inf)")
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    profile: bool = False  # record a torch.profiler trace of a few steps into <run>/profile/
    precision: Precision = Precision.fp32
    class_weights: ClassWeights = ClassWeights.none
    # decay of an exponential moving average of the weights, evaluated instead
    ema: float | None = ranged(None, "(0, 1)")


@dataclass
class DistillConfig:
    """Knowledge distillation (Hinton et al. 2015): also learn a teacher run's softened predictions."""

    teacher: str | None = None  # RUN_DIR or 'latest' (resolved when composed); null: no distillation
    # softens both distributions; the soft term is scaled by temperature^2
    temperature: float = ranged(4.0, "(0, inf)")
    # weight of the soft-target term; 1 - alpha weighs the loss on the labels
    alpha: float = ranged(0.9, "[0, 1]")
    checkpoint: str = "last"  # the teacher's checkpoint: last or best


@dataclass
class RunConfig:
    """Where runs are written: <root>/<preset>/<timestamp>/."""

    root: str = "${oc.env:TRAINCTL_RUNS_DIR,runs}"


@dataclass
class MlflowConfig:
    """`logger=mlflow`: where the run goes in MLflow and what is uploaded besides params and metrics."""

    tracking_uri: str | None = None  # null: a local store, sqlite:///<run.root>/mlflow/mlflow.db
    experiment: str | None = None  # null: the preset's name
    log_checkpoints: bool = False  # also upload checkpoints/ (large); the record and config always go
    # how long the run's end waits for uploads still queued (the rest: `trainctl runs sync RUN`)
    timeout_s: float = ranged(30.0, "(0, inf)")


@dataclass
class Config:
    """One validated, resolved experiment: what every later stage receives."""

    preset: str = "mlp_digits"
    recipe: str = "supervised"
    model: Any = MISSING
    data: Any = MISSING
    optim: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    parallel: Any = MISSING
    compress: Any = MISSING
    launcher: Any = MISSING
    distill: DistillConfig = field(default_factory=DistillConfig)
    scheduler: Any = (
        None  # a `_target_` LR scheduler (stepped once per optimizer step); null: trainer.schedule
    )
    loss: Any = None  # a `_target_` loss module (the batch mean); null: the task's loss
    run: RunConfig = field(default_factory=RunConfig)
    logger: list[Logger] = field(default_factory=lambda: [Logger.jsonl])
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
