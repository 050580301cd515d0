"""Reading a DCP checkpoint's `.metadata` without running pickled code: an allow-list unpickler.

torch.distributed.checkpoint's FileSystemReader unpickles `.metadata` with plain `pickle.load`, so a
tampered file runs whatever it names. trainctl verifies the file's sha256 against the checkpoint's
manifest first; this reader is the second guard: it builds only the classes DCP metadata is made of.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from trainctl.errors import TrainctlError

ALLOWED_MODULES = ("torch.distributed.checkpoint.",)  # the metadata's own dataclasses
ALLOWED = {
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
}


class MetadataUnpickler(pickle.Unpickler):
    """Builds DCP metadata classes, torch dtypes, sizes and paths; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED or module.startswith(ALLOWED_MODULES):
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype | torch.memory_format):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not part of DCP metadata")


class SafeMetadataReader(FileSystemReader):
    """A FileSystemReader whose `.metadata` is read with MetadataUnpickler."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as stream:
            try:
                metadata = MetadataUnpickler(stream).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
                raise TrainctlError(
                    f"refusing to read the DCP metadata: {exc}", where=str(path), fix="use another checkpoint"
                ) from None
        if not isinstance(metadata, Metadata):
            raise TrainctlError("not DCP metadata", where=str(path))
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def load_sharded(state: dict[str, Any], folder: Path) -> None:
    """dcp.load of `state` in place from `folder`, its metadata read by SafeMetadataReader. The metadata is
    read once before: DCP turns a reader's errors into text inside its own exception, and a refusal is
    shown as itself (exit 2, one screen)."""
    reader = SafeMetadataReader(folder)
    reader.read_metadata()
    dcp.load(state, storage_reader=reader)
