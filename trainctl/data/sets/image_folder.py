"""Image classification from a folder of class folders (train/ and test/, or one folder split by
data.test_fraction), decoded in DataLoader workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from trainctl.config.ranges import ranged
from trainctl.config.schema import DataConfig
from trainctl.data import DATASETS, DataInfo
from trainctl.data.augment import ImageAugment
from trainctl.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Decoded,
    bad_images,
    decode,
    is_image,
    normalisation,
    read_images,
)
from trainctl.data.streamed import DatasetSplit
from trainctl.data.types import DataBundle, DataSpec, Split, Task
from trainctl.errors import TrainctlError


@dataclass
class ImageFolderConfig(DataConfig):
    root: str = "${oc.env:TRAINCTL_DATA_DIR,'~/.cache/trainctl/data'}"
    path: str = ""  # the image folder: absolute, or relative to root
    image_size: int = ranged(32, "[1, inf)")  # images are scaled (shorter side) and centre-cropped to this
    # without train/ and test/ sub-folders: this share of each class is the test split (seeded by split_seed)
    test_fraction: float = ranged(0.2, "(0, 1)")
    split_seed: int = 0
    workers: int | None = ranged(None, "[0, inf)")  # decoding processes per rank; null: its thread budget
    skip_bad: bool = False  # leave out images that do not decode (with a count) instead of stopping
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))  # per-channel, of pixels / 255
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    crop_padding: int = ranged(4, "[0, inf)")  # train augmentation on the decoded batch, as cifar10's
    flip: bool = True
    cutout: int = ranged(0, "[0, inf)")
    repeats: int = ranged(1, "[1, inf)")
    cache_dir: str = "${oc.env:TRAINCTL_CACHE_DIR,'~/.cache/trainctl/cache'}"  # which images decode


class ImageFiles(Dataset):
    """(uint8 image (3, size, size), class index) per file; holds only the file names and labels."""

    def __init__(self, folder: Path, names: list[str], labels: list[int], size: int) -> None:
        self.folder = folder
        self.names = names
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.size = size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[object, int]:
        path = self.folder / self.names[index]
        try:
            return decode(path, self.size), int(self.labels[index])
        except Exception as exc:  # damaged since it was checked
            raise TrainctlError(f"cannot read the image: {exc}", where=str(path)) from None


def image_folder(cfg: ImageFolderConfig) -> Path:
    if not cfg.path:
        raise TrainctlError(
            "dataset=image_folder needs data.path",
            where="data.path",
            fix="data.path=DIR: a folder of class folders (or train/ and test/ holding them)",
        )
    folder = Path(cfg.path).expanduser()
    folder = folder if folder.is_absolute() else Path(cfg.root).expanduser() / folder
    if not folder.is_dir():
        raise TrainctlError(
            f"no such folder: {folder}", where=f"data.path={cfg.path}", fix="give an image folder"
        )
    return folder


def class_files(folder: Path) -> dict[str, list[Path]]:
    """{class name: its image files, sorted} for each sub-folder of `folder` that holds images."""
    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in sub.rglob("*") if p.is_file() and is_image(p))
        if files:
            found[sub.name] = files
    return found


def require_classes(found: dict[str, list[Path]], folder: Path) -> None:
    if len(found) < 2:
        what = "no class folders with images" if not found else f"only one class ({next(iter(found))})"
        raise TrainctlError(
            f"the image folder has {what}",
            where=str(folder),
            fix="put each class's images (JPEG, PNG, WebP) in a folder named after it: DIR/cat/1.jpg, "
            "DIR/dog/2.jpg (or DIR/train/cat/..., DIR/test/cat/...), at least two classes",
        )


@dataclass(frozen=True)
class Listing:
    """Every usable file of each split with its class, the class names, and the files left out."""

    classes: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    skipped: dict[str, str]


def list_images(cfg: ImageFolderConfig) -> Listing:
    folder = image_folder(cfg)
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        train_found, test_found = class_files(folder / "train"), class_files(folder / "test")
        require_classes(train_found, folder / "train")
        classes = sorted(train_found)
        unknown = sorted(set(test_found) - set(classes))
        if unknown:
            raise TrainctlError(
                f"test classes without train images: {', '.join(unknown)}",
                where=str(folder / "test"),
                fix="give every test class train images too (folder names must match)",
            )
        train = [(p, classes.index(c)) for c in classes for p in train_found[c]]
        test = [(p, classes.index(c)) for c in sorted(test_found) for p in test_found[c]]
    else:
        found = class_files(folder)
        require_classes(found, folder)
        classes = sorted(found)
        train, test = [], []
        generator = torch.Generator().manual_seed(cfg.split_seed)
        for label, name in enumerate(classes):  # the same share of every class goes to test
            files = found[name]
            order = torch.randperm(len(files), generator=generator).tolist()
            cut = max(1, round(len(files) * cfg.test_fraction)) if len(files) > 1 else 0
            test += [(files[i], label) for i in sorted(order[:cut])]
            train += [(files[i], label) for i in sorted(order[cut:])]
    files = [p for p, _ in train + test]
    bad = bad_images(files, cfg.image_size, Path(cfg.cache_dir).expanduser())
    if bad and not cfg.skip_bad:
        first = next(iter(bad))
        raise TrainctlError(
            f"cannot read the image: {bad[first]}"
            + (f" ({len(bad) - 1} more unreadable image(s))" if len(bad) > 1 else ""),
            where=first,
            fix="replace or remove the file, or leave out unreadable images with data.skip_bad=true",
        )
    keep = [(p, c) for p, c in train if str(p) not in bad], [(p, c) for p, c in test if str(p) not in bad]
    return Listing(classes, keep[0], keep[1], bad)


def files_split(folder: Path, pairs: list[tuple[Path, int]], cfg: ImageFolderConfig, *, train: bool) -> Split:
    dataset = ImageFiles(
        folder, [str(p.relative_to(folder)) for p, _ in pairs], [c for _, c in pairs], cfg.image_size
    )
    norm = normalisation(tuple(cfg.mean), tuple(cfg.std), cfg.image_size)
    return DatasetSplit(
        dataset, labels=lambda: dataset.labels, collate=Decoded(norm), workers=cfg.workers, persistent=train
    )


def spec(cfg: ImageFolderConfig, classes: list[str]) -> DataSpec:
    return DataSpec(
        input_shape=(3, cfg.image_size, cfg.image_size), num_outputs=len(classes), task=Task.classification
    )


def check_channels(cfg: ImageFolderConfig) -> None:
    if len(cfg.mean) != 3 or len(cfg.std) != 3 or min(cfg.std) <= 0:
        raise TrainctlError(
            "data.mean and data.std take three values (R, G, B); std above 0",
            where=f"data.mean={cfg.mean} data.std={cfg.std}",
        )


def prepare(cfg: ImageFolderConfig, download: bool) -> DataInfo:
    check_channels(cfg)
    listing = list_images(cfg)
    skipped = f"data.skip_bad: {len(listing.skipped)} unreadable image(s) left out" if listing.skipped else ""
    return DataInfo(
        spec(cfg, listing.classes), len(listing.train), len(listing.test), (skipped,) if skipped else ()
    )


@DATASETS.register("image_folder", ImageFolderConfig, prepare=prepare)
def load_image_folder(cfg: ImageFolderConfig) -> DataBundle:
    check_channels(cfg)
    listing = list_images(cfg)
    folder = image_folder(cfg)
    norm = normalisation(tuple(cfg.mean), tuple(cfg.std), cfg.image_size)
    augment = ImageAugment(cfg.crop_padding, cfg.flip, cfg.cutout, cfg.repeats)
    return DataBundle(
        train=files_split(folder, listing.train, cfg, train=True),
        test=files_split(folder, listing.test, cfg, train=False),
        spec=spec(cfg, listing.classes),
        class_names=listing.classes,
        augment=augment if augment.active else None,
        normalisation=norm,
        read_files=lambda paths: read_images(paths, cfg.image_size, norm),
    )
