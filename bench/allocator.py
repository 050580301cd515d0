"""The training process's malloc thresholds: ResNet-20 samples/s, trainctl's vs glibc's defaults."""

from __future__ import annotations

import statistics

from bench.common import data_root, run_trainctl
from bench.data import NO_TEST_VIEWS, PRESET, step_speed
from bench.load import ForeignLoad

ROUNDS = 6
STEPS = 80


def main() -> dict[str, float]:
    args = [
        *PRESET,
        *NO_TEST_VIEWS,
        f"data.root={data_root()}",
        f"trainer.max_steps={STEPS}",
        "trainer.log_every=10",
    ]
    glibc = {"TRAINCTL_MALLOC": "glibc"}
    ratios = []
    with ForeignLoad() as load:
        for round_ in range(ROUNDS):  # alternating pairs: this box's speed drifts over minutes
            sides = ["tuned", "glibc"] if round_ % 2 == 0 else ["glibc", "tuned"]
            speed = {
                side: step_speed(run_trainctl(args, 2, glibc if side == "glibc" else None)) for side in sides
            }
            ratios.append(speed["tuned"] / speed["glibc"])
    ratio = statistics.median(ratios)
    print(
        f"ResNet-20, conf=resnet_cifar, 2 threads, {STEPS} steps: samples/s with trainctl's malloc "
        f"thresholds / glibc's defaults (TRAINCTL_MALLOC=glibc) {ratio:.2f}x, median of {ROUNDS} "
        f"alternating pairs (range {min(ratios):.2f} .. {max(ratios):.2f}){load.verdict()}"
    )
    return {"tuned_over_glibc": ratio}


if __name__ == "__main__":
    main()
