"""ResNets for 32x32 images: the CIFAR ResNet-20/32/56 of He et al. 2016 and a ResNet-18 with a 3x3 stem."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainctl.config.schema import ModelConfig
from trainctl.data.types import DataSpec
from trainctl.errors import TrainctlError
from trainctl.models import MODELS


@dataclass
class ResNetConfig(ModelConfig):
    channels_last: bool = False  # NHWC memory layout: faster convolutions on recent CPUs and GPUs
    compile: bool = False  # torch.compile the model (module.compile(): state-dict keys stay the same)


class PadShortcut(nn.Module):
    """He et al.'s option A: subsample by 2 and zero-pad the new channels; no parameters."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, projection: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = (
                nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
                )
                if projection
                else PadShortcut(out_channels - in_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNet(nn.Module):
    """3x3 stem, stages of basic blocks (the first block of each later stage halves the resolution),
    global average pooling and a linear head."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        *,
        projection: bool,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.channels_last = channels_last
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, width = [], widths[0]
        for i, (out, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for j in range(depth):
                blocks.append(BasicBlock(width, out, 2 if i > 0 and j == 0 else 1, projection))
                width = out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def blocks(self) -> list[nn.Module]:
        """The residual blocks in order: the units a sharding or checkpointing wrapper wraps one by one."""
        return [block for stage in self.stages for block in stage]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise TrainctlError(
                f"the model expects image batches shaped (N, {self.in_channels}, H, W), got {tuple(x.shape)}",
                where="model input",
                fix="check the data set's image layout (channels first)",
            )
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def finish(model: ResNet, cfg: ResNetConfig) -> ResNet:
    """Apply the build options that do not change the weights."""
    if cfg.compile:
        model.compile()
    return model


def image_channels(spec: DataSpec, name: str) -> int:
    """The channel count of the data set's images; a data set of other inputs is a user error."""
    if len(spec.input_shape) != 3:
        raise TrainctlError(
            f"model={name} needs images shaped (C, H, W); this data set gives {spec.input_shape}",
            where="model",
            fix="use an image data set (dataset=cifar10, dataset=mnist) or another model",
        )
    return spec.input_shape[0]


def cifar_resnet(depth: int):  # noqa: ANN201 - returns a registered builder
    """Builder of the CIFAR ResNet with 6n+2 layers: three stages of n blocks, 16/32/64 channels."""
    n = (depth - 2) // 6

    def build(cfg: ResNetConfig, spec: DataSpec) -> ResNet:
        model = ResNet(
            image_channels(spec, f"resnet{depth}"),
            spec.num_outputs,
            (16, 32, 64),
            (n, n, n),
            projection=False,
            channels_last=cfg.channels_last,
        )
        return finish(model, cfg)

    build.__doc__ = f"ResNet-{depth} for CIFAR (He et al. 2016, section 4.2)."
    return build


for _depth in (20, 32, 56):
    MODELS.register(f"resnet{_depth}", ResNetConfig)(cifar_resnet(_depth))


@MODELS.register("resnet18", ResNetConfig)
def build_resnet18(cfg: ResNetConfig, spec: DataSpec) -> ResNet:
    """ResNet-18 (64..512 channels, 2-2-2-2 blocks, projection shortcuts) with a 3x3 stem, no max-pool."""
    model = ResNet(
        image_channels(spec, "resnet18"),
        spec.num_outputs,
        (64, 128, 256, 512),
        (2, 2, 2, 2),
        projection=True,
        channels_last=cfg.channels_last,
    )
    return finish(model, cfg)
