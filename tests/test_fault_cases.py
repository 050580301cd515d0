"""Bad input and unusual folders: exit 2 with what / where / fix, and no file of the user's written or
removed (hashes of the folder before and after)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SINGLE
from tests.test_compress import snapshot
from tests.test_export import export_cli, trained
from trainctl.cli.app import app

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
