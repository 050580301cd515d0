"""What trainctl is running as: its version, the git commit it was installed from, torch and Python."""

from __future__ import annotations

import json
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import trainctl

PACKAGE = Path(trainctl.__file__).resolve().parent


def package_version(name: str) -> str | None:
    """An installed distribution's version, read from its metadata (nothing is imported)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def installed_commit() -> str | None:
    """The commit pip recorded for an install from a git URL (PEP 610 direct_url.json)."""
    try:
        text = metadata.distribution("trainctl").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    commit = (json.loads(text).get("vcs_info") or {}).get("commit_id") if text else None
    return str(commit) if commit else None


def checkout_commit() -> str | None:
    """HEAD of the git checkout this package is imported from (an editable install or the source
    tree), with `-dirty` when tracked files changed; None when the package is not in a checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel"))
        if (top / PACKAGE.name).resolve() != PACKAGE:  # a checkout around an installed copy: not ours
            return None
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


@lru_cache(maxsize=1)
def commit() -> str | None:
    return installed_commit() or checkout_commit()


def run_versions() -> dict[str, str]:
    """What run.json records about the software that trained the run."""
    found = {
        "trainctl_version": trainctl.__version__,
        "trainctl_commit": commit(),
        "torch_version": package_version("torch"),
        "python_version": platform.python_version(),
    }
    return {key: value for key, value in found.items() if value}


def describe() -> str:
    """`trainctl --version`: trainctl (and its commit), torch and Python, one per line."""
    versions = run_versions()
    sha = versions.get("trainctl_commit")
    return "\n".join(
        [
            f"trainctl {trainctl.__version__}" + (f" (commit {sha})" if sha else ""),
            f"torch {versions.get('torch_version', 'not installed')}",
            f"Python {platform.python_version()} ({platform.python_implementation()})",
        ]
    )
