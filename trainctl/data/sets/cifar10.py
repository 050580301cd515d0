"""CIFAR-10 from the official python batches (a cifar-10-batches-py/ folder or the .tar.gz), downloaded
when missing."""

from __future__ import annotations

import functools
import io
import pickle
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainctl.config.ranges import ranged
from trainctl.config.schema import FileDataConfig
from trainctl.data import DATASETS
from trainctl.data.augment import ImageAugment, ViewAveraged
from trainctl.data.download import ensure_files
from trainctl.data.types import DataBundle, DataSpec, Normalisation, Split, Task
from trainctl.errors import TrainctlError

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # the official release (as torchvision checks it)
PIXELS = 3 * 32 * 32


@dataclass
class CIFAR10Config(FileDataConfig):
    mirrors: list[str] = field(default_factory=lambda: ["https://www.cs.toronto.edu/~kriz/"])
    # train augmentation: random translation by up to this many pixels; 0: off
    crop_padding: int = ranged(4, "[0, inf)")
    flip: bool = True  # train augmentation: mirror half of the images
    cutout: int = ranged(0, "[0, inf)")  # train augmentation: side of a zeroed square per image; 0: off
    # batch augmentation: each image this many times per batch, each copy augmented
    repeats: int = ranged(1, "[1, inf)")
    test_flip: bool = False  # evaluate the mean prediction over each test image and its mirror image
    # ... and over its diagonal translations by +-this many pixels (and their mirrors)
    test_shift: int = ranged(0, "[0, inf)")


class BatchUnpickler(pickle.Unpickler):
    """Unpickles the plain data of a CIFAR batch (dicts, lists, bytes, numpy arrays) and nothing else."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def unpickle(raw: bytes, where: str) -> dict[bytes, Any]:
    try:
        batch = BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # a truncated or foreign file raises many kinds of errors
        raise TrainctlError(
            f"not a CIFAR python batch: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            where=where,
            fix="use the files of the official cifar-10-python.tar.gz",
        ) from None
    if not isinstance(batch, dict):
        raise TrainctlError("not a CIFAR python batch (expected a dict)", where=where)
    return {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}


def read_batch(raw: bytes, where: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The images (N, 3, 32, 32) uint8 and labels (N,) of one batch file; any N."""
    batch = unpickle(raw, where)
    for key in (b"data", b"labels"):
        if key not in batch:
            raise TrainctlError(f"the batch has no '{key.decode()}' entry", where=where)
    data = np.asarray(batch[b"data"])
    if data.ndim != 2 or data.shape[1] != PIXELS or data.dtype != np.uint8:
        raise TrainctlError(
            f"image batch of the wrong shape: 'data' is {data.dtype} {data.shape}, "
            f"expected uint8 (N, {PIXELS}) (N images of 3x32x32, R, G and B planes)",
            where=f"{where}, key 'data'",
            fix="use the files of the official cifar-10-python.tar.gz",
        )
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if labels.shape != (len(data),):
        raise TrainctlError(f"{len(data)} images but {labels.size} labels", where=f"{where}, key 'labels'")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise TrainctlError(
            f"label {labels[bad[0]]} at position {bad[0]} is outside 0..{num_classes - 1}",
            where=f"{where}, key 'labels'",
        )
    return data.reshape(-1, 3, 32, 32), labels


def train_batch_names(names: list[str]) -> list[str]:
    """data_batch_1 .. data_batch_N in numeric order."""
    found = [n for n in names if re.fullmatch(r"data_batch_\d+", n)]
    return sorted(found, key=lambda n: int(n.rsplit("_", 1)[1]))


class BatchSource:
    """The batch files of a cifar-10-batches-py/ folder, or of the members of the official archive."""

    def __init__(self, folder: Path | None, archive: Path | None) -> None:
        self.folder, self.archive = folder, archive
        self.members: dict[str, bytes] = {}
        if archive is not None:
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    for member in tar.getmembers():
                        if member.isfile() and member.name.startswith(f"{FOLDER}/"):
                            self.members[member.name.split("/", 1)[1]] = tar.extractfile(member).read()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise TrainctlError(f"cannot read the archive: {exc}", where=str(archive)) from None

    def names(self) -> list[str]:
        if self.folder is not None:
            return sorted(p.name for p in self.folder.iterdir() if p.is_file())
        return sorted(self.members)

    def where(self, name: str) -> str:
        return str(self.folder / name) if self.folder is not None else f"{self.archive}:{FOLDER}/{name}"

    def read(self, name: str) -> bytes:
        if self.folder is not None:
            return (self.folder / name).read_bytes()
        return self.members[name]


def extracted_folder(root: Path) -> Path | None:
    """The folder of extracted batches under data.root (or data.root itself), if there is one."""
    for folder in (root / FOLDER, root):
        if (folder / "test_batch").is_file() and train_batch_names([p.name for p in folder.iterdir()]):
            return folder
    return None


def locate(cfg: CIFAR10Config) -> BatchSource:
    """The batches under data.root: the extracted folder if present, else the archive (downloaded)."""
    folder = extracted_folder(Path(cfg.root))
    if folder is not None:
        return BatchSource(folder, None)
    paths = ensure_files("CIFAR-10", Path(cfg.root), {ARCHIVE: ARCHIVE_MD5}, cfg.mirrors, cfg.download)
    return BatchSource(None, paths[ARCHIVE])


def cifar10_files(cfg: CIFAR10Config) -> list[Path]:
    return [extracted_folder(Path(cfg.root)) or Path(cfg.root) / ARCHIVE]


def class_names(source: BatchSource) -> list[str]:
    if "batches.meta" not in source.names():
        raise TrainctlError("batches.meta is missing", where=source.where("batches.meta"))
    meta = unpickle(source.read("batches.meta"), source.where("batches.meta"))
    names = meta.get(b"label_names")
    if not isinstance(names, list) or not names:
        raise TrainctlError("batches.meta has no 'label_names' list", where=source.where("batches.meta"))
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read_split(source: BatchSource, names: list[str], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [read_batch(source.read(n), source.where(n), num_classes) for n in names]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return images, labels


@DATASETS.register("cifar10", CIFAR10Config, files=cifar10_files)
def load_cifar10(cfg: CIFAR10Config) -> DataBundle:
    source = locate(cfg)
    names = class_names(source)
    train_names = train_batch_names(source.names())
    if "test_batch" not in source.names() or not train_names:
        raise TrainctlError(
            "the CIFAR-10 batches are incomplete (need data_batch_1.. and test_batch)",
            where=source.where(""),
            fix="use the files of the official cifar-10-python.tar.gz",
        )
    train_images, train_labels = read_split(source, train_names, len(names))
    test_images, test_labels = read_split(source, ["test_batch"], len(names))
    # Per-channel normalisation with the train split's statistics.
    train_x = train_images.float().div_(255.0)
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True)
    train_x = train_x.sub_(mean).div_(std)
    test_x = test_images.float().div_(255.0).sub_(mean).div_(std)
    augment = ImageAugment(cfg.crop_padding, cfg.flip, cfg.cutout, cfg.repeats)
    return DataBundle(
        train=Split(train_x, train_labels),
        test=Split(test_x, test_labels),
        spec=DataSpec(input_shape=(3, 32, 32), num_outputs=len(names), task=Task.classification),
        class_names=names,
        augment=augment if augment.active else None,
        test_time=(
            functools.partial(ViewAveraged, flip=cfg.test_flip, shift=cfg.test_shift)
            if cfg.test_flip or cfg.test_shift > 0
            else None
        ),
        normalisation=Normalisation(
            "uint8 pixels 0..255, shape (N, 3, 32, 32), R, G, B planes",
            255.0,
            tuple(mean.flatten().tolist()),
            tuple(std.flatten().tolist()),
        ),
    )
