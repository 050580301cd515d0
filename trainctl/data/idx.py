"""Read gzipped IDX files (the MNIST format) into numpy arrays, naming every way a file can be bad."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from trainctl.errors import TrainctlError

MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension, images: 3 dimensions (unsigned bytes)


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not), checked against its header."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise TrainctlError(
            f"corrupt or truncated gzip file ({exc})",
            where=str(path),
            fix="delete it and let trainctl download it again, or copy it anew",
        ) from None
    if len(data) < 8:
        raise TrainctlError(f"IDX file too short ({len(data)} bytes) for a header", where=str(path))
    (magic,) = struct.unpack(">i", data[:4])
    if magic != expected_magic:
        kind = {2049: "labels", 2051: "images"}[expected_magic]
        raise TrainctlError(
            f"wrong IDX magic number {magic} (expected {expected_magic} for {kind})",
            where=str(path),
            fix="check that the file is the right one of the four",
        )
    ndim = MAGIC[magic]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise TrainctlError("IDX header is truncated", where=str(path))
    shape = struct.unpack(f">{ndim}i", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise TrainctlError(
            f"IDX header promises {expected} bytes of data for shape {tuple(shape)} "
            f"but the file holds {len(data) - header}",
            where=str(path),
            fix="the file is truncated or padded; copy or download it again",
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def check_idx_length(path: Path, expected_magic: int) -> None:
    """Cheaply check that an IDX file is whole, without decompressing it: the length its header promises
    against the length a gzip file's trailer records (or the file's own size). Content errors are found
    when read_idx reads it."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            head = f.read(4 + 4 * MAGIC.get(expected_magic, 1))
    except (OSError, EOFError, zlib.error) as exc:
        raise TrainctlError(
            f"corrupt or truncated gzip file ({exc})",
            where=str(path),
            fix="delete it and let trainctl download it again, or copy it anew",
        ) from None
    if len(head) < 4 + 4 * MAGIC[expected_magic]:
        return  # read_idx names what is wrong with a file this short
    shape = struct.unpack(f">{MAGIC[expected_magic]}i", head[4:])
    promised = len(head) + int(np.prod(shape))
    if path.suffix == ".gz":
        with path.open("rb") as raw:
            raw.seek(-4, 2)
            (recorded,) = struct.unpack("<I", raw.read(4))  # ISIZE: the length mod 2**32
        whole = recorded == promised % 2**32
    else:
        whole = path.stat().st_size == promised
    if not whole:
        raise TrainctlError(
            f"corrupt or truncated file: its header promises {promised:,} bytes of IDX data, and the file "
            "does not end where that data would",
            where=str(path),
            fix="delete it and let trainctl download it again, or copy it anew",
        )
