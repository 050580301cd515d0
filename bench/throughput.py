"""Training throughput of ResNet-20 and MiniLM: trainctl's presets against the same models in plain loops."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.common import data_root, paired_epochs, print_paired
from bench.load import ForeignLoad

ROUNDS = 2
SST2_SUBSET = 3_200  # phrases of the SST-2 train file: 100 steps of 32 per epoch


def sst2_subset(root: Path, dest: Path) -> Path:
    """A data root whose sst2/ holds the first SST2_SUBSET train phrases and the full dev set."""
    folder = dest / "sst2"
    folder.mkdir(parents=True)
    lines = (root / "sst2" / "train.tsv").read_text().splitlines(keepends=True)
    (folder / "train.tsv").write_text("".join(lines[: SST2_SUBSET + 1]))
    (folder / "dev.tsv").write_text((root / "sst2" / "dev.tsv").read_text())
    return dest


def paired(
    name: str, preset: str, extra: list[str], script: str, root: Path, epochs: int, samples: int
) -> float:
    """Alternating paired runs; prints samples/s of both sides and returns trainctl's overhead."""
    threads = os.cpu_count() or 1
    with ForeignLoad() as load:
        plain, ours, _ = paired_epochs(
            script,
            ["--data-root", str(root), "--epochs", str(epochs), *extra],
            [f"conf={preset}", *extra, f"data.root={root}", f"trainer.epochs={epochs}"],
            ROUNDS,
            threads,
        )
    print(f"{name}: {threads} threads, {ROUNDS} paired runs of {epochs} epochs (first epoch is warm-up)")
    overhead = print_paired(plain, ours, samples, load)
    return overhead


def main() -> dict[str, float]:
    root = data_root()
    resnet = paired(
        "ResNet-20, conf=resnet_cifar data.repeats=1 (bf16, channels_last, EMA, crop+flip)",
        "resnet_cifar",
        ["data.repeats=1"],
        "plain_resnet.py",
        root,
        3,
        10_000,
    )
    with tempfile.TemporaryDirectory() as tmp:
        subset = sst2_subset(root, Path(tmp))
        minilm = paired(
            f"MiniLM-L6, conf=bert_sst2 (bf16, length-grouped) on {SST2_SUBSET:,} SST-2 phrases",
            "bert_sst2",
            [],
            "plain_minilm.py",
            subset,
            2,
            SST2_SUBSET,
        )
    return {"resnet20_overhead": resnet, "minilm_overhead": minilm}


if __name__ == "__main__":
    main()
