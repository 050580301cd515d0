"""A user's project with the installed wheel: their model, their config folder, CIFAR images as JPEG files,
trained on 2 DDP ranks with 2 data workers each, its launcher SIGKILLed mid-epoch and resumed bit-equal;
then eval, predict on a photo, int8 compression and ONNX export of that run."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require_data
from tests.test_distributed import final_state, max_difference
from tests.test_job_processes import wait_for
from tests.test_wheel import wheel_env
from trainctl.runs.lock import job_processes
from trainctl.training.checkpoint import load_checkpoint

# the example's preset, made cheap: small images, a narrow model, one epoch of 10 steps, a report each
CHEAP = [
    "data.image_size=16",
    "model.width=8",
    "trainer.epochs=1",
    "trainer.batch_size=8",
    "trainer.threads=1",
    "trainer.log_every=1",
    "trainer.schedule=constant",
]
STEPS = 10  # 80 train images / 8


@pytest.fixture(scope="module")
def project(
    installed_wheel: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """(the project folder, the venv with the installed wheel)."""
    data = require_data("cifar-10-batches-py")
    _, venv = installed_wheel
    folder = tmp_path_factory.mktemp("user") / "my_project"
    shutil.copytree(REPO / "examples" / "my_project", folder)
    subprocess.run(
        [venv / "bin" / "python", folder / "cifar_images.py", folder / "images"]
        + ["--source", data / "cifar-10-batches-py", "--train-per-class", "8", "--test-per-class", "3"],
        check=True,
        capture_output=True,
    )
    return folder, venv


def command(project: tuple[Path, Path], *args: str) -> list[str]:
    folder, venv = project
    head = [str(venv / "bin" / "trainctl"), "--config-dir", "conf", *args[:1]]
    if args[:1] == ("train",) and "--resume" not in args:
        head += ["conf=my_images", f"data.path={folder / 'images'}", *CHEAP]
    return head + list(args[1:])


def trainctl_in(project: tuple[Path, Path], runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command(project, *args),
        cwd=project[0],
        env=wheel_env(runs),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_the_example_project_trains_resumes_bit_equal_after_a_kill_and_serves(
    project: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, _ = project
    straight = tmp_path / "straight"
    trainctl_in(project, straight, "train")
    reference = (straight / "latest").resolve()

    runs = tmp_path / "killed"
    proc = subprocess.Popen(
        command(project, "train", "trainer.checkpoint_every=2"), cwd=folder, env=wheel_env(runs),
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_for(lambda: list(runs.glob("*/*/checkpoints/last.pt")), 120, "no checkpoint was written")
    proc.send_signal(signal.SIGKILL)  # the launcher, at its first checkpoint (step 2 of 10)
    proc.communicate(timeout=60)
    wait_for(lambda: not job_processes(proc.pid), 30, "processes of the killed job live on")
    (run,) = [p.parents[1] for p in runs.glob("*/*/checkpoints/last.pt")]
    position = load_checkpoint(run / "checkpoints" / "last.pt")["position"]
    assert position["epoch"] == 0 and 0 < position["batch"] < STEPS, position  # inside the epoch
    assert "end:" not in (run / "train.log").read_text()
    resumed = trainctl_in(project, runs, "train", "--resume", "latest")
    assert "took over the lock" in resumed.stdout + resumed.stderr
    assert max_difference(final_state(reference), final_state(run)) == 0.0

    evaluated = json.loads(trainctl_in(project, runs, "eval", str(run), "--json").stdout)
    assert evaluated["samples"] == 30 and 0 <= evaluated["accuracy"] <= 1
    photo = next((folder / "images" / "test" / "cat").glob("*.jpg"))
    label, probability = trainctl_in(project, runs, "predict", str(run), "--file", str(photo)).stdout.split()[
        :2
    ]
    assert label in {p.name for p in (folder / "images" / "train").iterdir()} and 0 < float(probability) <= 1
    compressed = trainctl_in(project, runs, "compress", str(run), "--quantize", "int8")
    assert "compressed run:" in compressed.stdout
    exported = trainctl_in(project, runs, "export", str(run), "--format", "onnx")
    assert "checked against the run's model" in exported.stdout
