"""The run lock: a live job holds its run dir (pid, host, start, heartbeat); other writers are refused."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from trainctl.errors import TrainctlError
from trainctl.runs.run_dir import RunDir

LOCK = "run.lock"
HEARTBEAT_EVERY_S = 30.0
STALE_AFTER_S = 600.0  # a lock from another host whose heartbeat is older than this is abandoned
TIME = "%Y-%m-%dT%H:%M:%S"


class RunLocked(TrainctlError):
    """Another live process holds the run (exit 2)."""


LAUNCHER_PID = "TRAINCTL_LAUNCHER_PID"  # set by the launching process for its workers


@dataclass(frozen=True)
class LockOwner:
    """Who holds a run: the process, its host, what it runs, since when, and its latest heartbeat."""

    pid: int
    host: str
    command: str
    started: str
    heartbeat: float  # seconds since the epoch
    job: str = ""  # the launcher's job id (torchrun's run id): its restarted workers take the lock over

    @classmethod
    def me(cls, job: str = "") -> LockOwner:
        return cls(
            os.getpid(),
            socket.gethostname(),
            " ".join(["trainctl", *sys.argv[1:]]),
            time.strftime(TIME),
            time.time(),
            job,
        )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (`{self.command}`, since {self.started.replace('T', ' ')})"

    def is_me_or_parent(self) -> bool:
        """Whether this process, or the trainctl process that launched it, holds the lock. Workers
        started from a forkserver are not the launcher's children: it names itself in LAUNCHER_PID."""
        launcher = int(os.environ.get(LAUNCHER_PID) or 0)
        return self.host == socket.gethostname() and self.pid in (os.getpid(), os.getppid(), launcher)

    def stale_because(self, now: float | None = None) -> str | None:
        """Why this owner is gone (its pid is dead here, or its host went silent), or None while alive."""
        now = time.time() if now is None else now
        if self.host == socket.gethostname():
            if pid_alive(self.pid):
                return None
            if job_processes(self.pid):  # its workers outlived it: they may still write
                return None
            return f"process {self.pid} is no longer running"
        silent = now - self.heartbeat
        if silent > STALE_AFTER_S:
            return f"no heartbeat from {self.host} for {silent / 60:.0f} min"
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def job_processes(launcher: int) -> list[int]:
    """This user's live processes that launcher `launcher` started (its pid is in their LAUNCHER_PID)."""
    mark = f"{LAUNCHER_PID}={launcher}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            variables = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or another user's
            continue
        if mark in variables:
            found.append(int(entry.name))
    return found


def remove_stale_temporaries(run: RunDir) -> list[str]:
    """Remove the temporaries (`.<name>.<pid>.tmp`, `.link`) that writers killed mid-write left in the run
    and its checkpoints; the run's lock is ours, so no live writer of it has any. Their names, relative to
    the run."""
    removed = []
    for folder in (run.path, run.path / "checkpoints"):
        for tmp in [*folder.glob(".*.tmp"), *folder.glob(".*.link")]:
            pid = tmp.name.rsplit(".", 2)[-2]
            if tmp.is_dir() or (pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid))):
                continue
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(str(tmp.relative_to(run.path)))
    return sorted(removed)


def lock_path(run: RunDir) -> Path:
    return run.path / LOCK


def read_owner(run: RunDir) -> LockOwner | None:
    """The owner recorded in the run's lock file, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(lock_path(run).read_text())
        return LockOwner(**data)
    except (OSError, ValueError, TypeError):
        return None


def live_owner(run: RunDir) -> LockOwner | None:
    """The process holding the run right now, or None (no lock, or a stale one)."""
    owner = read_owner(run)
    return owner if owner is not None and owner.stale_because() is None else None


@contextlib.contextmanager
def locked_file(path: Path, create: bool) -> Iterator[int | None]:
    """An exclusive flock on the lock file while it is read and replaced (None when it does not exist and
    `create` is false). A file replaced or removed while we waited is opened again."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield fd
                return
        finally:
            os.close(fd)


def write_owner(path: Path, owner: LockOwner) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(asdict(owner)) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class RunLock:
    """Held by the process that runs a job; a daemon thread refreshes its heartbeat until release."""

    def __init__(self, run: RunDir, owner: LockOwner, joined: bool) -> None:
        self.run = run
        self.owner = owner
        self.joined = joined  # the lock is our parent's (or already ours): we neither beat nor release it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, run: RunDir, *, job: str = "", note: Callable[[str], None] | None = None) -> RunLock:
        """Take the run's lock, join our parent's, or take over a stale one (saying so through `note`);
        RunLocked when a live process holds it."""
        path = lock_path(run)
        with locked_file(path, create=True) as fd:
            assert fd is not None
            current = read_owner(run) if os.fstat(fd).st_size else None
            if current is not None and current.is_me_or_parent():
                return cls(run, current, joined=True)
            if current is not None:
                why = current.stale_because()
                if why is None and not (job and current.job == job):
                    raise RunLocked(
                        f"the run is in use by {current.describe()}",
                        where=str(run.path),
                        fix="wait for it to end (`trainctl runs ls` shows it running), or stop that process; "
                        "to start from this run's config instead: "
                        f"trainctl train --config {run.config_file}",
                    )
                if note is not None:
                    reason = why or f"a restart of job {job}"
                    note(f"took over the lock of {current.describe()}: {reason}")
            owner = LockOwner.me(job)
            write_owner(path, owner)
        removed = remove_stale_temporaries(run)
        if removed and note is not None:
            note(f"removed {len(removed)} temporary file(s) that killed writers left: {', '.join(removed)}")
        lock = cls(run, owner, joined=False)
        lock._thread = threading.Thread(target=lock._beat, name="trainctl-run-lock", daemon=True)
        lock._thread.start()
        return lock

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            try:
                with locked_file(lock_path(self.run), create=False) as fd:
                    if fd is not None and read_owner(self.run) == self.owner:
                        self.owner = LockOwner(**(asdict(self.owner) | {"heartbeat": time.time()}))
                        write_owner(lock_path(self.run), self.owner)
            except OSError:  # a full or vanished disk: the next beat tries again
                continue

    def release(self) -> None:
        if self.joined:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError), locked_file(lock_path(self.run), create=False) as fd:
            current = read_owner(self.run)
            if (
                fd is not None
                and current is not None
                and (current.pid, current.host)
                == (
                    self.owner.pid,
                    self.owner.host,
                )
            ):
                lock_path(self.run).unlink()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def refuse_if_in_use(run: RunDir, doing: str) -> None:
    """For commands that must not read a run while it changes (compress): RunLocked if a live job holds it."""
    owner = live_owner(run)
    if owner is not None and not owner.is_me_or_parent():
        raise RunLocked(
            f"cannot {doing}: the run is in use by {owner.describe()}",
            where=str(run.path),
            fix="wait for it to end (`trainctl runs ls` shows it running), then run this again",
        )


def reading_note(run: RunDir) -> str | None:
    """What a reader (eval, predict, report) should say about a run that is running right now."""
    owner = live_owner(run)
    if owner is None or owner.is_me_or_parent():
        return None
    return f"{run.path} is still running ({owner.describe()}): reading its latest checkpoint and records"
