"""Tests that read a real data set skip with a reason when it is missing, and TRAINCTL_REQUIRE_DATA=1
(set by CI) turns that skip into a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA

NEEDS_MNIST = "tests/test_data.py::test_reads_the_shared_mnist"
NEEDS_SST2 = "tests/test_text.py::test_reads_the_shared_sst2_files"


def pytest_run(*tests: str, data_dir: Path, require: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINCTL_DATA_DIR": str(data_dir)}
    env.pop("TRAINCTL_REQUIRE_DATA", None)
    if require:
        env["TRAINCTL_REQUIRE_DATA"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsfE", "-p", "no:cacheprovider", *tests],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )


def test_a_missing_data_set_is_a_skip_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()  # mnist is there, SST-2 is not
    result = pytest_run(NEEDS_SST2, data_dir=tmp_path, require=False)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert f"data set sst2 not found under {tmp_path} (set TRAINCTL_DATA_DIR" in result.stdout


def test_with_require_data_a_missing_data_set_fails(tmp_path: Path) -> None:
    result = pytest_run(NEEDS_MNIST, NEEDS_SST2, data_dir=tmp_path / "nothing", require=True)
    assert result.returncode == 1, result.stdout
    assert "2 errors" in result.stdout and "skipped" not in result.stdout  # failed in the data fixture
    assert "TRAINCTL_REQUIRE_DATA=1 makes this a failure" in result.stdout


def test_with_require_data_and_the_data_present_nothing_skips() -> None:
    if not (SHARED_DATA / "sst2").is_dir():
        pytest.skip(f"the real data sets are not at {SHARED_DATA}")  # what the two tests above check
    result = pytest_run(NEEDS_MNIST, NEEDS_SST2, data_dir=SHARED_DATA, require=True)
    assert result.returncode == 0, result.stdout
    assert "2 passed" in result.stdout and "skipped" not in result.stdout
