"""Checkpoint manifests: the sha256 of each file of a checkpoint, written after them, checked before reads."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainctl.errors import TrainctlError

FORMAT = 1
SUFFIX = ".manifest.json"
CHUNK = 1 << 20


class CheckpointCorrupted(TrainctlError):
    """A checkpoint file is missing, truncated or altered: it does not match its manifest (exit 2).
    `intact` is the newest older checkpoint of the run that matches its own, when there is one."""

    intact: Path | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_of(checkpoint: Path) -> Path:
    """The manifest of `checkpoint` (a file, or the link `last.pt` to one): <stem>.manifest.json beside it."""
    real = checkpoint.resolve()
    return real.with_name(real.stem + SUFFIX)


def files_under(folder: Path, names: list[str]) -> list[str]:
    """`names` (files or folders relative to `folder`) expanded to every file they hold, sorted."""
    found = []
    for name in names:
        path = folder / name
        if path.is_dir():
            found += [str(p.relative_to(folder)) for p in sorted(path.rglob("*")) if p.is_file()]
        else:
            found.append(name)
    return found


def write_manifest(checkpoint: Path, parts: list[str], step: int) -> Path:
    """Hash `checkpoint` and its `parts` (files or folders beside it, e.g. a DCP folder) into its manifest,
    written to a temporary file, flushed and renamed: a manifest exists only once every file it lists does."""
    folder = checkpoint.parent
    names = [checkpoint.name, *files_under(folder, parts)]
    entries = {
        name: {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size} for name in names
    }
    manifest = manifest_of(checkpoint)
    tmp = manifest.with_name(f".{manifest.name}.tmp")
    try:
        with tmp.open("w") as f:
            json.dump(
                {"format": FORMAT, "checkpoint": checkpoint.name, "step": step, "files": entries}, f, indent=1
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, manifest)
    finally:
        tmp.unlink(missing_ok=True)
    return manifest


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one checkpoint against its manifest."""

    checkpoint: Path
    problem: str | None  # None: every listed file matches
    step: int | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


def check(checkpoint: Path) -> Verdict:
    """Compare every file the checkpoint's manifest lists with its recorded size and sha256."""
    manifest_path = manifest_of(checkpoint)
    manifest = read_manifest(manifest_path)
    if manifest is None:
        why = "unreadable" if manifest_path.exists() else "missing"
        return Verdict(checkpoint, f"its manifest {manifest_path.name} is {why}")
    folder = manifest_path.parent
    step = manifest.get("step")
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            return Verdict(checkpoint, f"{name} is missing", step)
        size, written = path.stat().st_size, int(entry.get("bytes", -1))
        if size != written:
            how = "empty" if size == 0 else "truncated" if size < written else "longer than written"
            return Verdict(checkpoint, f"{name} is {how} ({size:,} of {written:,} bytes)", step)
        if sha256_of(path) != entry.get("sha256"):
            return Verdict(checkpoint, f"{name} is altered (its sha256 is not the manifest's)", step)
    return Verdict(checkpoint, None, step)


def intact_alternatives(checkpoint: Path) -> list[Verdict]:
    """The other checkpoints kept beside `checkpoint` that match their manifests, newest first."""
    real = checkpoint.resolve()
    tag = real.stem.split("-step")[0]
    others = [p for p in real.parent.glob(f"{tag}-step*.pt") if p != real]
    verdicts = [check(p) for p in others]
    return sorted((v for v in verdicts if v.intact), key=lambda v: v.step or 0, reverse=True)


def verify(checkpoint: Path) -> Verdict:
    """The verdict of an intact checkpoint, or of one without a manifest (written before manifests
    existed, or copied alone: the caller decides whether to read it); CheckpointCorrupted otherwise,
    naming the file and the newest older checkpoint that is intact."""
    if not checkpoint.exists():
        raise TrainctlError(
            f"checkpoint not found: {checkpoint}", fix="train the run first or pick another run"
        )
    verdict = check(checkpoint.resolve())  # the file the link points at now: the one to read
    if verdict.intact or not manifest_of(checkpoint).exists():
        return verdict
    shown = (
        f"{checkpoint.name} -> {checkpoint.resolve().name}" if checkpoint.is_symlink() else checkpoint.name
    )
    intact = intact_alternatives(checkpoint)
    if intact:
        older = intact[0].checkpoint
        fix = (
            f"the checkpoint of step {intact[0].step} is intact: continue from it with "
            f"`trainctl train --resume {older}`, or read it with `trainctl eval {older}`"
        )
    else:
        fix = "no other checkpoint of this run is intact; copy the run again from its source, or train again"
    error = CheckpointCorrupted(
        f"checkpoint corrupted: {shown}: {verdict.problem}", where=str(checkpoint.parent), fix=fix
    )
    error.intact = intact[0].checkpoint if intact else None
    raise error
