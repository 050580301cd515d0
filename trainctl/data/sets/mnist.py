"""MNIST from the four official gzipped IDX files under data.root/mnist/, downloaded when missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainctl.config.schema import FileDataConfig
from trainctl.data import DATASETS, DataInfo
from trainctl.data.download import ensure_files
from trainctl.data.idx import check_idx_length, read_idx
from trainctl.data.types import DataBundle, DataSpec, Normalisation, Split, Task
from trainctl.errors import TrainctlError

# file name -> md5 of the official release (as torchvision checks them)
FILES: dict[str, str | None] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MEAN, STD = 0.1307, 0.3081  # the customary MNIST normalisation
NORMALISATION = Normalisation(
    "uint8 pixels 0..255, shape (N, 1, 28, 28), white digit on black", 255.0, (MEAN,), (STD,)
)


@dataclass
class MNISTConfig(FileDataConfig):
    mirrors: list[str] = field(
        default_factory=lambda: [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ]
    )


def mnist_folder(root: Path) -> Path:
    """Where the files live: <root>/mnist/, or <root> itself when it already holds them."""
    if not (root / "mnist").is_dir() and all((root / name).is_file() for name in FILES):
        return root
    return root / "mnist"


def read_split(images_path: Path, labels_path: Path) -> Split:
    images = read_idx(images_path, 2051)
    labels = read_idx(labels_path, 2049)
    if len(images) != len(labels):
        raise TrainctlError(
            f"{len(images)} images but {len(labels)} labels",
            where=f"{images_path} / {labels_path}",
            fix="use files from the same release",
        )
    x = NORMALISATION.apply(torch.from_numpy(images.copy()).unsqueeze(1))
    return Split(x, torch.from_numpy(labels.astype("int64")))


SPEC = DataSpec(input_shape=(1, 28, 28), num_outputs=10, task=Task.classification)


def prepare_mnist(cfg: MNISTConfig, download: bool) -> DataInfo:
    """Download missing files (when allowed) and count the samples in the label files."""
    folder = mnist_folder(Path(cfg.root))
    if not download and not all((folder / name).is_file() for name in FILES):
        return DataInfo(SPEC, None, None)
    paths = ensure_files("MNIST", folder, FILES, cfg.mirrors, cfg.download)
    names = list(FILES)
    for images in (names[0], names[2]):  # found now, before a run folder exists, not by the workers
        check_idx_length(paths[images], 2051)
    return DataInfo(SPEC, len(read_idx(paths[names[1]], 2049)), len(read_idx(paths[names[3]], 2049)))


def mnist_files(cfg: MNISTConfig) -> list[Path]:
    return [mnist_folder(Path(cfg.root)) / name for name in FILES]


@DATASETS.register("mnist", MNISTConfig, prepare=prepare_mnist, files=mnist_files)
def load_mnist(cfg: MNISTConfig) -> DataBundle:
    folder = mnist_folder(Path(cfg.root))
    paths = ensure_files("MNIST", folder, FILES, cfg.mirrors, cfg.download)
    names = list(FILES)
    return DataBundle(
        train=read_split(paths[names[0]], paths[names[1]]),
        test=read_split(paths[names[2]], paths[names[3]]),
        spec=SPEC,
        class_names=[str(d) for d in range(10)],
        normalisation=NORMALISATION,
    )
