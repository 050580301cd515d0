"""A plain PyTorch loop: MiniLM on SST-2 as conf=bert_sst2 trains it, hand-written, printing epoch times."""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F


def main() -> None:
    from trainctl.config.compose import compose
    from trainctl.data import load_dataset
    from trainctl.data.samplers import LengthGroupedOrder
    from trainctl.models import build_model
    from trainctl.optim.param_groups import param_groups

    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("overrides", nargs="*", help="config overrides applied on top of conf=bert_sst2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # Same token tensors, model, parameter groups and batch order as trainctl (built untimed); plain loop.
    cfg = compose(["conf=bert_sst2", f"data.root={args.data_root}", *args.overrides]).config
    data = load_dataset(cfg.data)
    model = build_model(cfg.model, data.spec)
    batch = cfg.trainer.batch_size
    steps = -(-len(data.train) // batch)
    total = steps * args.epochs
    warmup = round(cfg.trainer.warmup_ratio * total)
    # the preset's parameter groups (layer-wise rates, no decay on biases and norms): the same optimizer work
    optimizer = torch.optim.AdamW(param_groups(cfg.optim, model), lr=cfg.optim.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, 1 - (s - warmup) / (total - warmup))
    )
    grouped = LengthGroupedOrder(data.train.lengths, batch)
    for epoch in range(args.epochs):
        model.train()
        started = time.perf_counter()
        order = grouped(len(data.train), torch.Generator().manual_seed(epoch))
        for i in range(steps):
            inputs, targets = data.train.batch(order[i * batch : (i + 1) * batch])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(inputs).float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.grad_clip)
            optimizer.step()
            scheduler.step()
            loss.item()
        seconds = time.perf_counter() - started
        print(json.dumps({"epoch": epoch, "seconds": seconds, "samples": len(data.train)}), flush=True)


if __name__ == "__main__":
    main()
