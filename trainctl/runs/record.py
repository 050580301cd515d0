"""A run's reproducibility record: code, environment, hardware and data identity, written once by rank 0
when the run first starts (record.json, with record/packages.txt and the code's uncommitted diffs)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainctl.runs.disk import write_atomic
from trainctl.runs.fingerprint import fingerprints
from trainctl.runs.machine import environment, hardware, installed_packages
from trainctl.runs.provenance import code_state
from trainctl.runs.run_dir import RunDir
from trainctl.version import run_versions

if TYPE_CHECKING:
    from trainctl.plan import Plan

RECORD = "record.json"
FILES = "record"  # packages.txt and the code's uncommitted diffs (*.patch)
PACKAGES = "packages.txt"


def record_file(run: RunDir) -> Path:
    return run.path / RECORD


def read_record(run: RunDir) -> dict[str, Any]:
    """The run's record; {} for a run without one (trained before records, or never started)."""
    try:
        return json.loads(record_file(run).read_text())
    except (OSError, ValueError):
        return {}


def read_packages(run: RunDir) -> list[str]:
    path = run.path / FILES / PACKAGES
    return path.read_text().splitlines() if path.is_file() else []


def world_shape(plan: Plan) -> dict[str, Any]:
    launcher = plan.config.launcher
    return {
        "launcher": launcher.name,
        "nnodes": getattr(launcher, "nnodes", 1),
        "nproc_per_node": getattr(launcher, "nproc", 1),
        "world_size": plan.world_size,
        "device": plan.device,
    }


def environment_hash(env: dict[str, Any]) -> str:
    """One hash of the software: Python, torch and its libraries, the package list, the variables."""
    kept = {k: v for k, v in env.items() if k not in ("executable", "determinism")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def build_record(plan: Plan, data_paths: list[Path]) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """The record, the installed packages and the patches (file name -> diff) of a run about to start."""
    packages = installed_packages()
    code, patches = code_state(plan.tree)
    versions = run_versions()
    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "code": {
            "trainctl": {
                "version": versions.get("trainctl_version"),
                "commit": versions.get("trainctl_commit"),
            },
            **code,
        },
        "environment": environment(packages, plan.config.trainer.seed),
        "hardware": hardware(plan.threads_per_worker, world_shape(plan)),
        "data": {"name": plan.config.data.name, "files": fingerprints(data_paths)},
    }
    return record, packages, patches


def keep_record(run: RunDir, plan: Plan, data_paths: list[Path]) -> None:
    """Write the run's record unless it has one (a resume or a restart keeps the first start's); the
    package list's and the environment's hashes go into run.json too."""
    if record_file(run).exists():
        return
    record, packages, patches = build_record(plan, data_paths)
    folder = run.path / FILES
    folder.mkdir(exist_ok=True)
    write_atomic(folder / PACKAGES, "".join(f"{line}\n" for line in packages).encode())
    for name, diff in patches.items():
        write_atomic(folder / name, diff.encode())
    env_hash = environment_hash(record["environment"])
    record["environment"]["sha256"] = env_hash
    write_atomic(record_file(run), (json.dumps(record, indent=2) + "\n").encode())
    run.update_meta(packages_sha256=record["environment"]["packages_sha256"], environment_sha256=env_hash)


def changed_code(run: RunDir) -> list[str]:
    """A line for each user component whose module file differs now from the one the run recorded."""
    from trainctl.runs.manifest import sha256_of
    from trainctl.runs.provenance import module_file

    lines = []
    for key, entry in sorted((read_record(run).get("code", {}).get("components") or {}).items()):
        if not entry.get("sha256"):
            continue
        now = module_file(str(entry.get("target", "")))
        current = sha256_of(now) if now is not None and now.is_file() else None
        if current != entry["sha256"]:
            where = str(now) if now is not None else "(not found now)"
            lines.append(
                f"{key}._target_ {entry.get('target')}: its source {where} changed since the run was "
                f"trained (sha256 {entry['sha256'][:12]} then, {(current or 'none')[:12]} now); the model is "
                "built from today's code"
            )
    return lines
