"""The reproducibility record, `runs diff` and `train --reproduce`: two runs of one command differ in nothing
but ids and times; a changed config value, data file, user module and package each show in their section;
a rerun is bit-identical, and a non-deterministic one is caught."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import SINGLE, make_tiny_mnist, trainctl, write_idx
from trainctl.cli.app import app
from trainctl.cli.train import train
from trainctl.runs.compare import compare
from trainctl.runs.provenance import code_state, module_file
from trainctl.runs.record import changed_code, read_record
from trainctl.runs.run_dir import RunDir

runner = CliRunner()
SHORT = ["conf=mlp_mnist", "trainer.epochs=3", "trainer.log_every=1", "trainer.batch_size=16", *SINGLE]


def run_in(root: Path, data: Path, *extra: str) -> RunDir:
    return RunDir(Path(train([*SHORT, f"run.root={root}", f"data.root={data}", *extra])["run dir"]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunDir]:
    """Two runs of one command on a tiny MNIST, and a third with another optim.lr."""
    root, data = tmp_path_factory.mktemp("runs"), make_tiny_mnist(tmp_path_factory.mktemp("data"))
    return {"a": run_in(root, data), "b": run_in(root, data), "lr": run_in(root, data, "optim.lr=0.01")}


def copy_run(run: RunDir, dest: Path) -> RunDir:
    shutil.copytree(run.path, dest, symlinks=True)
    return RunDir(dest)


def edit_record(run: RunDir, change) -> None:  # type: ignore[no-untyped-def]
    path = run.path / "record.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_the_record_holds_code_environment_hardware_and_data(runs: dict[str, RunDir]) -> None:
    record, meta = read_record(runs["a"]), runs["a"].read_meta()
    assert record["code"]["trainctl"]["version"] == meta["trainctl_version"]
    env = record["environment"]
    assert env["python"] and env["torch"] and env["determinism"]["seed"] == 0
    packages = (runs["a"].path / "record" / "packages.txt").read_text().splitlines()
    assert packages == sorted(packages, key=lambda line: line.partition("==")[0].lower())
    assert any(p.startswith("torch==") for p in packages)
    assert meta["packages_sha256"] == env["packages_sha256"] and meta["environment_sha256"] == env["sha256"]
    assert record["hardware"]["cpus"] >= 1 and record["hardware"]["memory"] > 0
    assert record["hardware"]["world"] == {
        "launcher": "local",
        "nnodes": 1,
        "nproc_per_node": 1,
        "world_size": 1,
        "device": "cpu",
    }
    files = record["data"]["files"]
    assert sorted(Path(f["path"]).name for f in files) == sorted(
        [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ]
    )
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in files)


def test_two_runs_of_one_command_differ_in_nothing_but_ids_and_times(runs: dict[str, RunDir]) -> None:
    diff = compare(runs["a"], runs["b"])
    assert {name: changes for name, changes in diff.sections.items() if changes} == {}
    assert diff.parting is None and diff.compared_records > 3
    result = runner.invoke(app, ["runs", "diff", str(runs["a"].path), str(runs["b"].path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert all(report[s] == [] for s in ("config", "code", "environment", "hardware", "data"))
    assert report["results"]["parting"] is None


def test_a_changed_learning_rate_shows_in_config_and_results(runs: dict[str, RunDir], tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["runs", "diff", str(runs["a"].path), str(runs["lr"].path), "--plot", str(tmp_path / "d.png")]
    )
    assert result.exit_code == 0, result.output
    assert "config: 1 difference(s)\n  optim.lr: 0.003 -> 0.01" in result.output
    assert "code: no difference" in result.output and "data: no difference" in result.output
    assert "loss curves part at step 2: train loss" in result.output
    assert "first difference of any metric at step 1: train lr" in result.output
    assert (tmp_path / "d.png").stat().st_size > 0
    diff = compare(runs["a"], runs["lr"])
    assert [c.key for c in diff.sections["config"]] == ["optim.lr"]


def test_runs_are_named_by_dir_latest_or_id(runs: dict[str, RunDir], runs_root: Path) -> None:
    root = runs["a"].path.parent.parent
    run_id = runs["a"].read_meta()["id"]
    result = runner.invoke(app, ["runs", "diff", run_id, "latest"], env={"TRAINCTL_RUNS_DIR": str(root)})
    assert result.exit_code == 0, result.output
    assert f"A: {runs['a'].path}" in result.output
    assert f"B: {(root / 'latest').resolve()}" in result.output


def test_a_package_of_another_version_shows_in_environment(runs: dict[str, RunDir], tmp_path: Path) -> None:
    other = copy_run(runs["b"], tmp_path / "b")
    listing = other.path / "record" / "packages.txt"
    lines = [
        ("numpy==0.0.1" if line.startswith("numpy==") else line) for line in listing.read_text().splitlines()
    ]
    listing.write_text("\n".join(lines) + "\n")
    diff = compare(runs["a"], other)
    (change,) = diff.sections["environment"]
    assert change.key == "package numpy" and change.b == "0.0.1"
    assert not diff.sections["config"] and not diff.sections["code"] and not diff.sections["data"]


def test_an_edited_data_file_shows_in_data(tmp_path: Path) -> None:
    data = make_tiny_mnist(tmp_path / "data")
    first = run_in(tmp_path / "runs", data)
    labels = data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(32, dtype=np.uint8), 2049)  # every test label is 0 now
    second = run_in(tmp_path / "runs", data)
    diff = compare(first, second)
    assert [c.key for c in diff.sections["data"]] == [str(labels)]
    assert not diff.sections["config"] and not diff.sections["code"]
    with gzip.open(labels) as f:
        assert f.read()  # still a readable file: the run used it


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_user_components_are_found_without_importing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "nets").mkdir(parents=True)
    (project / "nets" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (project / "nets" / "small.py").write_text("class Net:\n    width = 8\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "-c", "user.email=a@b", "-c", "user.name=a", "add", ".")
    git(project, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "net")
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.delitem(sys.modules, "nets", raising=False)
    tree = {"model": {"_target_": "nets.small.Net", "width": 8}}
    assert module_file("nets.small.Net") == (project / "nets" / "small.py").resolve()
    clean, patches = code_state(tree)
    entry = clean["components"]["model"]
    repo = clean["repositories"][entry["repository"]]
    assert repo["branch"] == "main" and len(repo["commit"]) == 40 and not repo["dirty"] and not patches
    (project / "nets" / "small.py").write_text("class Net:\n    width = 16\n")
    dirty, patches = code_state(tree)
    assert dirty["components"]["model"]["sha256"] != entry["sha256"]
    assert dirty["repositories"][entry["repository"]]["dirty"]
    (patch,) = patches.values()
    assert "+    width = 16" in patch


def test_an_edited_user_module_shows_in_code_and_when_the_run_is_opened(
    runs: dict[str, RunDir], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "mynet.py").write_text("class Net:\n    pass\n")
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.delitem(sys.modules, "mynet", raising=False)  # another test's project imported it
    then, _ = code_state({"model": {"_target_": "mynet.Net"}})
    first, second = copy_run(runs["a"], tmp_path / "a"), copy_run(runs["b"], tmp_path / "b")
    edit_record(first, lambda r: r["code"].update(then))
    (project / "mynet.py").write_text("class Net:\n    depth = 2\n")
    now, _ = code_state({"model": {"_target_": "mynet.Net"}})
    edit_record(second, lambda r: r["code"].update(now))
    diff = compare(first, second)
    assert [c.key for c in diff.sections["code"]] == ["components.model.sha256"]
    assert not diff.sections["config"] and not diff.sections["data"]
    (line,) = changed_code(first)  # eval and export print it (api.open_run)
    assert "model._target_ mynet.Net: its source" in line and "changed since the run" in line
    assert changed_code(second) == []


def test_reproduce_reports_bit_identical_and_exits_0(runs: dict[str, RunDir]) -> None:
    result = runner.invoke(app, ["train", "--reproduce", str(runs["a"].path)])
    assert result.exit_code == 0, result.output
    assert "reproduced: bit-identical metrics" in result.output


def test_reproduce_catches_a_nondeterministic_run_with_exit_1(
    runs: dict[str, RunDir], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    seed = torch.manual_seed
    monkeypatch.setattr(
        torch, "manual_seed", lambda value: seed(value + int.from_bytes(os.urandom(4), "big"))
    )
    result = runner.invoke(app, ["train", "--reproduce", str(runs["a"].path)])
    assert result.exit_code == 1, result.output
    assert "NOT reproduced (tolerance 0): first difference at step 1: train loss" in result.output
    assert "the job itself is not deterministic" in result.output


def test_reproduce_within_a_tolerance_exits_0(runs: dict[str, RunDir]) -> None:
    result = runner.invoke(
        app, ["train", "--reproduce", str(runs["a"].path), "optim.lr=0.0030001", "--tolerance", "0.5"]
    )
    assert result.exit_code == 0, result.output
    assert "reproduced within --tolerance 0.5" in result.output


@pytest.mark.slow
def test_the_record_of_a_two_rank_ddp_run_has_hardware_and_environment(tmp_path: Path) -> None:
    done = trainctl(
        "train", "launcher.nproc=2", "parallel=ddp", "trainer.max_steps=4", "trainer.threads=1", runs=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = [RunDir(p.parent) for p in tmp_path.glob("*/*/record.json")]
    record = read_record(run)
    assert (
        record["hardware"]["world"]["world_size"] == 2 and record["hardware"]["world"]["nproc_per_node"] == 2
    )
    assert record["hardware"]["cpu"] and record["hardware"]["threads_per_worker"] == 1
    assert record["environment"]["torch"] and record["environment"]["packages_sha256"]
    assert (run.path / "record" / "packages.txt").is_file()


def test_reproduce_refuses_options_it_does_not_take(runs: dict[str, RunDir]) -> None:
    result = runner.invoke(app, ["train", "--reproduce", str(runs["a"].path), "--dry-run"])
    assert result.exit_code == 2 and "--reproduce trains the run's own config.yaml" in result.output
