"""Image files as model inputs: any JPEG/PNG/WebP (any mode, EXIF rotation) to a square RGB uint8 array."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainctl.data.types import Normalisation
from trainctl.errors import TrainctlError

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# ImageNet's per-channel statistics, the common default for photos (data.mean / data.std change them)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def decode(path: Path | str, size: int) -> np.ndarray:
    """The image at `path` as (3, size, size) uint8: EXIF orientation applied, converted to RGB (grey,
    palette, RGBA, CMYK alike), scaled so its shorter side is `size` and centre-cropped to a square."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at the smallest scale still >= size (fast)
        image = ImageOps.exif_transpose(image)
        image = image.convert("RGB")
        if image.size != (size, size):
            image = ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)
        return np.asarray(image).transpose(2, 0, 1).copy()


def decode_error(path: Path | str, size: int) -> str | None:
    """Why `path` cannot be read as an image (truncated, not an image, unreadable); None if it can."""
    try:
        decode(path, size)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for damaged files
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def normalisation(mean: tuple[float, ...], std: tuple[float, ...], size: int) -> Normalisation:
    return Normalisation(
        f"uint8 pixels 0..255, shape (N, 3, {size}, {size}), R, G, B planes", 255.0, mean, std
    )


@dataclass(frozen=True)
class Decoded:
    """Collate for image samples, run in the DataLoader worker: stack the uint8 images, normalise."""

    norm: Normalisation

    def __call__(self, samples: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(np.stack([s[0] for s in samples]))
        labels = torch.tensor([s[1] for s in samples], dtype=torch.int64)
        return self.norm.apply(images), labels


def read_images(paths: list[Path], size: int, norm: Normalisation) -> torch.Tensor:
    """Model inputs of image files given by a user (predict): exit 2 naming the first one that fails."""
    images = []
    for path in paths:
        if not path.is_file():
            raise TrainctlError(f"file not found: {path}", fix="give image files (JPEG, PNG, WebP)")
        why = decode_error(path, size)
        if why is not None:
            raise TrainctlError(
                f"cannot read the image: {why}", where=str(path), fix="give a JPEG, PNG or WebP file"
            )
        images.append(decode(path, size))
    return norm.apply(torch.from_numpy(np.stack(images)))


def listing_key(files: list[Path], size: int) -> str:
    """A digest of the files' names, sizes and modification times (what a check result depends on)."""
    digest = hashlib.sha256(str(size).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def bad_images(files: list[Path], size: int, cache_dir: Path) -> dict[str, str]:
    """{file: why} for every file that does not decode; decoded once per listing (kept in `cache_dir`)."""
    from trainctl.observe.ticker import Ticker

    cache = cache_dir / "image_checks" / f"{listing_key(files, size)}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    bad: dict[str, str] = {}
    with Ticker(f"checking {len(files):,} images (once per folder state)", total=len(files)) as ticker:
        for i, path in enumerate(files):
            why = decode_error(path, size)
            if why is not None:
                bad[str(path)] = why
            ticker.update(i + 1)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(bad))
    except OSError:  # a read-only cache folder costs time, not correctness
        pass
    return bad
