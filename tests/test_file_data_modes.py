"""File-backed data beyond plain training: an image folder under FSDP (the user's model, 2 ranks), bf16,
`smoke` of a user's preset, pruning and torch.export; a table through a sweep."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO
from tests.test_file_data import write_image_folder, write_table
from trainctl.cli.app import app

runner = CliRunner()
TINY = ["data.image_size=8", "trainer.batch_size=4", "trainer.threads=1", "trainer.max_steps=2"]
ONE_PROCESS = ["launcher.nproc=1", "parallel=none", "data.workers=0"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project (its model, its config folder) beside a tiny image folder, `images/`."""
    folder = tmp_path_factory.mktemp("user") / "my_project"
    shutil.copytree(REPO / "examples" / "my_project", folder)
    write_image_folder(folder / "images", per_class=4)
    return folder


def user_images(project: Path) -> list[str]:
    """The project's preset on its image folder with a built-in model: nothing of the user's code is
    imported into the test process."""
    return ["conf=my_images", "model=cnn", f"data.path={project / 'images'}", *TINY]


@pytest.fixture(scope="module")
def bf16_run(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained in bf16 on the image folder, in this process."""
    runs = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAINCTL_CONFIG_PATH", str(project / "conf"))
        patch.setenv("TRAINCTL_CACHE_DIR", str(runs / "cache"))
        done = runner.invoke(
            app, ["train", *user_images(project), *ONE_PROCESS, "trainer.precision=bf16", f"run.root={runs}"]
        )
    assert done.exit_code == 0, done.output
    (run,) = [p.parent for p in runs.glob("*/*/run.json")]
    return run


def test_an_image_folder_trains_in_bf16(bf16_run: Path) -> None:
    config = yaml.safe_load((bf16_run / "config.yaml").read_text())
    assert config["trainer"]["precision"] == "bf16" and config["data"]["name"] == "image_folder"
    assert (bf16_run / "checkpoints" / "last.pt").is_file()


def test_a_run_on_an_image_folder_is_pruned(bf16_run: Path) -> None:
    done = runner.invoke(app, ["compress", str(bf16_run), "--prune", "0.5"])
    assert done.exit_code == 0, done.output
    assert "compressed run:" in done.output


def test_a_run_on_an_image_folder_exports_with_torch_export(bf16_run: Path, tmp_path: Path) -> None:
    done = runner.invoke(
        app, ["export", str(bf16_run), "--format", "torch-export", "--out", str(tmp_path / "x")]
    )
    assert done.exit_code == 0, done.output
    assert list((tmp_path / "x").glob("*.pt2"))


def test_smoke_takes_a_users_preset_on_an_image_folder(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINCTL_CONFIG_PATH", "")  # restored after the test: -cd adds to it
    done = runner.invoke(
        app, ["smoke", "-cd", str(project / "conf"), *user_images(project), *ONE_PROCESS, "--steps", "4"]
    )
    assert done.exit_code == 0, done.output
    assert "ok my_images" in done.output and "smoke passed: 1 preset(s)" in done.output


@pytest.mark.slow
def test_the_users_model_on_an_image_folder_trains_under_fsdp(project: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRAINCTL_CONFIG_PATH")}
    env["TRAINCTL_RUNS_DIR"] = str(tmp_path / "runs")
    done = subprocess.run(
        [sys.executable, "-m", "trainctl", "train", "-cd", "conf", "conf=my_images", "model.width=4"]
        + [f"data.path={project / 'images'}", "parallel=fsdp", "launcher.nproc=2", "data.workers=0", *TINY],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = [p.parent for p in (tmp_path / "runs").glob("*/*/run.json")]
    assert list((run / "checkpoints").glob("last-step*.dcp"))  # sharded over the two ranks
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["_target_"] == "mynet.Net"


def test_a_sweep_of_two_learning_rates_on_a_table(tmp_path: Path, runs_root: Path) -> None:
    table = write_table(tmp_path / "rows.csv")
    done = runner.invoke(
        app,
        ["sweep", "dataset=table", f"data.path={table}", "model=mlp", "optim.lr=0.01,0.05", "-j", "2"]
        + ["launcher.nproc=1", "parallel=none", "trainer.threads=1", "trainer.max_steps=2"],
    )
    assert done.exit_code == 0, done.output
    jobs = sorted(p.parent.name for p in (runs_root / "sweeps").glob("*/*/run.json"))
    assert len(jobs) == 2 and jobs[0].startswith("optim.lr=0.01") and jobs[1].startswith("optim.lr=0.05")
