"""Fine-tuning after a pass (pruning): a few epochs on the train split with the run's optimizer kind."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from trainctl.data.augment import batch_seed
from trainctl.data.loader import BatchLoader
from trainctl.errors import RunFailed
from trainctl.models import training_penalty
from trainctl.optim import build_optimizer
from trainctl.optim.param_groups import param_groups
from trainctl.training.objective import build_objective

if TYPE_CHECKING:
    from trainctl.compress.base import PassJob

LR_FRACTION = 0.1  # default fine-tuning rate: a tenth of the run's optim.lr, at a constant rate


def finetune(model: nn.Module, job: PassJob, epochs: int, lr: float | None) -> None:
    """Train `model` in place, on one process, continuing the run's epoch orders (epoch E, E+1, ...).

    Pruning masks registered by torch.nn.utils.prune stay applied, so pruned weights stay zero.
    """
    cfg = job.cfg
    rate = cfg.optim.lr * LR_FRACTION if lr is None else lr
    optim = dataclasses.replace(cfg.optim, lr=rate)
    optimizer = build_optimizer(optim, param_groups(optim, model))
    objective = build_objective(cfg.trainer, job.data, job.device, cfg.loss)  # label smoothing, class weights
    loader = BatchLoader(job.data.train, cfg.trainer.batch_size, shuffle=True, seed=cfg.trainer.seed)
    model.to(job.device).train()
    for epoch in range(epochs):
        total, samples = 0.0, 0
        for batch, inputs, targets, _ in loader.epoch(cfg.trainer.epochs + epoch):
            inputs, targets = inputs.to(job.device), targets.to(job.device)
            if job.data.augment is not None:  # the data set's batch augmentation, as in training
                seed = batch_seed(cfg.trainer.seed, cfg.trainer.epochs + epoch, batch)
                inputs, targets = job.data.augment(inputs, targets, seed)
            optimizer.zero_grad(set_to_none=True)
            loss = objective.loss(model(inputs), targets)
            (loss + training_penalty(model)).backward()  # a model's own regularizer (mf), as in training
            if cfg.trainer.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.grad_clip)
            optimizer.step()
            total += loss.item() * len(targets)
            samples += len(targets)
        mean = total / max(samples, 1)
        if not math.isfinite(mean):
            raise RunFailed(
                f"fine-tuning diverged: the loss became {mean} in epoch {epoch + 1}",
                fix="lower the fine-tuning rate (finetune_lr) or fine-tune for fewer epochs",
            )
        job.log(f"fine-tune epoch {epoch + 1}/{epochs}: train loss {mean:.4f} (lr {rate:g})")
    model.eval()
