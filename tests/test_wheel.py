"""Packaging: the built wheel carries the configs and the recipes, and runs from any directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import tomllib

from tests.conftest import REPO


def listed_packages() -> tuple[list[str], dict[str, str]]:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return setuptools["packages"], setuptools["package-dir"]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """pyproject.toml lists the packages (recipes/ and conf/ map into trainctl): none may be missing."""
    packages, package_dir = listed_packages()
    found = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "trainctl").rglob("__init__.py")
    } | set(package_dir)
    assert sorted(found) == sorted(packages)
    assert package_dir == {"trainctl.recipes": "recipes", "trainctl.conf": "conf"}


def site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def install_wheel(tmp_path: Path) -> tuple[Path, Path]:
    """pip wheel, install it (no dependencies) into a new venv that sees this venv's torch, hydra...
    through a .pth file; (the wheel, the venv)."""
    source, dist = tmp_path / "source", tmp_path / "dist"  # a clean copy: no stale build/ folder
    for name in ("trainctl", "recipes", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, source],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("trainctl-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    # The dependencies come from this venv, the package only from the wheel: this venv's site-packages
    # joins the new one's path, and its editable trainctl finder (a .pth of its own) does not run.
    (site_packages(python) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel], check=True, cwd=tmp_path
    )
    return wheel, venv


def wheel_env(runs: Path) -> dict[str, str]:
    """The environment of an installed trainctl: nothing of this checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRAINCTL_CONF_DIR")}
    env["TRAINCTL_RUNS_DIR"] = str(runs)
    return env


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_venv_runs_from_another_directory(
    installed_wheel: tuple[Path, Path], tmp_path: Path
) -> None:
    """Build and install the wheel, then run the installed `trainctl` from an empty directory."""
    wheel, venv = installed_wheel
    python = venv / "bin" / "python"
    names = zipfile.ZipFile(wheel).namelist()
    configs = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert sorted(n.removeprefix("trainctl/") for n in names if n.endswith(".yaml")) == configs
    assert "trainctl/recipes/supervised.py" in names and not any(n.startswith("recipes/") for n in names)

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = wheel_env(workdir / "runs")

    def run(*args: str) -> str:
        out = subprocess.run(args, capture_output=True, text=True, cwd=workdir, env=env, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    where = run(str(python), "-c", "import trainctl.recipes, trainctl.conf; print(trainctl.recipes.__file__)")
    assert Path(where.strip()).is_relative_to(venv)
    listed = run(str(venv / "bin" / "trainctl"), "configs", "list")
    assert "mlp_digits" in listed and "resnet_cifar" in listed
    run(str(venv / "bin" / "trainctl"), "train", "trainer.epochs=1", "trainer.threads=1")
    (run_dir,) = (workdir / "runs" / "mlp_digits").glob("2*")
    assert (run_dir / "checkpoints" / "last.pt").is_file()
