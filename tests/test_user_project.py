"""A user's project with the installed wheel: their model, their config folder, CIFAR images as JPEG files,
trained on 2 DDP ranks with 2 data workers each, interrupted mid-epoch and resumed bit-equal; then
eval, predict on a photo, int8 compression and ONNX export of that run."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require_data
from tests.test_distributed import final_state, max_difference, wait_for_train_records
from tests.test_wheel import install_wheel, wheel_env

# the example's preset, made cheap: small images, a narrow model, 4 steps an epoch, a report every step
CHEAP = [
    "data.image_size=16",
    "model.width=8",
    "trainer.epochs=2",
    "trainer.batch_size=20",
    "trainer.threads=1",
    "trainer.log_every=1",
    "trainer.schedule=constant",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the project folder, the venv with the installed wheel)."""
    data = require_data("cifar-10-batches-py")
    root = tmp_path_factory.mktemp("user")
    _, venv = install_wheel(root)
    folder = root / "my_project"
    shutil.copytree(REPO / "examples" / "my_project", folder)
    subprocess.run(
        [venv / "bin" / "python", folder / "cifar_images.py", folder / "images"]
        + ["--source", data / "cifar-10-batches-py", "--train-per-class", "8", "--test-per-class", "3"],
        check=True,
        capture_output=True,
    )
    return folder, venv


def command(project: tuple[Path, Path], runs: Path, *args: str) -> list[str]:
    folder, venv = project
    head = [str(venv / "bin" / "trainctl"), "--config-dir", "conf", *args[:1]]
    if args[:1] == ("train",) and "--resume" not in args:
        head += ["conf=my_images", f"data.path={folder / 'images'}", *CHEAP]
    return head + list(args[1:])


def trainctl_in(project: tuple[Path, Path], runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command(project, runs, *args),
        cwd=project[0],
        env=wheel_env(runs),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_the_example_project_trains_resumes_bit_equal_and_serves(
    project: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, _ = project
    straight = tmp_path / "straight"
    trainctl_in(project, straight, "train")
    reference = (straight / "latest").resolve()

    runs = tmp_path / "interrupted"
    proc = subprocess.Popen(
        command(project, runs, "train"), cwd=folder, env=wheel_env(runs), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    run = wait_for_train_records(runs, 6)  # 4 steps an epoch: in the middle of the second
    proc.send_signal(signal.SIGINT)
    _, errors = proc.communicate(timeout=120)
    assert proc.returncode == 130, errors
    position = json.loads((run / "run.json").read_text())
    assert position["status"] == "interrupted"
    trainctl_in(project, runs, "train", "--resume", "latest")
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
