"""`trainctl --version` and the versions run.json records (trainctl, its git commit, torch, Python)."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import trainctl
from tests.conftest import REPO, SINGLE
from trainctl import version
from trainctl.cli.app import app
from trainctl.cli.train import train

runner = CliRunner()


def head_of(repo: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def test_version_names_trainctl_torch_and_python() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"trainctl {trainctl.__version__}")
    assert lines[1] == f"torch {torch.__version__}"
    assert lines[2].startswith(f"Python {platform.python_version()}")
    from importlib.metadata import version as installed

    assert installed("trainctl") == trainctl.__version__  # pyproject reads the same number


@pytest.mark.skipif(shutil.which("git") is None or head_of(REPO) is None, reason="not a git checkout")
def test_from_a_git_checkout_the_version_and_run_json_carry_the_commit() -> None:
    version.commit.cache_clear()
    head = head_of(REPO)
    assert head is not None
    shown = runner.invoke(app, ["--version"]).output.splitlines()[0]
    assert f"(commit {head}" in shown
    run = Path(train(["trainer.epochs=1", *SINGLE])["run dir"])
    meta = json.loads((run / "run.json").read_text())
    assert meta["trainctl_version"] == trainctl.__version__
    assert meta["trainctl_commit"].removesuffix("-dirty") == head
    assert meta["torch_version"] == torch.__version__ and meta["python_version"] == platform.python_version()


def test_a_pip_install_from_a_git_url_reports_the_commit_pip_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Installed:
        def read_text(self, name: str) -> str | None:
            assert name == "direct_url.json"
            return json.dumps(
                {"url": "https://example.org/trainctl.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}}
            )

    monkeypatch.setattr(version.metadata, "distribution", lambda name: Installed())
    assert version.installed_commit() == "abc123"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_no_commit_for_a_copy_outside_a_checkout_or_inside_someone_elses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loose = tmp_path / "site-packages" / "trainctl"
    loose.mkdir(parents=True)
    monkeypatch.setattr(version, "PACKAGE", loose)
    assert version.checkout_commit() is None
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # a repository around an installed copy
    assert version.checkout_commit() is None
