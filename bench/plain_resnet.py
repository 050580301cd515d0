"""A plain PyTorch loop: ResNet-20 on CIFAR-10 as conf=resnet_cifar trains it, printing epoch times."""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F


def main() -> None:
    from trainctl.config.compose import compose
    from trainctl.data import load_dataset
    from trainctl.models.resnet import ResNet

    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--ema", type=float, default=0.995)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # Same tensors and augmentation function as trainctl (loading is not timed); the loop is plain PyTorch.
    data = load_dataset(compose(["conf=resnet_cifar", f"data.root={args.data_root}"]).config.data)
    x, y = data.train.inputs, data.train.targets
    model = ResNet(3, 10, (16, 32, 64), (3, 3, 3), projection=False, channels_last=True)
    average = [p.detach().clone() for p in [*model.parameters(), *model.buffers()] if p.is_floating_point()]
    batch = 128
    steps = -(-len(y) // batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.2, total_steps=steps * args.epochs, pct_start=0.25
    )
    for epoch in range(args.epochs):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(y))
        for i in range(steps):
            index = order[i * batch : (i + 1) * batch]
            inputs, targets = data.augment(x[index], y[index], epoch * 100_003 + i)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(inputs).float(), targets, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                live = [p for p in [*model.parameters(), *model.buffers()] if p.is_floating_point()]
                torch._foreach_lerp_(average, live, 1 - args.ema)
            loss.item()  # the loop reads the loss each step, as any loop that logs it does
        seconds = time.perf_counter() - started
        print(json.dumps({"epoch": epoch, "seconds": seconds, "samples": len(y)}), flush=True)


if __name__ == "__main__":
    main()
