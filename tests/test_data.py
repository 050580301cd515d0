"""Data: IDX parsing and its named errors, MNIST download against a local server, batch loading."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import write_idx
from trainctl.config.compose import compose
from trainctl.data import load_dataset, prepare_dataset
from trainctl.data.idx import read_idx
from trainctl.data.loader import BatchLoader
from trainctl.data.sets import mnist
from trainctl.data.types import Split
from trainctl.errors import TrainctlError


@pytest.fixture
def file_server(tiny_mnist: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving the tiny MNIST files."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tiny_mnist / "mnist"))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def mnist_config(root: Path, *extra: str):
    return compose(["conf=mlp_mnist", f"data.root={root}", *extra]).config.data


def test_reads_official_format_files(tiny_mnist: Path) -> None:
    bundle = load_dataset(mnist_config(tiny_mnist))
    assert bundle.train.inputs.shape == (64, 1, 28, 28) and bundle.test.inputs.shape == (32, 1, 28, 28)
    assert bundle.train.targets.dtype == torch.int64


def test_reads_the_shared_mnist(shared_data: Path) -> None:
    bundle = load_dataset(mnist_config(shared_data))
    assert len(bundle.train) == 8000 and len(bundle.test) == 1000
    assert set(bundle.train.targets.unique().tolist()) == set(range(10))


def test_truncated_gzip_is_a_named_error(tiny_mnist: Path) -> None:
    path = tiny_mnist / "mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(TrainctlError, match="truncated gzip") as info:
        load_dataset(mnist_config(tiny_mnist))
    assert info.value.where == str(path)


def test_wrong_magic_is_a_named_error(tiny_mnist: Path) -> None:
    write_idx(tiny_mnist / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(64), 2051)
    with pytest.raises(TrainctlError, match="wrong IDX magic number 2051"):
        load_dataset(mnist_config(tiny_mnist))


def test_count_mismatch_is_a_named_error(tiny_mnist: Path) -> None:
    write_idx(tiny_mnist / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(60), 2049)
    with pytest.raises(TrainctlError, match="64 images but 60 labels"):
        load_dataset(mnist_config(tiny_mnist))


def test_header_promising_more_data_than_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 100)
    with pytest.raises(TrainctlError, match="promises 7840 bytes"):
        read_idx(path, 2051)


def test_downloads_missing_files_with_checksums(
    file_server: str, tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tiny_mnist / "mnist"
    sums = {name: hashlib.md5((served / name).read_bytes()).hexdigest() for name in mnist.FILES}
    monkeypatch.setattr(mnist, "FILES", sums)
    root = tmp_path / "empty"
    cfg = mnist_config(root, f"data.mirrors=[http://127.0.0.1:9/,{file_server}]")
    bundle = load_dataset(cfg)
    assert len(bundle.train) == 64
    for name in sums:
        assert (root / "mnist" / name).read_bytes() == (served / name).read_bytes()
    assert not list((root / "mnist").glob(".*.part"))


def test_checksum_mismatch_is_refused(file_server: str, tmp_path: Path) -> None:
    cfg = mnist_config(tmp_path / "empty", f"data.mirrors=[{file_server}]")
    with pytest.raises(TrainctlError, match="checksum mismatch"):
        load_dataset(cfg)
    assert not (tmp_path / "empty" / "mnist" / "train-images-idx3-ubyte.gz").exists()


def test_offline_failure_names_folder_files_and_option(tmp_path: Path) -> None:
    cfg = mnist_config(tmp_path / "nothing", "data.mirrors=[http://127.0.0.1:9/]")
    with pytest.raises(TrainctlError) as info:
        load_dataset(cfg)
    message = str(info.value)
    assert "could not be downloaded" in message and "train-images-idx3-ubyte.gz" in message
    assert str(tmp_path / "nothing" / "mnist") in message and "data.root" in message


def test_no_download_when_disabled(tmp_path: Path) -> None:
    with pytest.raises(TrainctlError, match="files are missing"):
        load_dataset(mnist_config(tmp_path, "data.download=false"))


def test_loader_covers_every_sample_once_per_epoch_in_a_seeded_order() -> None:
    split = Split(torch.arange(103).float().unsqueeze(1), torch.arange(103))
    loader = BatchLoader(split, 10, shuffle=True, seed=3)
    seen = torch.cat([y for _, _, y, _ in loader.epoch(0)])
    assert len(loader) == 11 and sorted(seen.tolist()) == list(range(103))
    again = torch.cat([y for _, _, y, _ in BatchLoader(split, 10, shuffle=True, seed=3).epoch(0)])
    assert torch.equal(seen, again)
    assert not torch.equal(seen, torch.cat([y for _, _, y, _ in loader.epoch(1)]))
    tail = [y for _, _, y, _ in loader.epoch(0, start=9)]
    assert torch.equal(torch.cat(tail), seen[90:])


def test_ranks_split_each_global_batch() -> None:
    split = Split(torch.zeros(40, 1), torch.arange(40))
    whole = [y for _, _, y, _ in BatchLoader(split, 8, shuffle=True, seed=1).epoch(2)]
    parts = [
        [y for _, _, y, _ in BatchLoader(split, 8, shuffle=True, seed=1, rank=r, world_size=2).epoch(2)]
        for r in range(2)
    ]
    for step, batch in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][step], parts[1][step]]), batch)


def test_digits_and_linreg_need_no_files() -> None:
    cfg = compose(["data.test_fraction=0.3"]).config.data
    digits = load_dataset(cfg)
    assert len(digits.train) + len(digits.test) == 1797
    sizes = prepare_dataset(cfg)  # what the planner sees, without loading the images
    assert (sizes.train_samples, sizes.test_samples) == (len(digits.train), len(digits.test))
    assert sizes.spec == digits.spec
    linreg = load_dataset(compose(["conf=linreg"]).config.data)
    assert len(linreg.train) == 10_000 and linreg.train.inputs.shape == (10_000, 1)
