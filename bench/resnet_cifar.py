"""Long run: `trainctl train conf=resnet_cifar` (15 epochs) on the shared CIFAR-10 split (goal >= 80%)."""

from __future__ import annotations

from bench.common import data_root
from bench.long_runs import trainctl_accuracy


def main() -> dict[str, float]:
    result = trainctl_accuracy(["conf=resnet_cifar", f"data.root={data_root()}"])
    epochs = result["epoch_seconds"]
    print("conf=resnet_cifar (ResNet-20, 10,000 train / 5,000 test images, 15 epochs):")
    print(
        f"  test accuracy {result['accuracy']:.2%} (goal: at least 80%; plain reference loop: 76%); "
        f"wall {result['wall_seconds']:.0f} s; {sum(epochs) / len(epochs):.1f} s per training epoch"
    )
    return result


if __name__ == "__main__":
    main()
