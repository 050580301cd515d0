"""Long run: `trainctl train conf=bert_sst2` for one epoch against a plain transformers loop (goal >= 90%)."""

from __future__ import annotations

import os

from bench.common import REPO, data_root, run_script
from bench.long_runs import trainctl_accuracy


def main() -> dict[str, float]:
    root = data_root()
    ours = trainctl_accuracy(["conf=bert_sst2", f"data.root={root}"])
    print("conf=bert_sst2 (all-MiniLM-L6-v2, 62,349 SST-2 phrases, one epoch; dev: 872 sentences):")
    print(
        f"  trainctl train       dev accuracy {ours['accuracy']:.2%}, "
        f"epoch {ours['epoch_seconds'][0]:.0f} s, wall {ours['wall_seconds']:.0f} s"
    )
    limit = os.environ.get("BENCH_PLAIN_MAX_STEPS", "0")  # >0: time only that many steps, extrapolate
    (plain,) = run_script(
        REPO / "bench" / "plain_transformers.py",
        ["--data-root", str(root), "--max-steps", limit],
        os.cpu_count() or 1,
    )
    partial = plain["steps"] < plain["of_steps"]
    print(
        f"  plain transformers   dev accuracy {plain['accuracy']:.2%}"
        + (" (after a partial epoch)" if partial else "")
        + f", epoch {plain['epoch_seconds']:.0f} s"
        + (f" (extrapolated from {plain['steps']} of {plain['of_steps']} steps)" if partial else "")
    )
    print(f"  epoch time ratio     {ours['epoch_seconds'][0] / plain['epoch_seconds']:.2f} (goal: below 1)")
    return {"trainctl": ours["accuracy"], "plain": plain["accuracy"]}


if __name__ == "__main__":
    main()
