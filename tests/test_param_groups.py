"""Optimizer parameter groups: layer-wise learning-rate decay and weight decay only on matrices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from trainctl.cli.app import app
from trainctl.data.types import DataSpec, Task
from trainctl.errors import TrainctlError
from trainctl.models import build_model
from trainctl.models.resnet import ResNetConfig
from trainctl.optim import build_optimizer
from trainctl.optim.optimizers import AdamWConfig
from trainctl.optim.param_groups import param_groups


class Layered(nn.Module):
    """An embedding, two blocks and a head, in that order: the shape of a transformer classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.layers = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)) for _ in range(2)])
        self.head = nn.Linear(4, 2)

    def blocks(self) -> list[nn.Module]:
        return list(self.layers)


def rate_of(groups: list[dict], param: nn.Parameter) -> tuple[float, float]:
    group = next(g for g in groups if any(p is param for p in g["params"]))
    return group["lr"], group["weight_decay"]


def adamw(**fields: object) -> AdamWConfig:
    return AdamWConfig(name="adamw", lr=1e-3, weight_decay=0.01, **fields)


def test_defaults_are_one_group_of_the_trainable_parameters() -> None:
    model = Layered()
    model.embed.requires_grad_(False)
    groups = param_groups(adamw(), model)
    assert len(groups) == 1 and groups[0]["lr"] == 1e-3 and groups[0]["weight_decay"] == 0.01
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.parameters() if p.requires_grad}


def test_layer_decay_slows_each_layer_below_the_head() -> None:
    model = Layered()
    groups = param_groups(adamw(layer_decay=0.5), model)
    assert rate_of(groups, model.head.weight)[0] == pytest.approx(1e-3)
    assert rate_of(groups, model.layers[1][0].weight)[0] == pytest.approx(5e-4)
    assert rate_of(groups, model.layers[1][1].bias)[0] == pytest.approx(5e-4)
    assert rate_of(groups, model.layers[0][0].weight)[0] == pytest.approx(2.5e-4)
    assert rate_of(groups, model.embed.weight)[0] == pytest.approx(1.25e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # the schedule's peak (group 0) is optim.lr: logged and scaled as before
    optimizer = build_optimizer(adamw(layer_decay=0.5), groups)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_head_lr_scale_speeds_up_only_the_head() -> None:
    model = Layered()
    groups = param_groups(adamw(head_lr_scale=10.0, layer_decay=0.5), model)
    assert rate_of(groups, model.head.bias)[0] == pytest.approx(1e-2)
    assert rate_of(groups, model.layers[1][0].weight)[0] == pytest.approx(5e-4)
    assert rate_of(groups, model.embed.weight)[0] == pytest.approx(1.25e-4)
    with pytest.raises(TrainctlError, match="optim.head_lr_scale needs a model made of layers"):
        param_groups(adamw(head_lr_scale=10.0), nn.Sequential(nn.Linear(2, 2)))


def test_no_weight_decay_on_biases_and_norms_when_asked() -> None:
    model = Layered()
    groups = param_groups(adamw(decay_norm_and_bias=False), model)
    assert rate_of(groups, model.layers[0][0].weight)[1] == 0.01
    assert rate_of(groups, model.embed.weight)[1] == 0.01
    assert rate_of(groups, model.layers[0][0].bias)[1] == 0.0
    assert rate_of(groups, model.layers[0][1].weight)[1] == 0.0  # LayerNorm scale
    assert rate_of(groups, model.head.bias)[1] == 0.0


def test_layer_decay_needs_a_model_with_layers() -> None:
    with pytest.raises(TrainctlError, match="lists none"):
        param_groups(adamw(layer_decay=0.8), nn.Sequential(nn.Linear(2, 2)))


def test_bad_layer_rates_are_refused_before_launch(runs_root: Path) -> None:
    result = CliRunner().invoke(app, ["train", "optim.layer_decay=1.5", "--dry-run"])
    assert result.exit_code == 2 and "optim.layer_decay=1.5 is outside (0, 1]" in result.output
    result = CliRunner().invoke(app, ["train", "optim.head_lr_scale=0"])
    assert result.exit_code == 2 and "optim.head_lr_scale=0.0 must be positive" in result.output
    result = CliRunner().invoke(app, ["train", "optim.layer_decay=0.8"])  # the default MLP has no layers
    assert result.exit_code == 2 and "MLP lists none" in " ".join(result.output.split())
    assert not runs_root.exists()  # refused by the planner: no run dir


def test_layer_decay_trains_a_resnet_block_by_block() -> None:
    torch.manual_seed(0)
    spec = DataSpec(input_shape=(3, 32, 32), num_outputs=10, task=Task.classification)
    model = build_model(ResNetConfig(name="resnet20"), spec)  # a real model with blocks()
    groups = param_groups(adamw(layer_decay=0.9), model)
    assert len(groups) == len(model.blocks()) + 2  # stem, each block, head
    assert rate_of(groups, model.head.weight)[0] == pytest.approx(1e-3)
