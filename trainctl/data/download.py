"""Fetch data files from mirrors with progress and a checksum, or explain what is missing."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from trainctl.errors import TrainctlError

CHUNK = 1 << 16


class DownloadFailed(Exception):
    """Every mirror failed for one file; carries the reason of each attempt."""


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_if_empty(folders: list[Path]) -> None:
    """Take back folders made for a download that failed (deepest first), leaving any that hold files."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def fetch(name: str, mirrors: Sequence[str], dest_dir: Path, md5: str | None, timeout: float = 30.0) -> Path:
    """Download `name` from the first mirror that serves it with the right checksum, reporting progress
    at least every 10 s; when every mirror fails, nothing is left behind (no partial file, no new folder)."""
    from trainctl.observe.ticker import Ticker

    made = missing_folders(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / name
    partial = dest_dir / f".{name}.part"
    reasons = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with Ticker(f"downloading {url}", total=total, unit="bytes") as ticker:
                    for block in iter(lambda r=response: r.read(CHUNK), b""):
                        out.write(block)
                        ticker.advance(len(block))
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reasons.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        got = md5sum(partial)
        if md5 is not None and got != md5:
            reasons.append(f"{url}: checksum mismatch (md5 {got}, expected {md5})")
            continue
        os.replace(partial, target)
        return target
    partial.unlink(missing_ok=True)
    remove_if_empty(made)
    raise DownloadFailed("; ".join(reasons) or "no mirrors configured")


def ensure_files(
    dataset: str, folder: Path, files: dict[str, str | None], mirrors: Sequence[str], download: bool
) -> dict[str, Path]:
    """Paths of `files` in `folder`, downloading the missing ones; a TrainctlError when that fails."""
    missing = [name for name in files if not (folder / name).is_file()]
    fix = (
        f"put {', '.join(files)} in {folder}, or point data.root=PATH (or $TRAINCTL_DATA_DIR) "
        f"at a folder that holds {folder.name}/"
    )
    if missing and not download:
        raise TrainctlError(
            f"{dataset} files are missing: {', '.join(missing)}",
            where=str(folder),
            fix=fix + "; or set data.download=true",
        )
    for name in missing:
        try:
            fetch(name, mirrors, folder, files[name])
        except DownloadFailed as exc:
            raise TrainctlError(
                f"{dataset} files are missing and could not be downloaded "
                f"(no network?): {', '.join(missing)}\n  tried: {exc}",
                where=str(folder),
                fix=fix,
            ) from None
    return {name: folder / name for name in files}
