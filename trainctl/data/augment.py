"""Image augmentation on whole batches of tensors (crop, flip, cutout), seeded, no per-image Python."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def batch_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    """The seed of one batch's augmentation: a function of its position alone, so a resumed run (or a
    fine-tuning that continues the epochs) draws what an uninterrupted one would."""
    return ((seed * 1_000_003 + epoch) * 100_003 + batch) * 1_009 + rank


@dataclass(frozen=True)
class ImageAugment:
    """Random crop after zero padding, horizontal flip and cutout, drawn per image for a whole batch.

    `crop_padding` pixels of padding on each side then a crop back to the original size (a random
    translation of up to that many pixels); `flip` mirrors half of the images; `cutout` zeroes one
    square of that side per image (centre anywhere, clipped at the borders). `repeats` > 1 is batch
    augmentation (Hoffer et al. 2020): each image appears that many times in its batch, each copy
    augmented on its own. The draws come from a generator seeded by the caller, so a resumed run
    augments exactly as an uninterrupted one.
    """

    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0
    repeats: int = 1

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.cutout > 0 or self.repeats > 1

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented batch and its targets (repeated along with the images)."""
        if self.repeats > 1:
            images, targets = images.repeat(self.repeats, 1, 1, 1), targets.repeat(self.repeats)
        return self.transform(images, seed), targets

    def transform(self, images: torch.Tensor, seed: int) -> torch.Tensor:
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


def translate(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift images by (dy, dx) pixels, filling the uncovered border with zeros (as training crops do)."""
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return images
    height, width = images.shape[-2:]
    padded = F.pad(images, (pad, pad, pad, pad))
    return padded[..., pad - dy : pad - dy + height, pad - dx : pad - dx + width]


class ViewAveraged(nn.Module):
    """Test-time augmentation: the mean softmax of the model over several views of each image.

    The views: the image itself, its diagonal translations by +-`shift` pixels (when shift > 0),
    and the mirror image of each of those (when `flip`). Returns log-probabilities, so argmax
    accuracy and a cross-entropy loss both still apply.
    """

    def __init__(self, model: nn.Module, flip: bool = True, shift: int = 0) -> None:
        super().__init__()
        self.model = model
        self.offsets = [(0, 0)] + ([(shift, shift), (-shift, -shift)] if shift > 0 else [])
        self.flip = flip

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        shifted = [translate(images, dy, dx) for dy, dx in self.offsets]
        return shifted + ([v.flip(3) for v in shifted] if self.flip else [])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        views = self.views(images)
        log_probs = self.model(torch.cat(views)).float().log_softmax(dim=1).chunk(len(views))
        return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(views))  # log mean prob
