"""Data read from files in DataLoader workers: image folders, tables, their bad inputs, the loader's order."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import trainctl
from trainctl.config.compose import compose
from trainctl.data import load_dataset, prepare_dataset
from trainctl.data.images import decode
from trainctl.data.loader import BatchLoader
from trainctl.errors import TrainctlError

ONE_PROCESS = ["launcher.nproc=1", "parallel=none", "trainer.threads=1"]


def write_image_folder(root: Path, per_class: int = 6, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    """train/ and test/ of small coloured images, each class its own colour, in several formats."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", 3)):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (20 + i, 16, 3), dtype=np.uint8)
                pixels[..., c % 3] += 180
                suffix = (".jpg", ".png", ".webp")[i % 3]
                Image.fromarray(pixels).save(root / split / name / f"{i}{suffix}")
    return root


def image_config(folder: Path, *extra: str):
    return compose(["dataset=image_folder", f"data.path={folder}", "data.image_size=8", *extra]).config.data


def test_decode_takes_any_mode_and_applies_exif_rotation(tmp_path: Path) -> None:
    wide = np.zeros((10, 20, 3), dtype=np.uint8)
    wide[:, :10] = (255, 0, 0)  # red left half, blue right half
    wide[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the viewer turns it 90 degrees clockwise
    Image.fromarray(wide).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    upright = decode(tmp_path / "rotated.jpg", 10)
    assert upright.shape == (3, 10, 10) and upright.dtype == np.uint8
    assert upright[0, 2, 5] > 200 and upright[2, 8, 5] > 200  # red on top, blue below after the turn
    for mode in ("L", "RGBA", "CMYK", "P", "I;16"):
        image = Image.new(mode, (30, 12))
        path = tmp_path / f"{mode.replace(';', '')}.{'jpg' if mode in ('L', 'CMYK') else 'png'}"
        image.save(path)
        assert decode(path, 8).shape == (3, 8, 8), mode


def test_image_folder_batches_are_the_same_with_workers_and_resume_mid_epoch(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images")
    info = prepare_dataset(image_config(folder))
    assert (info.spec.input_shape, info.spec.num_outputs, info.train_samples, info.test_samples) == (
        (3, 8, 8),
        2,
        12,
        6,
    )
    in_rank = load_dataset(image_config(folder, "data.workers=0"))
    in_workers = load_dataset(image_config(folder, "data.workers=2"))
    assert in_workers.class_names == ["cat", "dog"]

    def epoch(bundle, rank: int, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader = BatchLoader(bundle.train, 4, shuffle=True, seed=3, rank=rank, world_size=2)
        return [(x, y) for _, x, y, _ in loader.epoch(1, start)]

    for rank in (0, 1):
        before = torch.get_rng_state()
        expected, got = epoch(in_rank, rank), epoch(in_workers, rank)
        assert torch.equal(torch.get_rng_state(), before)  # reading batches leaves the training RNG alone
        assert len(got) == 3 and all(x.shape == (2, 3, 8, 8) for x, _ in got)
        assert all(
            torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(expected, got, strict=True)
        )
        resumed = epoch(in_workers, rank, start=1)  # a run resumed after the first batch reads the same rest
        assert all(torch.equal(a[0], b[0]) for a, b in zip(got[1:], resumed, strict=True))
    shares = [y for rank in (0, 1) for _, y in epoch(in_workers, rank)]
    assert sorted(torch.cat(shares).tolist()) == sorted(in_rank.train.targets.tolist())  # every sample once


def test_a_data_worker_ends_with_its_rank_even_when_the_rank_is_killed() -> None:
    import signal
    import subprocess
    import sys

    rank = subprocess.Popen(["sleep", "60"])
    code = (
        f"from trainctl.data.rank_lifeline import end_with; end_with({rank.pid}); print('ready', flush=True)"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", code + "; import time; time.sleep(60)"], stdout=subprocess.PIPE
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline() == b"ready\n"
        rank.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL
    finally:
        for process in (rank, worker):
            process.kill()
            process.wait()


def test_one_folder_is_split_by_test_fraction(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images") / "train"
    info = prepare_dataset(image_config(folder, "data.test_fraction=0.5"))
    assert (info.train_samples, info.test_samples) == (6, 6)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("empty", "no class folders with images"),
        ("one_class", "only one class (cat)"),
        ("truncated", "cannot read the image"),
    ],
)
def test_bad_image_folders_exit_2_and_write_nothing(tmp_path: Path, layout: str, message: str) -> None:
    folder = tmp_path / "images"
    if layout == "empty":
        (folder / "notes").mkdir(parents=True)
        (folder / "notes" / "readme.txt").write_text("no images here")
    elif layout == "one_class":
        write_image_folder(folder, classes=("cat",))
        folder = folder / "train"
    else:
        write_image_folder(folder)
        broken = folder / "train" / "dog" / "0.jpg"
        broken.write_bytes(broken.read_bytes()[:200])
    runs = tmp_path / "runs"
    env = {"TRAINCTL_CACHE_DIR": str(tmp_path / "cache")}
    args = ["train", "dataset=image_folder", f"data.path={folder}", "model=cnn", *ONE_PROCESS]
    result = trainctl(*args, runs=runs, env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not runs.exists()
    if layout == "truncated":
        assert str(folder / "train" / "dog" / "0.jpg") in result.stderr
        skipped = trainctl(
            *args, "data.skip_bad=true", "trainer.epochs=1", "data.workers=0", runs=runs, env=env
        )
        assert skipped.returncode == 0, skipped.stderr
        assert "1 unreadable image(s) left out" in skipped.stdout + skipped.stderr


def test_image_model_trains_evaluates_and_predicts_a_photo(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images")
    runs = tmp_path / "runs"
    train = [
        "train", "dataset=image_folder", f"data.path={folder}", "data.image_size=8", "data.workers=1",
        "model=cnn", "trainer.epochs=2", "trainer.batch_size=4", *ONE_PROCESS,
    ]  # fmt: skip
    result = trainctl(*train, runs=runs)
    assert result.returncode == 0, result.stderr[-3000:]
    run = (runs / "latest").resolve()
    evaluated = trainctl("eval", str(run), "--json", runs=runs)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["samples"] == 6
    photo = folder / "test" / "dog" / "1.png"
    predicted = trainctl("predict", str(run), "--file", str(photo), runs=runs)
    assert predicted.returncode == 0, predicted.stderr
    label, probability = predicted.stdout.split()[:2]
    assert label in ("cat", "dog") and 0 < float(probability) <= 1


def write_table(path: Path, rows: int = 40, *, label: str = "label", nan: bool = False) -> Path:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(rows, 3)).round(4)
    if nan:
        x[7, 1] = np.nan
    names = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    lines = [f"a,b,c,{label}"] + [
        f"{a},{'' if np.isnan(b) else b},{c},{n}" for (a, b, c), n in zip(x, names, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_table_classification_and_regression_from_csv_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv = write_table(tmp_path / "rows.csv")
    cfg = compose(["dataset=table", f"data.path={csv}", f"data.cache_dir={tmp_path / 'cache'}"]).config.data
    bundle = load_dataset(cfg)
    assert bundle.class_names == ["no", "yes"] and bundle.spec.input_shape == (3,)
    assert len(bundle.train) + len(bundle.test) == 40
    _, x, y, _ = next(BatchLoader(bundle.train, 8, shuffle=True, seed=0).epoch(0))
    assert x.shape == (8, 3) and x.dtype == torch.float32 and y.dtype == torch.int64

    table = pa.table({"f1": np.arange(30, dtype=np.float64), "f2": np.ones(30), "y": np.arange(30) * 0.5})
    pq.write_table(table, tmp_path / "rows.parquet")
    runs = tmp_path / "runs"
    result = trainctl(
        "train", "dataset=table", f"data.path={tmp_path / 'rows.parquet'}", "data.label=y", "model=linear",
        f"data.cache_dir={tmp_path / 'cache'}", "trainer.epochs=1", *ONE_PROCESS, runs=runs,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rmse" in result.stdout.lower() or "mse" in result.stdout.lower()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("no_label", "the table has no label column 'label'"),
        ("nan", "feature 'b' is nan (missing or not finite) in data row 8"),
    ],
)
def test_bad_tables_exit_2_and_write_nothing(tmp_path: Path, kind: str, message: str) -> None:
    csv = write_table(
        tmp_path / "rows.csv", label="target" if kind == "no_label" else "label", nan=kind == "nan"
    )
    runs = tmp_path / "runs"
    result = trainctl(
        "train",
        "dataset=table",
        f"data.path={csv}",
        f"data.cache_dir={tmp_path / 'cache'}",
        *ONE_PROCESS,
        runs=runs,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not runs.exists()
    with pytest.raises(TrainctlError):
        load_dataset(
            compose(["dataset=table", f"data.path={csv}", f"data.cache_dir={tmp_path / 'c2'}"]).config.data
        )


USER_DATASET = '''
import torch
from torch.utils.data import Dataset


class Blobs(Dataset):
    """Two blobs in 4 dimensions; __getitem__ draws noise (trainctl seeds each batch's draws)."""

    classes = ["left", "right"]

    def __init__(self, split: str, size: int = 64, noise: float = 0.1):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        self.y = torch.randint(0, 2, (size,), generator=g)
        self.x = torch.randn(size, 4, generator=g) + (self.y.float() * 2 - 1).view(-1, 1)
        self.noise = noise

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i] + self.noise * torch.randn(4), int(self.y[i])
'''


def test_the_users_dataset_class_trains_from_their_project(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "mydata.py").write_text(USER_DATASET)
    runs = tmp_path / "runs"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TRAINCTL_RUNS_DIR": str(runs)}
        env.pop("PYTHONPATH", None)
        return subprocess.run(
            [sys.executable, "-m", "trainctl", *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    base = [
        "data._target_=mydata.Blobs",
        "model=mlp",
        "trainer.batch_size=16",
        "trainer.epochs=2",
        *ONE_PROCESS,
    ]
    result = run("train", *base, "data.size=80", "data.workers=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "80 train / 80 test samples" in result.stdout
    run_dir = (runs / "latest").resolve()
    evaluated = run("eval", str(run_dir), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] > 0.9
    wrong = run("train", *base, "data.sizee=80")
    assert wrong.returncode == 2 and "unknown key(s) sizee. Did you mean 'size'?" in wrong.stderr
    assert "Blobs(split: str, size: int = 64, noise: float = 0.1)" in wrong.stderr
    assert [p.parent for p in runs.glob("*/*/run.json")] == [run_dir]  # the refused command wrote nothing
