"""Checkpoint files: atomic writes, safe loads, and the RNG state that makes resuming exact."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import torch

from trainctl.errors import TrainctlError

FORMAT = 1


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write `state` to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by trainctl (tensors and plain data only: no pickled code runs)."""
    if not path.is_file():
        raise TrainctlError(f"checkpoint not found: {path}", fix="train the run first or pick another run")
    try:
        with warnings.catch_warnings():  # torch's own loader of int8 (quantized) tensors still warns
            warnings.filterwarnings("ignore", message=r".*TypedStorage is deprecated.*")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise TrainctlError(f"cannot read checkpoint: {str(exc).splitlines()[0]}", where=str(path)) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainctlError("not a trainctl checkpoint", where=str(path))
    return state


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
