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
    parser.add_argument("overrides", nargs="*", help="config overrides applied on top of conf=resnet_cifar")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # The preset's numbers, tensors and augmentation function (built untimed); the loop is plain PyTorch.
    cfg = compose(["conf=resnet_cifar", f"data.root={args.data_root}", *args.overrides]).config
    data = load_dataset(cfg.data)
    x, y = data.train.inputs, data.train.targets
    t = cfg.trainer
    model = ResNet(3, 10, (16, 32, 64), (3, 3, 3), projection=False, channels_last=cfg.model.channels_last)
    average = [p.detach().clone() for p in [*model.parameters(), *model.buffers()] if p.is_floating_point()]
    batch = t.batch_size
    steps = -(-len(y) // batch)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.optim.lr, momentum=0.9, nesterov=True, weight_decay=cfg.optim.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.optim.lr, total_steps=steps * args.epochs, pct_start=t.pct_start
    )
    for epoch in range(args.epochs):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(y))
        for i in range(steps):
            index = order[i * batch : (i + 1) * batch]
            inputs, targets = data.augment(x[index], y[index], epoch * 100_003 + i)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(inputs).float(), targets, label_smoothing=t.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                live = [p for p in [*model.parameters(), *model.buffers()] if p.is_floating_point()]
                torch._foreach_lerp_(average, live, 1 - t.ema)
            loss.item()  # the loop reads the loss each step, as any loop that logs it does
        seconds = time.perf_counter() - started
        print(json.dumps({"epoch": epoch, "seconds": seconds, "samples": len(y)}), flush=True)


if __name__ == "__main__":
    main()
