"""Content identity of data files and folders: sha256, cached by path, size and mtime so that a second run
rehashes nothing; a large folder is identified by its whole listing plus the contents of a stated sample."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainctl.runs.manifest import sha256_of

FOLDER_FILES_LIMIT = 2000  # a folder with more files than this is sampled ...
FOLDER_BYTES_LIMIT = 256 << 20  # ... and so is one holding more bytes than this
FOLDER_SAMPLE = 64  # files whose content a sampled folder's fingerprint hashes


def cache_file() -> Path:
    """Where file hashes are cached: $TRAINCTL_CACHE_DIR, else ~/.cache/trainctl/cache."""
    root = os.environ.get("TRAINCTL_CACHE_DIR") or "~/.cache/trainctl/cache"
    return Path(root).expanduser() / "file-hashes.sqlite"


class HashCache:
    """sha256 of files keyed by (absolute path, size, mtime in ns), in one SQLite file shared by every run
    (a cache that cannot be opened or written only costs rehashing)."""

    def __init__(self, path: Path | None = None) -> None:
        self.db: sqlite3.Connection | None = None
        self.memory: dict[tuple[str, int, int], str] = {}
        with contextlib.suppress(OSError, sqlite3.Error):
            path = path or cache_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=5)
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                " sha256 TEXT)"
            )

    def sha256(self, path: Path, stat: os.stat_result | None = None) -> str:
        stat = stat or path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key in self.memory:
            return self.memory[key]
        found = self.lookup(key)
        if found is None:
            found = sha256_of(path)
            self.store(key, found)
        self.memory[key] = found
        return found

    def lookup(self, key: tuple[str, int, int]) -> str | None:
        if self.db is None:
            return None
        try:
            row = self.db.execute(
                "SELECT size, mtime_ns, sha256 FROM hashes WHERE path = ?", (key[0],)
            ).fetchone()
        except sqlite3.Error:
            return None
        return str(row[2]) if row is not None and (row[0], row[1]) == key[1:] else None

    def store(self, key: tuple[str, int, int], sha: str) -> None:
        if self.db is None:
            return
        with contextlib.suppress(sqlite3.Error), self.db:
            self.db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)", (*key, sha))

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def folder_files(folder: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every file below `folder` (links followed, hidden files skipped) with its stat, by relative path."""
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(top) / name
            with contextlib.suppress(OSError):
                yield path.relative_to(folder).as_posix(), path.stat()


def fingerprint(path: Path, cache: HashCache) -> dict[str, Any]:
    """What identifies `path`: a file's size and sha256; a folder's listing (names and sizes, all of
    them) and the sha256 of every file, or of a stated sample when it is large (with the reason)."""
    if path.is_file():
        stat = path.stat()
        return {"path": str(path), "kind": "file", "size": stat.st_size, "sha256": cache.sha256(path, stat)}
    if not path.is_dir():
        return {"path": str(path), "kind": "missing"}
    listing = sorted(folder_files(path))
    total = sum(stat.st_size for _, stat in listing)
    names = hashlib.sha256("".join(f"{rel}\t{stat.st_size}\n" for rel, stat in listing).encode())
    complete = len(listing) <= FOLDER_FILES_LIMIT and total <= FOLDER_BYTES_LIMIT
    every = 1 if complete else max(1, -(-len(listing) // FOLDER_SAMPLE))
    hashed = listing[::every]
    entries = {rel: {"size": stat.st_size, "sha256": cache.sha256(path / rel, stat)} for rel, stat in hashed}
    content = hashlib.sha256("".join(f"{rel}\t{e['sha256']}\n" for rel, e in entries.items()).encode())
    record: dict[str, Any] = {
        "path": str(path),
        "kind": "folder",
        "files": len(listing),
        "size": total,
        "listing_sha256": names.hexdigest(),
        "content_sha256": content.hexdigest(),
        "complete": complete,
        "entries": entries,
    }
    if not complete:
        record["reason"] = (
            f"partial: {len(listing):,} files, {total / 2**20:,.0f} MiB "
            f"(over {FOLDER_FILES_LIMIT:,} files or "
            f"{FOLDER_BYTES_LIMIT >> 20} MiB); contents of {len(hashed)} files hashed (every {every}th by "
            "name), names and sizes of all"
        )
    return record


def readable_fingerprint(path: Path, cache: HashCache) -> dict[str, Any]:
    """The fingerprint, or what stopped it (an unreadable file must not stop the run it describes)."""
    try:
        return fingerprint(path, cache)
    except OSError as exc:
        return {"path": str(path), "kind": "unreadable", "error": str(exc)}


def fingerprints(paths: list[Path]) -> list[dict[str, Any]]:
    """The fingerprint of each path, through the shared cache."""
    cache = HashCache()
    try:
        return [readable_fingerprint(path, cache) for path in paths]
    finally:
        cache.close()
