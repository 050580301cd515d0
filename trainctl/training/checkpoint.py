"""Checkpoint files: written atomically with a manifest, the last K kept, verified before any load; and
the RNG state that makes resuming exact.

A checkpoint `<tag>` at optimizer step N is the file checkpoints/<tag>-step<N>.pt (plus the folders its
strategy wrote beside it, e.g. a DCP folder), its manifest <tag>-step<N>.manifest.json (the sha256 of
each of those files, written after them) and the link <tag>.pt, moved to it last. Loading verifies the
manifest before torch reads a byte.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from trainctl.errors import TrainctlError
from trainctl.runs.disk import write_atomic
from trainctl.runs.manifest import manifest_of, read_manifest, verify, write_manifest

FORMAT = 1


def step_of(path: Path) -> int:
    """N of a file named <tag>-step<N>.pt (or its manifest)."""
    try:
        return int(path.name.split("-step")[1].split(".")[0])
    except (IndexError, ValueError):
        return -1


def save_checkpoint(
    state: dict[str, Any], folder: Path, tag: str, step: int, *, parts: Sequence[str] = (), keep: int = 1
) -> Path:
    """Write <tag>-step<step>.pt, its manifest (covering `parts`: files or folders beside it that belong
    to the checkpoint), point <tag>.pt at it, and keep it and the `keep` - 1 newest older ones."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    name = f"{tag}-step{step}.pt"
    write_atomic(folder / name, buffer.getvalue())
    write_manifest(folder / name, list(parts), step)
    point_link(folder / f"{tag}.pt", name)
    prune(folder, tag, keep, current=name)
    return folder / f"{tag}.pt"


def point_link(link: Path, target: str) -> None:
    """Make `link` a relative symbolic link to `target` (a name in the same folder), replaced atomically."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(target)
        os.replace(tmp, link)
    finally:
        tmp.unlink(missing_ok=True)


def prune(folder: Path, tag: str, keep: int, current: str) -> None:
    """Delete the checkpoints of `tag` beyond the `keep` newest (`current` counts as the newest; those
    of later steps belong to a timeline a resume from an older checkpoint left), with their parts."""
    step = step_of(folder / current)
    older = sorted(
        (p for p in folder.glob(f"{tag}-step*.pt") if p.name != current and 0 <= step_of(p) < step),
        key=step_of,
        reverse=True,
    )
    later = [p for p in folder.glob(f"{tag}-step*.pt") if step_of(p) > step]
    kept = {current, *(p.name for p in older[: keep - 1])}
    for path in [*older[keep - 1 :], *later]:
        remove_checkpoint(path, kept_parts=parts_of_kept(folder, kept))


def parts_of_kept(folder: Path, kept: set[str]) -> set[str]:
    """Top-level names (files, folders) that the manifests of the kept checkpoints list."""
    names: set[str] = set()
    for name in kept:
        manifest = read_manifest(manifest_of(folder / name)) or {}
        names |= {entry.split("/")[0] for entry in manifest.get("files", {})}
    return names


def remove_checkpoint(path: Path, kept_parts: set[str]) -> None:
    """Delete a checkpoint file, what its manifest lists beside it (unless a kept one lists it too), then
    the manifest."""
    manifest_path = manifest_of(path)
    manifest = read_manifest(manifest_path) or {}
    tops = {entry.split("/")[0] for entry in manifest.get("files", {})} - {path.name} - kept_parts
    path.unlink(missing_ok=True)
    for top in tops:
        target = path.parent / top
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
    manifest_path.unlink(missing_ok=True)


def load_checkpoint(path: Path, *, note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A checkpoint written by trainctl, verified against its manifest first (tensors and plain data
    only: no pickled code runs). One without a manifest (written before manifests, or copied alone) is
    read with a note saying so (through `note`, default stderr)."""
    verdict = verify(path)
    if not verdict.intact:
        (note or print_note)(f"{path} is not verified: {verdict.problem}")
    try:
        with warnings.catch_warnings():  # torch's own loader of int8 (quantized) tensors still warns
            warnings.filterwarnings("ignore", message=r".*TypedStorage is deprecated.*")
            state = torch.load(verdict.checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        size = path.stat().st_size if path.exists() else 0
        raise TrainctlError(
            f"cannot read checkpoint ({'an empty file' if size == 0 else f'{size:,} bytes'}): "
            f"{unreadable_because(verdict.checkpoint, exc)}",
            where=str(path),
            fix="it is truncated or not a trainctl checkpoint; use another checkpoint of the run",
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainctlError("not a trainctl checkpoint", where=str(path))
    if state.get("sharded") and not verdict.intact:  # sharded state is read only through a manifest
        raise TrainctlError(
            f"the sharded state {state['sharded']} of this checkpoint has no manifest to verify it against",
            where=str(path),
            fix="read the checkpoint's full model with `trainctl eval`; resume from a verified checkpoint",
        )
    return state


def unreadable_because(path: Path, exc: Exception) -> str:
    """Why torch.load could not read `path`, in words that fit a checkpoint file (never torch's advice to
    load it with weights_only=False, which would run the code a file may hold)."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as error:
        return str(error)
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        return "not a PyTorch checkpoint (torch.save writes zip archives; this file is none: text or damaged)"
    if "Weights only load failed" in str(exc):
        return "it holds pickled objects other than tensors and plain data; trainctl runs no code from a file"
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return f"the archive is damaged ({first.split('. ')[0]})"


def print_note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
