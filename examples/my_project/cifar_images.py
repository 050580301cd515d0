"""Write CIFAR-10 as an image folder (JPEG files, one folder per class, train/ and test/).

Reads the official python batches in $TRAINCTL_DATA_DIR/cifar-10-batches-py (or --source), e.g.:

    python cifar_images.py images --train-per-class 100 --test-per-class 20
    trainctl --config-dir conf train conf=my_images data.path=$PWD/images
"""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def read_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, list(batch[b"labels"])


def write(
    images: np.ndarray, labels: list[int], names: list[str], folder: Path, per_class: int | None
) -> int:
    written = {name: 0 for name in names}
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        name = names[label]
        if per_class is not None and written[name] >= per_class:
            continue
        (folder / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / name / f"{i:05d}.jpg", quality=95)
        written[name] += 1
    return sum(written.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the image folder to write (train/ and test/ inside)")
    default = Path(os.environ.get("TRAINCTL_DATA_DIR", "~/.cache/trainctl/data")).expanduser()
    parser.add_argument("--source", type=Path, default=default / "cifar-10-batches-py")
    parser.add_argument("--train-per-class", type=int, default=None, help="at most this many (default: all)")
    parser.add_argument("--test-per-class", type=int, default=None, help="at most this many (default: all)")
    args = parser.parse_args()
    with open(args.source / "batches.meta", "rb") as f:
        names = [n.decode() for n in pickle.load(f, encoding="bytes")[b"label_names"]]
    batches = sorted(args.source.glob("data_batch_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    parts = [read_batch(p) for p in batches]
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = [label for p in parts for label in p[1]]
    test_images, test_labels = read_batch(args.source / "test_batch")
    n_train = write(train_images, train_labels, names, args.out / "train", args.train_per_class)
    n_test = write(test_images, test_labels, names, args.out / "test", args.test_per_class)
    print(f"{args.out}: {n_train} train and {n_test} test JPEGs in {len(names)} class folders")


if __name__ == "__main__":
    main()
