"""A plain torchrun DDP script: the MNIST MLP of conf=mlp_mnist on gloo, each rank its contiguous share
of every global batch, printing each epoch's time on rank 0.
Run from the repository root: torchrun --nproc-per-node N -m bench.plain_ddp --data-root ... --threads T"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from bench.plain_mlp import mnist_mlp, mnist_train_tensors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    x, y = mnist_train_tensors(args.data_root)
    model = DistributedDataParallel(mnist_mlp())
    steps = -(-len(y) // args.batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=3e-3, total_steps=steps * args.epochs, pct_start=0.25
    )
    for epoch in range(args.epochs):
        model.train()
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(y), generator=generator)
        for i in range(steps):
            index = order[i * args.batch : (i + 1) * args.batch].tensor_split(world)[rank]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        if rank == 0:
            seconds = time.perf_counter() - started
            print(json.dumps({"epoch": epoch, "seconds": seconds, "samples": len(y)}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
