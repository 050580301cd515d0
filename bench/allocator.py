"""The training process's malloc thresholds: ResNet-20 samples/s, trainctl's vs glibc's defaults."""

from __future__ import annotations

import statistics
from functools import partial

from bench.common import alternating, data_root, pairs_line, run_trainctl
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

    def speed(env: dict[str, str] | None) -> float:
        return step_speed(run_trainctl(args, 2, env))

    with ForeignLoad() as load:  # alternating pairs: this box's speed drifts over minutes
        _, _, ratios = alternating(ROUNDS, partial(speed, None), partial(speed, {"TRAINCTL_MALLOC": "glibc"}))
    ratio = statistics.median(ratios)
    print(
        f"ResNet-20, conf=resnet_cifar, 2 threads, {STEPS} steps: samples/s with trainctl's malloc "
        f"thresholds / glibc's defaults (TRAINCTL_MALLOC=glibc) {ratio:.2f}x, "
        f"{pairs_line(ratios)}{load.verdict()}"
    )
    return {"tuned_over_glibc": ratio}


if __name__ == "__main__":
    main()
