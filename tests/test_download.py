"""Downloads against a local file server: progress in a pipe, and a failed download (missing file, bad
file, no network) leaves no partial file and no empty folder behind."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainctl.data.download import DownloadFailed, ensure_files, fetch
from trainctl.errors import TrainctlError
from trainctl.observe import ticker

BLOCK = 64 * 1024


class SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from a folder; `slow.bin` comes in 64 kB blocks, 0.1 s apart."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self.path.endswith("/slow.bin"):
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Length", str(4 * BLOCK))
        self.end_headers()
        for _ in range(4):
            self.wfile.write(b"x" * BLOCK)
            self.wfile.flush()
            time.sleep(0.1)
        return None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "good.bin").write_bytes(b"good bytes")
    (folder / "bad.bin").write_bytes(b"not what the checksum says")
    handler = functools.partial(SlowHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    server.shutdown()


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_a_download_reports_progress_in_a_pipe_and_lands_whole(
    served: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = served
    monkeypatch.setattr(ticker, "TICK_EVERY_S", 0.05)
    path = fetch("slow.bin", [url], tmp_path / "new" / "data", md5_of(b"x" * 4 * BLOCK))
    assert path.read_bytes() == b"x" * 4 * BLOCK
    err = capsys.readouterr().err
    assert f"downloading {url}slow.bin ..." in err
    assert f"downloading {url}slow.bin: " in err and "of 262.1 kB (" in err and "ETA" in err
    assert f"downloading {url}slow.bin: done in 0:00:0" in err
    assert not list(path.parent.glob(".*.part"))


def test_a_missing_file_leaves_no_empty_folders(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    with pytest.raises(DownloadFailed, match="absent.bin: File not found"):
        fetch("absent.bin", [url], tmp_path / "new" / "data" / "mnist", None)
    assert not (tmp_path / "new").exists()


def test_a_bad_file_leaves_no_partial_file_and_no_empty_folders(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = served
    with pytest.raises(DownloadFailed, match="checksum mismatch"):
        fetch("bad.bin", [url], tmp_path / "new" / "data", md5_of(b"the real bytes"))
    assert not (tmp_path / "new").exists()


def test_a_folder_that_was_there_stays_and_so_do_files_already_fetched(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = served
    root = tmp_path / "data"
    root.mkdir()
    files = {"good.bin": md5_of(b"good bytes"), "absent.bin": None}
    with pytest.raises(TrainctlError, match="could not be downloaded"):
        ensure_files("Example", root / "example", files, [url], download=True)
    assert (root / "example" / "good.bin").read_bytes() == b"good bytes"  # its folder held a file: kept
    assert not list((root / "example").glob(".*"))


def test_offline_the_message_names_the_files_the_folder_and_the_option(tmp_path: Path) -> None:
    folder = tmp_path / "cache" / "trainctl" / "data" / "mnist"
    with pytest.raises(TrainctlError) as info:
        ensure_files("MNIST", folder, {"train.gz": None}, ["http://127.0.0.1:9/"], download=True)
    message = str(info.value)
    assert "MNIST files are missing and could not be downloaded (no network?): train.gz" in message
    assert "http://127.0.0.1:9/train.gz" in message and "data.root" in message
    assert info.value.where == str(folder)
    assert not (tmp_path / "cache").exists()
