"""Vision: CIFAR ResNets, the CIFAR-10 reader and download, batch augmentation, the resnet_cifar preset."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import pickle
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from trainctl.cli.app import app
from trainctl.cli.train import train
from trainctl.config.compose import compose
from trainctl.data import load_dataset
from trainctl.data.augment import ImageAugment, ViewAveraged, translate
from trainctl.data.sets import cifar10
from trainctl.data.types import DataSpec, Task
from trainctl.errors import TrainctlError
from trainctl.models import build_model

runner = CliRunner()
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def tiny_images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Noise images whose class shows as a brighter red/green/blue plane: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 120, (n, 3, 32, 32))
    for i, label in enumerate(labels):
        images[i, label % 3] += 40 + 12 * label
    return images.reshape(n, -1).astype(np.uint8), labels.tolist()


def batch_bytes(data: np.ndarray, labels: list[int]) -> bytes:
    return pickle.dumps({b"batch_label": b"x", b"labels": labels, b"data": data, b"filenames": []})


def write_cifar(folder: Path, train_sizes: tuple[int, ...] = (70, 50, 40), test_size: int = 60) -> Path:
    """The official layout with however many images per batch."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(train_sizes, start=1):
        (folder / f"data_batch_{i}").write_bytes(batch_bytes(*tiny_images(n, i)))
    (folder / "test_batch").write_bytes(batch_bytes(*tiny_images(test_size, 99)))
    meta = {b"label_names": [n.encode() for n in NAMES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder


@pytest.fixture
def tiny_cifar(tmp_path: Path) -> Path:
    """A data root holding cifar-10-batches-py/."""
    write_cifar(tmp_path / "data" / cifar10.FOLDER)
    return tmp_path / "data"


def make_archive(root: Path, dest: Path) -> Path:
    archive = dest / cifar10.ARCHIVE
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / cifar10.FOLDER, arcname=cifar10.FOLDER)
    return archive


def cifar_data(root: Path, *extra: str):
    return load_dataset(compose(["conf=resnet_cifar", f"data.root={root}", *extra]).config.data)


# ------------------------------------------------------------------ models
@pytest.mark.parametrize(
    ("name", "params"), [("resnet20", 269_722), ("resnet32", 464_154), ("resnet56", 853_018)]
)
def test_cifar_resnets_have_the_papers_parameter_counts(name: str, params: int) -> None:
    spec = DataSpec((3, 32, 32), 10, Task.classification)
    model = build_model(compose([f"model={name}"]).config.model, spec)
    assert sum(p.numel() for p in model.parameters()) == params  # 0.27M / 0.46M / 0.85M in the paper
    depth = int(name[6:])
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == depth and len(model.blocks()) == (depth - 2) // 2
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet18_has_a_3x3_stem_and_channels_last_gives_the_same_outputs() -> None:
    spec = DataSpec((3, 32, 32), 10, Task.classification)
    torch.manual_seed(0)
    plain = build_model(compose(["model=resnet18"]).config.model, spec).eval()
    torch.manual_seed(0)
    nhwc = build_model(compose(["model=resnet18", "model.channels_last=true"]).config.model, spec).eval()
    assert plain.stem[0].kernel_size == (3, 3) and plain.stem[0].stride == (1, 1)
    assert 11_000_000 < sum(p.numel() for p in plain.parameters()) < 11_300_000
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(plain(x), nhwc(x), rtol=1e-4, atol=1e-4)
    assert nhwc.stem[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_an_image_batch_of_the_wrong_shape_is_a_named_error() -> None:
    model = build_model(
        compose(["model=resnet20"]).config.model, DataSpec((3, 32, 32), 10, Task.classification)
    )
    with pytest.raises(
        TrainctlError, match=r"expects image batches shaped \(N, 3, H, W\), got \(4, 1, 32, 32\)"
    ):
        model(torch.randn(4, 1, 32, 32))
    with pytest.raises(TrainctlError, match="needs images shaped"):
        build_model(compose(["model=resnet20"]).config.model, DataSpec((64,), 2, Task.classification))


# ------------------------------------------------------------------ CIFAR-10 files
def test_reads_batches_of_any_size_with_class_names_and_train_statistics(tiny_cifar: Path) -> None:
    data = cifar_data(tiny_cifar)
    assert data.train.inputs.shape == (160, 3, 32, 32) and data.test.inputs.shape == (60, 3, 32, 32)
    assert data.class_names == NAMES
    mean = data.train.inputs.mean(dim=(0, 2, 3))
    std = data.train.inputs.std(dim=(0, 2, 3))
    torch.testing.assert_close(mean, torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(std, torch.ones(3), atol=1e-4, rtol=0)
    expected = torch.tensor(tiny_images(70, 1)[1] + tiny_images(50, 2)[1] + tiny_images(40, 3)[1])
    assert torch.equal(data.train.targets, expected)


def test_reads_the_official_archive(tiny_cifar: Path, tmp_path: Path) -> None:
    make_archive(tiny_cifar, tmp_path / "archive_root")
    from_tar = cifar_data(tmp_path / "archive_root", "data.download=false")
    from_folder = cifar_data(tiny_cifar)
    assert torch.equal(from_tar.train.inputs, from_folder.train.inputs)
    assert from_tar.class_names == NAMES


def test_reads_the_shared_cifar10(shared_data: Path) -> None:
    data = cifar_data(shared_data)
    assert len(data.train) == 10_000 and len(data.test) == 5_000
    assert data.train.targets.bincount().tolist() == [1000] * 10


def test_wrong_shape_batch_names_the_file_and_key(tiny_cifar: Path) -> None:
    bad = tiny_cifar / cifar10.FOLDER / "data_batch_2"
    bad.write_bytes(batch_bytes(np.zeros((5, 1024), dtype=np.uint8), [0] * 5))
    with pytest.raises(
        TrainctlError, match=r"image batch of the wrong shape: 'data' is uint8 \(5, 1024\)"
    ) as info:
        cifar_data(tiny_cifar)
    assert info.value.where == f"{bad}, key 'data'"


def test_a_pickle_that_runs_code_is_refused(tiny_cifar: Path) -> None:
    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("pwned",))

    (tiny_cifar / cifar10.FOLDER / "test_batch").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(TrainctlError, match="refusing to load builtins.print"):
        cifar_data(tiny_cifar)


@pytest.fixture
def archive_server(tiny_cifar: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An HTTP server on 127.0.0.1 serving a tiny cifar-10-python.tar.gz; yields (url, md5)."""
    served = make_archive(tiny_cifar, tmp_path / "served")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served.parent))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", hashlib.md5(served.read_bytes()).hexdigest()
    server.shutdown()


def test_downloads_the_archive_with_its_checksum(
    archive_server: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, md5 = archive_server
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", md5)
    root = tmp_path / "empty"
    data = cifar_data(root, f"data.mirrors=[{url}]")
    assert len(data.train) == 160 and (root / cifar10.ARCHIVE).is_file()


def test_checksum_mismatch_and_offline_are_clear_errors(
    archive_server: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = archive_server
    with pytest.raises(TrainctlError, match="checksum mismatch"):
        cifar_data(tmp_path / "a", f"data.mirrors=[{url}]")
    with pytest.raises(TrainctlError, match="could not be downloaded \\(no network\\?\\)") as info:
        cifar_data(tmp_path / "b", "data.mirrors=[http://127.0.0.1:9/]")
    assert "data.root=PATH" in info.value.fix
    with pytest.raises(TrainctlError, match="CIFAR-10 files are missing: cifar-10-python.tar.gz"):
        cifar_data(tmp_path / "c", "data.download=false")


# ------------------------------------------------------------------ augmentation
def test_crop_translates_each_image_and_is_seeded() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    augment = ImageAugment(crop_padding=2, flip=False)
    out = augment.transform(images, seed=5)
    assert torch.equal(out, augment.transform(images, 5)) and not torch.equal(
        out, augment.transform(images, 6)
    )
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(2):  # each output is one 8x8 window of the padded image
        windows = [padded[i, :, y : y + 8, x : x + 8] for y in range(5) for x in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_mirrors_about_half_and_cutout_zeroes_a_square() -> None:
    images = torch.randn(400, 3, 16, 16)
    flipped = ImageAugment(crop_padding=0, flip=True).transform(images, seed=1)
    mirrored = (flipped == images.flip(3)).flatten(1).all(1)
    kept = (flipped == images).flatten(1).all(1)
    assert bool((mirrored | kept).all()) and 150 < int(mirrored.sum()) < 250
    cut = ImageAugment(crop_padding=0, flip=False, cutout=6).transform(torch.ones(50, 3, 16, 16), seed=2)
    zeros = (cut[:, 0] == 0).flatten(1).sum(1)
    assert bool((zeros <= 36).all()) and int(zeros.max()) == 36 and bool((cut[:, 0] == cut[:, 2]).all())


def test_batch_augmentation_repeats_each_image_with_its_own_draws() -> None:
    images, targets = torch.randn(8, 3, 8, 8), torch.arange(8)
    out, repeated = ImageAugment(crop_padding=2, flip=True, repeats=3)(images, targets, seed=0)
    assert out.shape == (24, 3, 8, 8) and repeated.tolist() == list(range(8)) * 3
    assert not torch.equal(out[:8], out[8:16])


def test_view_averaging_is_the_mean_softmax_of_the_views() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(3, 3, 4, 4)
    expected = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
    torch.testing.assert_close(ViewAveraged(model)(x).exp(), expected)
    shifted = translate(x, 1, 1)
    assert torch.equal(shifted[..., 1:, 1:], x[..., :-1, :-1]) and not shifted[..., 0, :].any()
    views = [x, shifted, translate(x, -1, -1)]
    expected = sum(model(v).softmax(1) + model(v.flip(3)).softmax(1) for v in views) / 6
    torch.testing.assert_close(ViewAveraged(model, flip=True, shift=1)(x).exp(), expected)


# ------------------------------------------------------------------ the preset, end to end
SHORT = ["trainer.batch_size=32", "trainer.eval_batch_size=64", "trainer.log_every=1"]


def test_resnet_cifar_preset_trains_and_eval_reproduces_its_accuracy(
    tiny_cifar: Path, runs_root: Path
) -> None:
    summary = train(["conf=resnet_cifar", f"data.root={tiny_cifar}", "trainer.epochs=3", *SHORT])
    records = [json.loads(line) for line in (runs_root / "latest" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 15 and sum(losses[-3:]) < sum(losses[:3])  # a few steps; the loss falls
    result = runner.invoke(app, ["eval", "latest"])
    assert result.exit_code == 0, result.output
    assert f"accuracy {summary['test']['accuracy']:.2%}" in result.output  # EMA weights, flip TTA, bf16
    # int8 on a conv net is static: calibrated on training batches, evaluated with the same test views
    result = runner.invoke(app, ["compress", "latest", "--quantize", "int8", "--calib-batches", "2"])
    assert result.exit_code == 0, result.output
    child = runs_root / "latest"
    assert json.loads((child / "run.json").read_text())["compression"][0]["name"] == "int8_static"
    report = json.loads((child / "report.json").read_text())
    assert report["before"]["file_bytes"] > 3 * report["after"]["file_bytes"]
    result = runner.invoke(app, ["eval", "latest"])
    assert result.exit_code == 0, result.output
    assert f"accuracy {report['after']['metrics']['accuracy']:.2%}" in result.output


def test_resnet_cifar_preset_trains_on_two_ddp_ranks(tiny_cifar: Path, runs_root: Path) -> None:
    summary = train(
        ["conf=resnet_cifar", f"data.root={tiny_cifar}", "launcher.nproc=2", "parallel=ddp",
         "trainer.epochs=3", *SHORT]
    )  # fmt: skip
    records = [json.loads(line) for line in (runs_root / "latest" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train" and r["rank"] == 0]
    assert len(losses) == 15 and sum(losses[-3:]) < sum(losses[:3])
    result = runner.invoke(app, ["eval", "latest"])  # BatchNorm statistics and EMA from rank 0
    assert f"accuracy {summary['test']['accuracy']:.2%}" in result.output, result.output


def test_resume_with_augmentation_and_ema_equals_a_straight_run(tiny_cifar: Path, runs_root: Path) -> None:
    common = [
        "conf=resnet_cifar",
        f"data.root={tiny_cifar}",
        "trainer.schedule=constant",
        "optim.lr=0.05",
        *SHORT,
    ]
    train([*common, "trainer.epochs=2", "run.root=" + str(runs_root / "straight")])
    train([*common, "trainer.epochs=1"])
    train(["trainer.epochs=2"], resume="latest")
    from trainctl.training.checkpoint import load_checkpoint

    straight = load_checkpoint(
        next((runs_root / "straight" / "resnet_cifar").iterdir()) / "checkpoints/last.pt"
    )
    resumed = load_checkpoint(runs_root / "latest" / "checkpoints" / "last.pt")
    for key in ("model",):
        for name, tensor in straight[key].items():
            assert torch.equal(tensor, resumed[key][name]), name
    for name, tensor in straight["ema"]["module"].items():
        assert torch.equal(tensor, resumed["ema"]["module"][name]), name


def test_fp16_on_cpu_is_refused_before_anything_is_written(runs_root: Path) -> None:
    result = runner.invoke(app, ["train", "trainer.precision=fp16", "trainer.device=cpu"])
    assert result.exit_code == 2
    assert "trainer.precision=fp16 needs a GPU" in " ".join(result.output.split())
    assert not runs_root.exists()


def test_bad_ema_decay_is_refused(runs_root: Path) -> None:
    result = runner.invoke(app, ["train", "trainer.ema=1.5"])
    assert result.exit_code == 2 and "must be in (0, 1)" in result.output


def test_checkpoint_file_is_plain_data(tiny_cifar: Path, runs_root: Path) -> None:
    train(["conf=resnet_cifar", f"data.root={tiny_cifar}", "trainer.epochs=1", *SHORT])
    raw = (runs_root / "latest" / "checkpoints" / "last.pt").read_bytes()
    torch.load(io.BytesIO(raw), weights_only=True)  # EMA and scaler state load without pickled code
