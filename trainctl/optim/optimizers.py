"""The torch optimizers trainctl offers, each with its config schema."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from trainctl.config.ranges import ranged
from trainctl.config.schema import OptimConfig
from trainctl.optim import OPTIMIZERS


@dataclass
class SGDConfig(OptimConfig):
    lr: float = ranged(0.1, "(0, inf)")
    momentum: float = ranged(0.9, "[0, 1)")
    nesterov: bool = False
    dampening: float = ranged(0.0, "[0, 1]")


@dataclass
class AdagradConfig(OptimConfig):
    lr: float = ranged(0.01, "(0, inf)")
    lr_decay: float = ranged(0.0, "[0, inf)")
    eps: float = ranged(1e-10, "[0, inf)")
    initial_accumulator_value: float = ranged(0.0, "[0, inf)")


@dataclass
class AdamConfig(OptimConfig):
    betas: list[float] = ranged(interval="[0, 1)", factory=lambda: [0.9, 0.999])
    eps: float = ranged(1e-8, "[0, inf)")
    amsgrad: bool = False


@dataclass
class AdamWConfig(AdamConfig):
    weight_decay: float = ranged(0.01, "[0, inf)")


Params = Iterable[torch.nn.Parameter]


@OPTIMIZERS.register("sgd", SGDConfig)
def sgd(cfg: SGDConfig, params: Params) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        dampening=cfg.dampening,
        weight_decay=cfg.weight_decay,
    )


@OPTIMIZERS.register("adagrad", AdagradConfig)
def adagrad(cfg: AdagradConfig, params: Params) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(
        params,
        lr=cfg.lr,
        lr_decay=cfg.lr_decay,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        initial_accumulator_value=cfg.initial_accumulator_value,
    )


def adam_family(cls: type[torch.optim.Optimizer], cfg: AdamConfig, params: Params) -> torch.optim.Optimizer:
    return cls(
        params,
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        amsgrad=cfg.amsgrad,
    )


@OPTIMIZERS.register("adam", AdamConfig)
def adam(cfg: AdamConfig, params: Params) -> torch.optim.Optimizer:
    return adam_family(torch.optim.Adam, cfg, params)


@OPTIMIZERS.register("adamw", AdamWConfig)
def adamw(cfg: AdamWConfig, params: Params) -> torch.optim.Optimizer:
    return adam_family(torch.optim.AdamW, cfg, params)
