"""Image augmentation on whole batches of tensors (crop, flip, cutout), seeded, no per-image Python."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ImageAugment:
    """Random crop after zero padding, horizontal flip and cutout, drawn per image for a whole batch.

    `crop_padding` pixels of padding on each side then a crop back to the original size (a random
    translation of up to that many pixels); `flip` mirrors half of the images; `cutout` zeroes one
    square of that side per image (centre anywhere, clipped at the borders). The draws come from a
    generator seeded by the caller, so a resumed run augments exactly as an uninterrupted one.
    """

    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.cutout > 0

    def __call__(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        n, _, height, width = images.shape
        device = images.device
        generator = torch.Generator(device=device).manual_seed(seed)
        out = images
        if self.crop_padding > 0:
            out = random_crop(out, self.crop_padding, generator)
        if self.flip:
            mirror = torch.rand(n, device=device, generator=generator) < 0.5
            out = torch.where(mirror.view(n, 1, 1, 1), out.flip(3), out)
        if self.cutout > 0:
            cy = torch.randint(0, height, (n, 1, 1), device=device, generator=generator)
            cx = torch.randint(0, width, (n, 1, 1), device=device, generator=generator)
            rows = torch.arange(height, device=device).view(1, height, 1)
            cols = torch.arange(width, device=device).view(1, 1, width)
            top, left = cy - self.cutout // 2, cx - self.cutout // 2
            inside = (rows >= top) & (rows < top + self.cutout) & (cols >= left) & (cols < left + self.cutout)
            out = out.masked_fill(inside.unsqueeze(1), 0.0)
        return out


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` and cut each image back to its size at its own random offset."""
    n, _, height, width = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), device=device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=device, generator=generator)
    rows = (dy.view(n, 1) + torch.arange(height, device=device)).view(n, 1, height, 1)
    cols = (dx.view(n, 1) + torch.arange(width, device=device)).view(n, 1, 1, width)
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    channels = torch.arange(images.shape[1], device=device).view(1, -1, 1, 1)
    return padded[batch, channels, rows, cols]


class FlipAveraged(nn.Module):
    """Test-time augmentation: the mean of the model's softmax on an image and on its mirror image.

    Returns log-probabilities, so argmax-based accuracy and a cross-entropy loss both still apply.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        both = self.model(torch.cat([images, images.flip(3)])).float().log_softmax(dim=1)
        plain, mirrored = both.chunk(2)
        return torch.logaddexp(plain, mirrored) - math.log(2.0)  # log of the mean probability, stably
