"""`make bench`: run every benchmark (or the ones named) and print their side-by-side figures."""

from __future__ import annotations

import importlib
import inspect
import sys

BENCHES = [
    "help",
    "record",
    "overhead",
    "step_cost",
    "ddp",
    "threads",
    "wait_policy",
    "allocator",
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
    """`python -m bench [NAME ...]`; options after one NAME go to that benchmark (`topn --data PATH`)."""
    from bench.load import load_line

    args = sys.argv[1:]
    first_option = next((i for i, arg in enumerate(args) if arg.startswith("-")), len(args))
    chosen, options = args[:first_option] or BENCHES, args[first_option:]
    if options and len(chosen) != 1:
        given = " ".join(options)
        sys.exit(f"options ({given}) go to one benchmark: python -m bench NAME {given}")
    print(load_line())
    for name in chosen:
        if name not in BENCHES:
            sys.exit(f"unknown benchmark '{name}'; choose from: {', '.join(BENCHES)}")
        print(f"== {name}")
        run = importlib.import_module(f"bench.{name}").main
        if not options:
            run()
        elif inspect.signature(run).parameters:
            run(options)
        else:
            sys.exit(f"benchmark '{name}' takes no options")


if __name__ == "__main__":
    main()
