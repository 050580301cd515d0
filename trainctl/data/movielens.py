"""MovieLens archives from GroupLens: downloaded with a checksum and unpacked when their folder is missing."""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

from trainctl.data.download import ensure_files
from trainctl.errors import TrainctlError

MIRRORS = ["https://files.grouplens.org/datasets/movielens/"]

# archive folder -> md5 of <folder>.zip; None: the archive is republished now and then, so its md5 is
# read from the <folder>.zip.md5 file that GroupLens publishes beside it
ARCHIVES: dict[str, str | None] = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-latest-small": None,
}


def is_archive_folder(folder: Path) -> bool:
    return folder.name in ARCHIVES


def ensure_movielens(folder: Path, mirrors: Sequence[str], download: bool) -> None:
    """Download <folder>.zip into folder's parent, check its md5, and unpack it as `folder`."""
    name, root = folder.name, folder.parent
    zip_name = f"{name}.zip"
    md5 = ARCHIVES[name]
    if md5 is None:
        md5 = published_md5(zip_name, root, mirrors, download)
    paths = ensure_files(f"MovieLens {name}", root, {zip_name: md5}, mirrors, download)
    unpack(paths[zip_name], folder)


def published_md5(zip_name: str, root: Path, mirrors: Sequence[str], download: bool) -> str:
    """The md5 that the mirror publishes for `zip_name` ("MD5 (name) = hex" or "hex  name")."""
    sidecar = f"{zip_name}.md5"
    path = ensure_files(f"MovieLens {zip_name}", root, {sidecar: None}, mirrors, download)[sidecar]
    match = re.search(r"\b([0-9a-fA-F]{32})\b", path.read_text(errors="replace"))
    if match is None:
        path.unlink(missing_ok=True)
        raise TrainctlError(f"no md5 in {sidecar}", where=str(path), fix="delete it and try again")
    return match.group(1).lower()


def unpack(archive: Path, folder: Path) -> None:
    """Extract the archive's `<folder.name>/` files into `folder` (each file appears whole), refusing
    paths that would land outside it."""
    staging = folder.parent / f".{folder.name}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (staging / member).resolve()
                if not target.is_relative_to(staging.resolve()):
                    raise TrainctlError(f"unsafe path in the archive: {member}", where=str(archive))
            zf.extractall(staging)
    except zipfile.BadZipFile as exc:
        raise TrainctlError(
            f"not a zip archive: {exc}", where=str(archive), fix="delete it so that it is downloaded again"
        ) from None
    inner = staging / folder.name
    if not inner.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        raise TrainctlError(f"the archive has no {folder.name}/ folder", where=str(archive))
    if not folder.exists():
        os.replace(inner, folder)
    else:  # keep what the folder already holds; add the archive's other files
        for path in inner.iterdir():
            if not (folder / path.name).exists():
                os.replace(path, folder / path.name)
    shutil.rmtree(staging, ignore_errors=True)
