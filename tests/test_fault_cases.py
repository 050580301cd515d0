"""Bad input and unusual folders: exit 2 with what / where / fix, and no file of the user's written or
removed (hashes of the folder before and after)."""

from __future__ import annotations

import datetime
import json
import os
import pickle
import shutil
import socket
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.conftest import SINGLE, make_tiny_mnist
from tests.ratings_fixtures import synthetic_rows, write_ml_latest
from tests.test_completion import BASH_PRELUDE, BIN
from tests.test_compress import snapshot
from tests.test_export import export_cli, trained
from tests.test_text import write_tiny_sst2
from trainctl.cli.app import app
from trainctl.data.tokens import default_pretrained_folder
from trainctl.errors import TrainctlError
from trainctl.export import FORMATS
from trainctl.models.bert import load_encoder
from trainctl.runs.lock import LockOwner
from trainctl.runs.summaries import main_metric
from trainctl.runtime.parallel.dcp_metadata import load_sharded
from trainctl.training.checkpoint import load_checkpoint

runner = CliRunner()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small digits MLP run (the default preset on one process)."""
    return trained(tmp_path_factory.mktemp("runs"), "trainer.epochs=1", "model.hidden=[16]", *SINGLE)


def test_export_over_an_earlier_export_keeps_the_users_files(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "served"
    code, output = export_cli(digits_run, "safetensors", out)
    assert code == 0, output
    (out / "serve.sh").write_text("python serve.py\n")
    (out / "data").mkdir()
    (out / "data" / "cfg.json").write_text("{}\n")
    mine = {name: digest for name, digest in snapshot(out).items() if name in ("serve.sh", "data/cfg.json")}

    code, output = export_cli(digits_run, "torch-export", out)  # another format: other files
    assert code == 0, output
    after = snapshot(out)
    assert {name: after.get(name) for name in mine} == mine
    assert "model.pt2" in after and "model.safetensors" not in after  # the earlier export's own files went
    assert "The batch size is dynamic." in (out / "README.md").read_text()

    (out / "model.safetensors").write_text("my own file of that name")  # not the earlier export's
    before = snapshot(out)
    code, output = export_cli(digits_run, "safetensors", out)
    assert code == 2 and "would overwrite model.safetensors" in output and "--out" in output
    assert snapshot(out) == before


def test_export_to_the_default_folder_keeps_a_users_note(digits_run: Path) -> None:
    default = digits_run.parent.parent / "exports" / digits_run.parent.name / digits_run.name / "safetensors"
    assert runner.invoke(app, ["export", str(digits_run), "-f", "safetensors"]).exit_code == 0
    (default / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["export", str(digits_run), "-f", "safetensors"])
    assert result.exit_code == 0, result.output
    assert (default / "notes.txt").read_text() == "keep me" and (default / "model.safetensors").is_file()


def folder_hashes(folder: Path) -> dict[str, str]:
    """Every file below `folder` with its content hash, and every folder (as '-')."""
    return snapshot(folder) | {str(p.relative_to(folder)): "-" for p in folder.rglob("*") if p.is_dir()}


@pytest.mark.parametrize("run_id", ["../..", "../../escaped", "a/b", "/tmp/abs", ".."])
def test_a_run_id_with_path_parts_is_refused_and_nothing_is_written(
    run_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "project" / "work"
    work.mkdir(parents=True)
    (work / "train.log").write_text("the user's own log\n")
    (work / "config.yaml").write_text("mine: true\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("TRAINCTL_RUNS_DIR", str(work / "runs"))
    before = folder_hashes(tmp_path)
    multinode = ["launcher=multinode", "launcher.rdzv_endpoint=127.0.0.1:29999", f"launcher.run_id={run_id}"]
    result = runner.invoke(app, ["train", *multinode, *SINGLE[2:], "trainer.max_steps=1"])
    assert result.exit_code == 2, result.output
    assert "is not a plain folder name" in result.output and "launcher.run_id=job42" in result.output
    assert folder_hashes(tmp_path) == before


def test_a_sweep_name_with_path_parts_is_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINCTL_RUNS_DIR", str(tmp_path / "a" / "runs"))
    before = folder_hashes(tmp_path)
    for name in ("../../outside", "/tmp/elsewhere", ".."):
        result = runner.invoke(app, ["sweep", "--name", name, "trainer.max_steps=1", *SINGLE])
        assert result.exit_code == 2 and "--name=" in result.output, result.output
        assert "not a plain folder name" in result.output
    assert folder_hashes(tmp_path) == before


@pytest.fixture(scope="module")
def ratings_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ml_latest(tmp_path_factory.mktemp("data") / "small", synthetic_rows())


def test_an_mf_run_exports_as_safetensors_with_its_ids(ratings_folder: Path, tmp_path: Path) -> None:
    run = trained(tmp_path / "runs", "conf=mf_movielens", f"data.path={ratings_folder}", "trainer.epochs=1")
    code, output = export_cli(run, "safetensors", tmp_path / "mf")
    assert code == 0, output
    weights = load_file(str(tmp_path / "mf" / "model.safetensors"))
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert torch.equal(weights["item_factors.weight"], saved["item_factors.weight"])
    assert torch.equal(weights["_extra_state.user_ids"], saved["_extra_state"]["user_ids"])
    with safe_open(str(tmp_path / "mf" / "model.safetensors"), "pt") as f:
        extra = json.loads(f.metadata()["trainctl_extra_state"])
    assert extra["_extra_state"]["rating_range"] == saved["_extra_state"]["rating_range"]
    assert "_extra_state.user_ids" in (tmp_path / "mf" / "README.md").read_text()


@pytest.mark.parametrize("fmt", ["safetensors", "onnx", "torch-export", "hf"])
def test_an_ease_run_is_refused_by_every_format_with_a_fix_that_works(
    fmt: str, ratings_folder: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    run = trained(runs, "conf=ease_movielens", f"data.path={ratings_folder}")
    before = folder_hashes(tmp_path)
    code, output = export_cli(run, fmt, tmp_path / "out")
    assert code == 2 and "fitted in closed form" in output and "\x1b[" not in output, output
    assert "Traceback" not in output and folder_hashes(tmp_path) == before
    command = output.split("fix: ", 1)[1].split(";")[0].removeprefix("recommend from the run itself: ")
    suggested = runner.invoke(
        app, command.split()[1:-2] + ["--user", "1"], env={"TRAINCTL_RUNS_DIR": str(runs)}
    )
    assert suggested.exit_code == 0, suggested.output


def test_a_pretrained_folder_with_a_wrong_typed_field_is_one_screen_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad-model"
    bad.mkdir()
    for path in default_pretrained_folder().iterdir():
        (bad / path.name).symlink_to(path)
    settings = json.loads((default_pretrained_folder() / "config.json").read_text())
    (bad / "config.json").unlink()
    (bad / "config.json").write_text(json.dumps(settings | {"hidden_size": "big"}))
    monkeypatch.setenv("TRAINCTL_RUNS_DIR", str(tmp_path / "runs"))
    data = write_tiny_sst2(tmp_path / "data")
    overrides = ["conf=bert_sst2", f"model.pretrained={bad}", f"data.root={data}", *SINGLE]
    result = runner.invoke(app, ["train", *overrides, f"data.cache_dir={tmp_path / 'cache'}"])
    assert result.exit_code == 2, result.output
    assert "config.json is invalid" in result.output and "'hidden_size' expected int" in result.output
    assert len(result.output.splitlines()) <= 5 and f"{bad / 'config.json'}" in result.output
    assert not (tmp_path / "runs").exists()
    with pytest.raises(TrainctlError, match="config.json is invalid") as info:  # the encoder says the same
        load_encoder(bad, None)
    assert "model.pretrained" in info.value.where


@pytest.mark.parametrize("preset", ["mlp_mnist", "resnet_cifar", "mf_movielens", "bert_sst2"])
def test_a_data_root_that_is_a_file_is_exit_2_and_writes_no_run(
    preset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data.zip").write_bytes(b"not a folder")
    monkeypatch.setenv("TRAINCTL_RUNS_DIR", str(tmp_path / "runs"))
    before = folder_hashes(tmp_path)
    result = runner.invoke(app, ["train", f"conf={preset}", f"data.root={tmp_path / 'data.zip'}", *SINGLE])
    assert result.exit_code == 2, result.output
    assert (
        result.output.startswith("error: data.root is a file, not a folder")
        and "fix: point data.root" in result.output
    )
    assert folder_hashes(tmp_path) == before


@pytest.mark.parametrize(
    ("text", "held"),
    [
        ("", "nothing"),
        ("# a comment\n", "nothing"),
        ("just a string\n", "a single value"),
        ("- a\n", "a list"),
    ],
)
def test_a_config_file_without_sections_is_exit_2(
    text: str, held: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.yaml").write_text(text)
    monkeypatch.setenv("TRAINCTL_RUNS_DIR", str(tmp_path / "runs"))
    result = runner.invoke(app, ["train", "--config", str(tmp_path / "mine.yaml"), *SINGLE])
    assert result.exit_code == 2, result.output
    assert f"holds a mapping of sections, and this one holds {held}" in result.output
    assert "trainer:" in result.output and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (bytes(range(256)) * 12, "not a PyTorch checkpoint"),
        (b"101\n", "not a PyTorch checkpoint"),
        (b"PK\x03\x04 a damaged archive", "the archive is damaged"),
    ],
)
def test_eval_of_a_file_that_is_no_checkpoint_is_exit_2_without_torchs_advice(
    content: bytes, reason: str, tmp_path: Path
) -> None:
    (tmp_path / "garbage.pt").write_bytes(content)
    result = runner.invoke(app, ["eval", str(tmp_path / "garbage.pt")])
    assert result.exit_code == 2, result.output
    assert "cannot read checkpoint" in result.output and reason in result.output
    assert "weights_only" not in result.output and len(result.output.splitlines()) <= 5


def test_eval_of_a_checkpoint_holding_pickled_code_is_refused(tmp_path: Path) -> None:
    torch.save({"format": "x", "when": datetime.date(2026, 1, 1)}, tmp_path / "code.pt")  # not plain data
    result = runner.invoke(app, ["eval", str(tmp_path / "code.pt")])
    assert result.exit_code == 2 and "pickled objects other than tensors" in result.output, result.output
    assert "weights_only" not in result.output


def test_export_of_a_running_run_says_so(digits_run: Path, tmp_path: Path) -> None:
    trainer = subprocess.Popen(["sleep", "60"])  # stands for the training process holding the run
    owner = LockOwner(trainer.pid, socket.gethostname(), "trainctl train", "2026-01-01T00:00:00", time.time())
    (digits_run / "run.lock").write_text(json.dumps(asdict(owner)))
    try:
        code, output = export_cli(digits_run, "safetensors", tmp_path / "out")
    finally:
        trainer.kill()
        trainer.wait()
        (digits_run / "run.lock").unlink()
    assert code == 0 and "is still running" in output and f"pid {trainer.pid}" in output, output


def test_export_of_an_altered_checkpoint_suggests_exporting_the_intact_one(tmp_path: Path) -> None:
    run = trained(tmp_path / "runs", "trainer.epochs=2", "model.hidden=[16]", *SINGLE)
    last = (run / "checkpoints" / "last.pt").resolve()
    data = bytearray(last.read_bytes())
    data[-100] ^= 1
    last.write_bytes(bytes(data))
    code, output = export_cli(run, "safetensors", tmp_path / "out")
    assert code == 2 and "is altered" in output and "train --resume" not in output, output
    command = output.split("instead: ", 1)[1].split()  # trainctl export CHECKPOINT -f safetensors
    assert command[:2] == ["trainctl", "export"] and command[3:] == ["-f", "safetensors"]
    code, output = export_cli(Path(command[2]), "safetensors", tmp_path / "older")
    assert code == 0, output
    assert json.loads((tmp_path / "older" / "export.json").read_text())["checkpoint"] == command[2]


@pytest.mark.parametrize("damaged", ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"])
def test_a_truncated_mnist_file_is_exit_2_before_any_run_folder(
    damaged: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    make_tiny_mnist(root)
    path = root / "mnist" / damaged
    path.write_bytes(path.read_bytes()[:-40])
    monkeypatch.setenv("TRAINCTL_RUNS_DIR", str(tmp_path / "runs"))
    result = runner.invoke(
        app, ["train", "conf=mlp_mnist", f"data.root={root}", *SINGLE, "trainer.max_steps=1"]
    )
    assert result.exit_code == 2 and "corrupt or truncated" in result.output, result.output
    assert str(path) in result.output and not (tmp_path / "runs").exists()


class RunsCode:
    """Pickles as a call of os.system: what a crafted `.metadata` would run under plain pickle.load."""

    def __reduce__(self) -> tuple:
        return (os.system, ("touch pwned",))


def test_a_crafted_dcp_metadata_is_refused_with_one_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "last-step4.dcp"
    dcp.save({"model": {"weight": torch.ones(3)}}, checkpoint_id=folder)
    (folder / ".metadata").write_bytes(pickle.dumps(RunsCode()))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrainctlError) as info:
        load_sharded({"model": {"weight": torch.zeros(3)}}, folder)
    assert "refusing to read the DCP metadata" in info.value.what and "posix.system" in info.value.what
    assert len(str(info.value).splitlines()) <= 3 and not (tmp_path / "pwned").exists()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_export_format_tab_completes_every_registered_format() -> None:
    script = (
        BASH_PRELUDE
        + '\ncomplete_words trainctl export latest --format ""\ncomplete_words trainctl export latest -f to\n'
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [" ".join(FORMATS.names()), "torch-export"]


def test_profiling_keeps_the_profilers_own_lines_off_the_console(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = trained(tmp_path / "runs", "conf=linreg", "trainer.max_steps=8", "trainer.profile=true", *SINGLE)
    out, err = capfd.readouterr()
    assert "USDT" not in out + err and "profiler_start" not in out + err
    assert "self CPU ms" in out + err  # the report itself is shown
    assert (run / "profile" / "kineto.log").is_file()


@pytest.mark.parametrize("columns", [80, 100])
def test_runs_ls_in_a_narrow_pipe_folds_long_ids_and_keeps_every_column(
    columns: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uuid = "0f8e2c1a-4b5d-4e6f-9a7b-1c2d3e4f5a6b"  # torchrun's default run id
    for i in range(15):
        name = uuid[:-2] + f"{i:02d}" if i % 3 == 0 else f"20261203-0931{i:02d}"
        run = tmp_path / "mlp_digits" / name
        run.mkdir(parents=True)
        parent = "mlp_digits/20261203-093045-a-long-parent-name" if i % 4 == 0 else None
        meta = {"id": f"mlp_digits/{name}", "preset": "mlp_digits", "status": "finished", "parent": parent}
        meta |= {"created": f"2026-12-03T09:31:{i:02d}", "ended": f"2026-12-03T09:32:{i:02d}"}
        (run / "run.json").write_text(json.dumps(meta))
    monkeypatch.setenv("TRAINCTL_RUNS_DIR", str(tmp_path))
    result = runner.invoke(app, ["runs", "ls"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns
    assert result.output.count("finished") == 15 and result.output.count("2026-12-03 09:31") == 15
    assert "".join(line.split()[0] for line in lines[1:] if line[0] != " ").count(uuid[:-2]) == 5  # folded


def test_a_ranker_runs_main_metric_is_its_precision_at_10() -> None:
    ranker = [{"kind": "eval", "precision@10": 0.2238, "ndcg@10": 0.31, "coverage": 0.7}]
    assert main_metric(ranker, None) == ("precision@10", 0.2238)
    assert main_metric([{"kind": "eval", "accuracy": 0.9, "loss": 0.3}], None) == ("accuracy", 0.9)


def test_popular_shows_the_count_it_ranks_by_as_its_score(ratings_folder: Path) -> None:
    result = runner.invoke(
        app, ["recommend", "--user", "2", "--data", str(ratings_folder), "-m", "popular", "--json"]
    )
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    assert [row["score"] for row in items] == [row["ratings"] for row in items]
    assert [row["score"] for row in items] == sorted((row["score"] for row in items), reverse=True)


def test_recommend_on_a_folder_uses_ease_and_caches_its_fit_by_the_datas_fingerprint(
    ratings_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainctl.recommend.fitting as fitting

    monkeypatch.setenv("TRAINCTL_CACHE_DIR", str(tmp_path / "cache"))
    first = runner.invoke(app, ["recommend", "--user", "2", "--data", str(ratings_folder), "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["method"] == "ease"
    assert len(list((tmp_path / "cache" / "recommend").glob("ease-*.npz"))) == 1

    def no_fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("fitted again although the data did not change")

    monkeypatch.setattr(fitting, "fit", no_fit)
    second = runner.invoke(app, ["recommend", "--user", "2", "--data", str(ratings_folder), "--json"])
    assert second.exit_code == 0 and json.loads(second.stdout) == json.loads(first.stdout)
