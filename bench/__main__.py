"""`make bench`: run every benchmark (or the ones named) and print their side-by-side figures."""

from __future__ import annotations

import importlib
import sys

BENCHES = [
    "help",
    "record",
    "overhead",
    "step_cost",
    "ddp",
    "threads",
    "wait_policy",
    "throughput",
    "recommend",
    "topn",
    "recommend_scale",
    "compress",
    "quantize",
    "resnet_cifar",
    "bert_sst2",
    "estimate",
    "data",
]


def main() -> None:
    from bench.load import load_line

    chosen = sys.argv[1:] or BENCHES
    print(load_line())
    for name in chosen:
        if name not in BENCHES:
            sys.exit(f"unknown benchmark '{name}'; choose from: {', '.join(BENCHES)}")
        print(f"== {name}")
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
