"""A plain PyTorch loop: the MNIST MLP of conf=mlp_mnist, hand-written, printing each epoch's time."""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn


def plain_epochs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch: int, epochs: int, lr: float = 3e-3
) -> list[float]:
    """Train with AdamW and a one-cycle schedule by index slicing; seconds of each epoch."""
    steps = -(-len(y) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps * epochs, pct_start=0.25
    )
    seconds = []
    for _ in range(epochs):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(y))
        for i in range(steps):
            index = order[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        seconds.append(time.perf_counter() - started)
    return seconds


def mnist_mlp() -> nn.Module:
    """The MLP of conf=mlp_mnist: 784-512-256-10, ReLU, dropout 0.2."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 512),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(256, 10),
    )


def mnist_train_tensors(data_root: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The same train tensors as trainctl reads (loading is not timed; the loops are plain PyTorch)."""
    from trainctl.config.compose import compose
    from trainctl.data import load_dataset

    data = load_dataset(compose(["conf=mlp_mnist", f"data.root={data_root}"]).config.data)
    return data.train.inputs, data.train.targets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = mnist_train_tensors(args.data_root)
    for epoch, seconds in enumerate(plain_epochs(mnist_mlp(), x, y, batch=64, epochs=args.epochs)):
        print(json.dumps({"epoch": epoch, "seconds": seconds, "samples": len(y)}), flush=True)


if __name__ == "__main__":
    main()
