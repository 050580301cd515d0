"""Writing run files safely: atomic replacement that leaves no temporary file, and what a full or
read-only disk means to a user (a DiskError, exit 2, instead of a traceback)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from trainctl.errors import TrainctlError

NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


class DiskError(TrainctlError):
    """A file could not be written: the disk (or a quota, or a file-size limit) is full, or read-only."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None, full: bool) -> None:
        super().__init__(what, where=where, fix=fix)
        self.status = "disk full" if full else "failed"


def disk_error(exc: BaseException) -> DiskError | None:
    """The user's view of an OSError from writing a file, or None when it is not about the disk."""
    if not isinstance(exc, OSError) or exc.errno not in NO_SPACE | NOT_WRITABLE:
        return None
    where = str(exc.filename) if exc.filename else None
    name = Path(where).name if where else "a file"
    reason = os.strerror(exc.errno or 0)
    if exc.errno in NO_SPACE:
        return DiskError(
            f"disk full: cannot write {name} ({reason}: the disk, a quota or a file-size limit is full)",
            where=where,
            fix="free space (or raise the quota or limit), then continue with `trainctl train --resume RUN`: "
            "the last complete checkpoint is kept",
            full=True,
        )
    return DiskError(
        f"cannot write {name}: {reason.lower()} (a read-only or protected folder)",
        where=where,
        fix="make the folder writable, or write runs elsewhere with run.root=DIR or $TRAINCTL_RUNS_DIR",
        full=False,
    )


@contextlib.contextmanager
def disk_errors() -> Iterator[None]:
    """Turn OSErrors about a full or read-only disk raised inside into DiskErrors."""
    try:
        yield
    except OSError as exc:
        error = disk_error(exc)
        if error is None:
            raise
        raise error from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, flush it to disk, then rename it over `path`; the
    temporary file never outlives a failure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)
