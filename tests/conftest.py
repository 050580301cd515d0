"""Shared fixtures: an isolated runs folder per test, the shared data sets, tiny IDX files."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SINGLE = ["launcher.nproc=1", "parallel=none", "trainer.threads=1"]  # in-process, one rank, one thread
SHARED_DATA = Path(os.environ.get("TRAINCTL_DATA_DIR") or REPO.parent / "shared" / "data")
# The files whose tests take longest (`--durations`), collected first: `make test` hands whole files to
# two processes in collection order, so starting with these lets both end at about the same time.
LONGEST_FILES = [
    "test_distributed.py",
    "test_runtime.py",
    "test_user_components.py",
    "test_readme.py",
    "test_text.py",
    "test_user_project.py",
    "test_mlflow.py",
    "test_file_data.py",
    "test_train.py",
    "test_vision.py",
    "test_console.py",
    "test_topn.py",
    "test_distill.py",
    "test_export.py",
    "test_job_processes.py",
    "test_integrity_faults.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first; every file keeps its own order (the sort is stable)."""
    rank = {name: place for place, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes its runs under its own temporary folder."""
    root = tmp_path / "runs"
    monkeypatch.setenv("TRAINCTL_RUNS_DIR", str(root))
    monkeypatch.setenv("TRAINCTL_CACHE_DIR", str(tmp_path / "cache"))  # fits on ratings folders
    return root


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, a venv with it installed), built once per test session: the xdist workers of one
    session share it (the first builds it under a file lock, the others wait and reuse it)."""
    import fcntl

    from tests.test_wheel import install_wheel

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the session's own folder
    folder = shared / "installed-wheel"
    with open(shared / "installed-wheel.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "installed").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            install_wheel(folder)
            (folder / "installed").write_text("")
    (wheel,) = (folder / "dist").glob("trainctl-*.whl")
    return wheel, folder / "venv"


def require_data(*folders: str) -> Path:
    """The real data sets' root when it holds `folders`; else the test is skipped with the reason, or
    fails when TRAINCTL_REQUIRE_DATA=1 (CI: a missing data set must not pass as a skip)."""
    missing = [name for name in folders if not (SHARED_DATA / name).is_dir()]
    if missing:
        reason = (
            f"data set {', '.join(missing)} not found under {SHARED_DATA} "
            "(set TRAINCTL_DATA_DIR to the folder that holds it)"
        )
        if os.environ.get("TRAINCTL_REQUIRE_DATA") == "1":
            pytest.fail(f"{reason}; TRAINCTL_REQUIRE_DATA=1 makes this a failure", pytrace=False)
        pytest.skip(reason)
    return SHARED_DATA


@pytest.fixture
def shared_data(request: pytest.FixtureRequest) -> Path:
    """The real data sets beside the project: the folders named by the test's `data` mark
    (default mnist), as `require_data` finds them."""
    mark = request.node.get_closest_marker("data")
    return require_data(*(mark.args if mark else ("mnist",)))


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """Write `array` (uint8) as a gzipped IDX file with the given magic number."""
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_tiny_mnist(root: Path) -> Path:
    """Write mnist/ under `root` with 64 train and 32 test images in the official format."""
    folder = root / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 32)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), 2051)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)), 2049)
    return root


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A data root holding a tiny MNIST that the test may damage."""
    return make_tiny_mnist(tmp_path / "data")


@pytest.fixture(scope="module")
def tiny_mnist_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a tiny MNIST shared by a module's tests (read only)."""
    return make_tiny_mnist(tmp_path_factory.mktemp("data"))


def trainctl(
    *args: str, runs: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the trainctl command in a fresh process (multi-process launches fork from it, not from pytest)."""
    full_env = {**os.environ, "TRAINCTL_RUNS_DIR": str(runs), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "trainctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=REPO,
    )


def start_trainctl(*args: str, runs: Path) -> subprocess.Popen[str]:
    """Start `trainctl train ARGS` in the background (stdout and stderr piped separately)."""
    return subprocess.Popen(
        [sys.executable, "-m", "trainctl", "train", *args],
        cwd=REPO,
        text=True,
        env={**os.environ, "TRAINCTL_RUNS_DIR": str(runs)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def torchrun(runs: Path, rdzv_id: str, *args: str, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """`torchrun --nproc-per-node NPROC --rdzv-id RDZV_ID -m trainctl train ARGS` on a free local port."""
    from trainctl.runtime.launch.elastic import free_port

    rendezvous = [
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{free_port()}",
        "--rdzv-id",
        rdzv_id,
    ]
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), *rendezvous]
        + ["-m", "trainctl", "train", *args],
        env={**os.environ, "TRAINCTL_RUNS_DIR": str(runs)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
