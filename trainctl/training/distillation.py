"""Knowledge distillation: the student learns the teacher run's softened predictions and the labels.

Hinton et al. 2015: loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
                         + (1 - alpha) * the task's loss on the labels.
The T^2 keeps the soft term's gradients on the scale of the hard term's as T changes. The teacher is
rebuilt from its checkpoint (compressed or not), kept in eval mode with no gradients, and never wrapped
by the parallel strategy: under ddp every rank holds its own copy and runs it on its own share.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from trainctl.config.schema import Config, DistillConfig
from trainctl.data.types import DataSpec, Task
from trainctl.errors import TrainctlError
from trainctl.runs.run_dir import resolve_run
from trainctl.training.objective import Objective


class Distiller:
    """The training loss of a student taught by `teacher`."""

    def __init__(self, teacher: nn.Module, temperature: float, alpha: float, objective: Objective) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.device = next(iter(teacher.state_dict().values())).device
        self.temperature = temperature
        self.alpha = alpha
        self.objective = objective

    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.teacher(inputs.to(self.device)).float()

    def loss(self, student_logits: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        teacher = self.teacher_logits(inputs).to(student_logits.device)
        soft = F.kl_div(
            F.log_softmax(student_logits.float() / t, dim=1),
            F.log_softmax(teacher / t, dim=1),
            log_target=True,
            reduction="batchmean",
        )
        hard = self.objective.loss(student_logits, targets)
        return self.alpha * t * t * soft + (1.0 - self.alpha) * hard


def teacher_checkpoint(cfg: DistillConfig) -> Path:
    """The teacher run's checkpoint file; a TrainctlError when the run or the file is missing."""
    assert cfg.teacher
    run = resolve_run(cfg.teacher, Path(cfg.teacher).parent)
    checkpoint = run.checkpoint(cfg.checkpoint)
    if not checkpoint.is_file():
        raise TrainctlError(
            f"the teacher run has no {cfg.checkpoint} checkpoint: {checkpoint}",
            where="distill.teacher",
            fix="train the teacher first, or set distill.checkpoint=last|best",
        )
    return checkpoint


def check_distill(cfg: Config, spec: DataSpec | None, owns_step: bool) -> list[str]:
    """Refuse a distillation that cannot run (before a run directory is written)."""
    d = cfg.distill
    if not d.teacher:
        return []
    if d.temperature <= 0:
        raise TrainctlError(f"distill.temperature must be above 0, got {d.temperature}", fix="e.g. 4")
    if not 0.0 <= d.alpha <= 1.0:
        raise TrainctlError(f"distill.alpha must be in [0, 1], got {d.alpha}", fix="e.g. 0.9")
    if owns_step:
        raise TrainctlError(
            f"parallel={cfg.parallel.name} computes the loss itself; distillation needs the recipe's loss",
            fix="use parallel=ddp or none",
        )
    if spec is not None and spec.task is not Task.classification:
        raise TrainctlError("distillation teaches class probabilities; this data set is a regression task")
    from trainctl.training.checkpoint import load_checkpoint

    teacher = OmegaConf.create(load_checkpoint(teacher_checkpoint(d))["config"])
    if teacher.data.name != cfg.data.name:
        raise TrainctlError(
            f"the teacher was trained on data set '{teacher.data.name}', "
            f"the student trains on '{cfg.data.name}'",
            where="distill.teacher",
            fix="pick a teacher run of the same data set",
        )
    model = f"{teacher.model.name} on {teacher.data.name}"
    return [f"distillation from {d.teacher} ({model}), T={d.temperature:g}, alpha={d.alpha:g}"]


def build_distiller(
    cfg: Config, spec: DataSpec, objective: Objective, device: torch.device
) -> Distiller | None:
    """The distillation loss of `cfg.distill`, with its teacher loaded on `device`; None without a teacher."""
    if not cfg.distill.teacher:
        return None
    from trainctl.compress.stored import inference_device, rebuild_model
    from trainctl.config.compose import compose
    from trainctl.training.checkpoint import load_checkpoint

    state = load_checkpoint(teacher_checkpoint(cfg.distill))
    teacher_cfg = compose([], base=OmegaConf.create(state["config"])).config
    teacher = rebuild_model(teacher_cfg.model, spec, state).to(inference_device(state, device))
    return Distiller(teacher, cfg.distill.temperature, cfg.distill.alpha, objective)
