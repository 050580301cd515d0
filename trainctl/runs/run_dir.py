"""Run identity and layout: one directory per run, its metadata, and the `latest` link."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainctl.errors import TrainctlError
from trainctl.version import run_versions

TIMESTAMP = "%Y%m%d-%H%M%S"
LATEST = "latest"


@dataclass(frozen=True)
class RunDir:
    """The files of one run: runs/<preset>/<timestamp>/."""

    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def overrides_file(self) -> Path:
        return self.path / "overrides.yaml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def log_file(self) -> Path:
        return self.path / "train.log"

    @property
    def meta_file(self) -> Path:
        return self.path / "run.json"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, tag: str = "last") -> Path:
        return self.checkpoints / f"{tag}.pt"

    def read_meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_file.read_text())
        except (OSError, ValueError):
            return {}

    def update_meta(self, **fields: Any) -> None:
        """Merge `fields` into run.json, atomically."""
        meta = self.read_meta() | fields
        tmp = self.meta_file.with_name(f".run.json.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
            os.replace(tmp, self.meta_file)
        finally:
            tmp.unlink(missing_ok=True)


def record_run(run: RunDir, tree: dict[str, Any], overrides: list[str], preset: str) -> None:
    """config.yaml, overrides.yaml and run.json: the run's identity, written once (by the parent, or
    by rank 0 when every node's parent is the same command)."""
    if run.config_file.exists():
        return
    run.config_file.write_text(yaml.safe_dump(tree, sort_keys=False))
    run.overrides_file.write_text(yaml.safe_dump(list(overrides)))
    run.update_meta(
        id=f"{run.path.parent.name}/{run.path.name}",
        preset=preset,
        status="created",
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        command=["trainctl", *sys.argv[1:]],
        **run_versions(),  # trainctl's version (and git commit), torch's and Python's
    )


def default_runs_root() -> Path:
    """Where runs live when no config says otherwise: $TRAINCTL_RUNS_DIR, else ./runs."""
    return Path(os.environ.get("TRAINCTL_RUNS_DIR", "runs"))


def create_run_dir(root: Path, name: str) -> RunDir:
    """A new, empty run directory <root>/<name>/<timestamp>[-N] (`latest` moves to it once it starts)."""
    parent = root / name
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime(TIMESTAMP)
    for attempt in range(1000):
        path = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / "checkpoints").mkdir()
        return RunDir(path)
    raise TrainctlError(f"cannot create a run directory under {parent}")


def check_folder_name(name: str, key: str) -> None:
    """Refuse a name given for one folder that would lead elsewhere ('..', 'a/b', an absolute path)."""
    if name in ("", ".", "..") or any(part in name for part in ("/", "\\", "\0")):
        raise TrainctlError(
            f"{key}={name!r} is not a plain folder name: it names one folder under the runs root, and "
            "path parts ('/', '..') would put the run's files elsewhere",
            where=key,
            fix=f"use letters, digits, '.', '-' or '_', e.g. {key}=job42",
        )


def named_run_dir(path: Path) -> RunDir:
    """A run directory whose name was agreed in advance (a multi-node run id, $TRAINCTL_RUN_DIR)."""
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    return RunDir(path)


def point_latest(root: Path, path: Path) -> None:
    """Make <root>/latest a relative link to `path`, replacing the old link atomically."""
    link = root / LATEST
    tmp = root / f".{LATEST}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(path.relative_to(root))
        os.replace(tmp, link)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_run(arg: str, root: Path) -> RunDir:
    """A run directory from a path, `latest` or an id (`<preset>/<run>`, under `root`); a TrainctlError when
    it is none."""
    path = root / LATEST if arg == LATEST else Path(arg)
    if not (path / "config.yaml").is_file() and (root / arg / "config.yaml").is_file():
        path = root / arg  # an id, as `runs ls` prints it
    if arg == LATEST and not path.exists():
        raise TrainctlError(f"no runs yet under {root}", fix="train one first, or give a run directory")
    path = path.resolve()
    if path.is_file() and path.suffix == ".pt" and path.parent.name == "checkpoints":
        path = path.parent.parent
    if not (path / "config.yaml").is_file():
        raise TrainctlError(
            f"not a run directory (no config.yaml): {path}",
            fix=f"give a folder under {root}/<preset>/, or 'latest'",
        )
    return RunDir(path)
