"""Data from files: CIFAR as a JPEG folder vs the same images as tensors (speed, accuracy), trainctl's
image-folder path vs a plain DataLoader + PIL loop, and the whole job's peak memory on 10k vs 40k images.

BENCH_DATA_EPOCHS (default: the preset's 15) shortens the accuracy runs for a quick look.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.common import REPO, data_root, median_after_warmup, run_script, run_trainctl
from bench.load import ForeignLoad, descendants, parents

WORKERS = 2
SPEED_ROUNDS = 8  # pairs of one run each differ by up to +-0.15 on this box
CIFAR_MEAN = "[0.4914,0.4822,0.4465]"
CIFAR_STD = "[0.2470,0.2435,0.2616]"
PRESET = ["conf=resnet_cifar"]
# the tensor side without cifar10's test-time views (image_folder has none; switching to it drops them)
NO_TEST_VIEWS = ["data.test_flip=false", "data.test_shift=0"]
# the plain-loop comparison: what bench/plain_image_folder.py does (fp32, no EMA, no batch augmentation)
PLAIN_LIKE = [
    "data.repeats=1",
    "data.crop_padding=2",
    "trainer.ema=null",
    "trainer.precision=fp32",
    "trainer.label_smoothing=0",
    "trainer.schedule=constant",
]


def write_jpegs(folder: Path, copies: int = 1) -> int:
    """The shared CIFAR train and test images as JPEGs under `folder` (train/ `copies` times over)."""
    script = REPO / "examples" / "my_project" / "cifar_images.py"
    source = data_root() / "cifar-10-batches-py"
    subprocess.run([sys.executable, script, folder, "--source", source], check=True, capture_output=True)
    for copy in range(1, copies):  # more train images: hard links of the same files under new names
        for path in list((folder / "train").glob("*/[0-9]*.jpg")):
            os.link(path, path.with_name(f"c{copy}_{path.name}"))
    return sum(1 for _ in (folder / "train").glob("*/*.jpg"))


def image_folder(folder: Path) -> list[str]:
    return [
        "dataset=image_folder",
        f"data.path={folder}",
        f"data.workers={WORKERS}",
        f"data.mean={CIFAR_MEAN}",
        f"data.std={CIFAR_STD}",
        f"data.cache_dir={folder.parent / 'cache'}",
    ]


def epoch_seconds(records: list[dict]) -> float:
    return median_after_warmup([r["seconds"] for r in records if r["kind"] == "epoch"])


def accuracy(records: list[dict]) -> float:
    return [r for r in records if r["kind"] == "eval"][-1]["accuracy"]


def step_speed(records: list[dict]) -> float:
    """Median samples/s of a run's logged windows after the first."""
    speeds = [r["samples_per_s"] for r in records if r["kind"] == "train"]
    return statistics.median(speeds[1:] if len(speeds) > 1 else speeds)


def tensors_vs_jpegs(folder: Path, epochs: int, threads: int) -> None:
    """Speed from alternating pairs of short runs (this box's speed drifts by up to a fifth over minutes,
    so two long runs one after the other do not compare); accuracy from one full run of each."""
    tensors = [*PRESET, *NO_TEST_VIEWS, f"data.root={data_root()}"]
    jpegs = [*PRESET, *image_folder(folder)]
    short = ["trainer.max_steps=80", "trainer.log_every=10"]
    ratios = []
    with ForeignLoad() as load:
        for round_ in range(SPEED_ROUNDS):
            sides = [tensors, jpegs] if round_ % 2 == 0 else [jpegs, tensors]
            speed = {id(side): step_speed(run_trainctl([*side, *short], threads)) for side in sides}
            ratios.append(speed[id(jpegs)] / speed[id(tensors)])
    full = [f"trainer.epochs={epochs}", f"trainer.eval_every={epochs}"]
    tensor_run, jpeg_run = run_trainctl([*tensors, *full], threads), run_trainctl([*jpegs, *full], threads)
    gap = (accuracy(jpeg_run) - accuracy(tensor_run)) * 100
    print(f"ResNet-20, conf=resnet_cifar, {threads} thread(s), {WORKERS} workers:")
    print(
        f"  JPEG / tensor samples/s {statistics.median(ratios):.2f}x, median of {len(ratios)} alternating "
        f"pairs of 80-step runs (range {min(ratios):.2f} .. {max(ratios):.2f}; goal >= 0.9x){load.verdict()}"
    )
    print(
        f"  after {epochs} epoch(s): tensors accuracy {accuracy(tensor_run):.2%}, JPEG folder "
        f"{accuracy(jpeg_run):.2%}: {gap:+.2f} points (goal: within 1)"
    )


def trainctl_vs_plain(folder: Path, threads: int, epochs: int = 3) -> None:
    args = [
        *PRESET,
        *PLAIN_LIKE,
        *image_folder(folder),
        f"trainer.epochs={epochs}",
        f"trainer.eval_every={epochs}",
    ]
    script = ["--folder", str(folder), "--epochs", str(epochs), "--workers", str(WORKERS)]
    with ForeignLoad() as load:
        plain = median_after_warmup(
            [r["seconds"] for r in run_script(REPO / "bench" / "plain_image_folder.py", script, threads)]
        )
        ours = epoch_seconds(run_trainctl(args, threads))
    print(f"JPEG folder, ResNet-20, batch 64, {WORKERS} workers, {threads} thread(s), fp32:")
    print(f"  plain DataLoader + PIL  {plain:7.2f} s/epoch")
    print(f"  trainctl image_folder   {ours:7.2f} s/epoch")
    print(f"  trainctl / plain samples/s {plain / ours:.2f}x (goal >= 1.0x){load.verdict()}")


def job_rss(root: int) -> int:
    """Resident memory (bytes) of `root` and every process it started, at any depth."""
    total = 0
    for pid in descendants(root, parents()):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def peak_rss(args: list[str]) -> int:
    """The whole job's peak resident memory while `trainctl train ARGS` runs (sampled every 0.2 s)."""
    with tempfile.TemporaryDirectory() as runs:
        env = {**os.environ, "TRAINCTL_RUNS_DIR": runs}
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainctl", "train", *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        peak, done = 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.2):
                peak = max(peak, job_rss(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, errors = proc.communicate()
        done.set()
        sampler.join()
        if proc.returncode != 0:
            sys.exit(f"bench: trainctl failed:\n{errors.decode()[-3000:]}")
        return peak


def memory(small: Path, large: Path, small_n: int, large_n: int) -> None:
    ddp = ["launcher.nproc=2", "parallel=ddp", "trainer.threads=1", "trainer.max_steps=40", *PLAIN_LIKE]
    peaks = {
        n: peak_rss([*PRESET, *ddp, *image_folder(folder)])
        for n, folder in ((small_n, small), (large_n, large))
    }
    growth = peaks[large_n] / peaks[small_n] - 1
    print(
        f"peak RSS of the whole job (2 DDP ranks x {WORKERS} workers, 40 steps), summed over its processes:"
    )
    for n, peak in peaks.items():
        print(f"  {n:6,} train images  {peak / 2**20:8,.0f} MiB")
    print(f"  growth {growth:+.1%} for {large_n / small_n:.0f}x the images (goal: at most +10%)")


def main() -> None:
    threads = len(os.sched_getaffinity(0))
    epochs = int(os.environ.get("BENCH_DATA_EPOCHS", "15"))
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "small" / "images", Path(tmp) / "large" / "images"
        small_n, large_n = write_jpegs(small), write_jpegs(large, copies=4)
        tensors_vs_jpegs(small, epochs, threads)
        trainctl_vs_plain(small, threads)
        memory(small, large, small_n, large_n)


if __name__ == "__main__":
    main()
