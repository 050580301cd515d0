"""A plain PyTorch loop over a JPEG folder: DataLoader + PIL workers, ResNet-20, printing epoch times."""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)


class JpegFolder(Dataset):
    """What a PyTorch user writes: decode with PIL, random crop (padding 2) and flip, normalise."""

    def __init__(self, folder: Path) -> None:
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        self.items = [(f, c) for c, name in enumerate(classes) for f in sorted((folder / name).iterdir())]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        with Image.open(path) as image:
            pixels = torch.from_numpy(np.asarray(image.convert("RGB")).transpose(2, 0, 1).copy())
        x = (pixels.float() / 255 - MEAN) / STD
        x = F.pad(x, (2, 2, 2, 2))
        dy, dx = random.randint(0, 4), random.randint(0, 4)
        x = x[:, dy : dy + 32, dx : dx + 32]
        return (x.flip(2) if random.random() < 0.5 else x), label


def main() -> None:
    from trainctl.models.resnet import ResNet

    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loader = DataLoader(
        JpegFolder(Path(args.folder) / "train"),
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        multiprocessing_context="forkserver" if args.workers > 0 else None,
    )
    model = ResNet(3, 10, (16, 32, 64), (3, 3, 3), projection=False, channels_last=True)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    for epoch in range(args.epochs):
        started = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        print(json.dumps({"epoch": epoch, "seconds": time.perf_counter() - started}), flush=True)


if __name__ == "__main__":
    main()
