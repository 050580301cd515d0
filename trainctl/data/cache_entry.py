"""Cache entries written whole or not at all: filled in a temporary folder, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def new_entry(folder: Path) -> Iterator[Path]:
    """A fresh temporary folder beside `folder` to fill. When the block ends without an error it is
    renamed to `folder`, unless another process (a rank, a sweep's job) published `folder` first: then
    that entry stays. On an error, or after the rename failed that way, nothing of ours is left."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # a killed process's leftover under a reused pid
    tmp.mkdir(parents=True)
    try:
        yield tmp
        try:
            os.replace(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
