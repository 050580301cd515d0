"""Export: every format loaded by its own client (safetensors, transformers, onnxruntime, torch.export)
agrees with `trainctl eval`/`predict`; int8 and bf16 refusals; the run is never changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from tests.conftest import SINGLE, make_tiny_mnist
from tests.test_compress import snapshot
from tests.test_text import write_tiny_sst2
from tests.test_vision import write_cifar
from trainctl.cli.app import app
from trainctl.cli.evaluate import evaluate_checkpoint
from trainctl.cli.predict import predict
from trainctl.cli.train import train
from trainctl.config.compose import compose
from trainctl.data import load_dataset
from trainctl.data.sets import cifar10

runner = CliRunner()
TEXTS = ["a gorgeous, witty film", "awful and boring", "brilliant acting", "the worst film of the year"]
BERT = ["conf=bert_sst2", "trainer.precision=fp32", "trainer.batch_size=16", "trainer.max_steps=2", *SINGLE]


def export_cli(run: Path, fmt: str, out: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["export", str(run), "--format", fmt, "--out", str(out), *extra])
    return result.exit_code, result.output


def trained(root: Path, *overrides: str) -> Path:
    train([*overrides, f"run.root={root}"])
    return (root / "latest").resolve()


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits MLP (64 -> 32 -> 10 on 8x8 images)."""
    return trained(
        tmp_path_factory.mktemp("runs"), "trainer.epochs=1", "model.hidden=[32]", "model.dropout=0", *SINGLE
    )


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bert_sst2 (MiniLM, mean pooling) after two float32 steps on a tiny SST-2."""
    data = write_tiny_sst2(tmp_path_factory.mktemp("data"))
    cache = tmp_path_factory.mktemp("cache")
    return trained(tmp_path_factory.mktemp("runs"), *BERT, f"data.root={data}", f"data.cache_dir={cache}")


def probabilities_of(predictions: list) -> np.ndarray:
    return np.array([p.probability for p in predictions])


# ------------------------------------------------------------------ MLP
def test_mlp_exports_load_with_their_own_clients_and_agree_with_eval(mlp_run: Path, tmp_path: Path) -> None:
    before = snapshot(mlp_run)
    cfg = compose([], config_file=mlp_run / "config.yaml").config
    data = load_dataset(cfg.data)
    inputs = data.test.inputs
    accuracy = evaluate_checkpoint(str(mlp_run), [])["accuracy"]
    outputs = {}
    for fmt in ("safetensors", "onnx", "torch-export"):
        code, out = export_cli(mlp_run, fmt, tmp_path / fmt)
        assert code == 0, out
        assert "checked against the run's model" in out
        manifest = json.loads((tmp_path / fmt / "export.json").read_text())
        assert max(manifest["max_abs_difference"].values()) <= 1e-4
        assert (tmp_path / fmt / "trainctl_config.yaml").is_file()
        assert "## How to load" in (tmp_path / fmt / "README.md").read_text()
    # safetensors: plain torch.nn modules, no trainctl; the metadata says how raw pixels become inputs
    weights = load_file(str(tmp_path / "safetensors" / "model.safetensors"))
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    plain.load_state_dict(weights)
    with torch.no_grad():
        outputs["safetensors"] = plain(inputs)
    with safe_open(str(tmp_path / "safetensors" / "model.safetensors"), "pt") as f:
        normalisation = json.loads(f.metadata()["inputs"])["normalisation"]
        assert json.loads(f.metadata()["trainctl_config"])["model"]["hidden"] == [32]
    assert normalisation["divide_by"] == 16.0 and len(normalisation["mean"]) == 1
    # onnx: a dynamic batch (the whole test split, then one image)
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs["onnx"] = torch.from_numpy(session.run(["logits"], {"input": inputs.numpy()})[0])
    one = session.run(["logits"], {"input": inputs[:1].numpy()})[0]
    np.testing.assert_allclose(one, outputs["onnx"][:1].numpy(), atol=1e-5)
    # torch.export
    program = torch.export.load(str(tmp_path / "torch-export" / "model.pt2"))
    outputs["torch-export"] = program.module()(inputs)
    for fmt, logits in outputs.items():
        torch.testing.assert_close(logits, outputs["safetensors"], atol=1e-4, rtol=0, msg=fmt)
        exported_accuracy = (logits.argmax(1) == data.test.targets).float().mean().item()
        assert exported_accuracy == pytest.approx(accuracy), fmt
    code, out = export_cli(mlp_run, "hf", tmp_path / "hf")
    assert code == 2 and "text models" in out and not (tmp_path / "hf").exists()
    assert snapshot(mlp_run) == before


def test_default_folder_bad_destinations_and_unknown_format(mlp_run: Path, tmp_path: Path) -> None:
    before = snapshot(mlp_run)
    result = runner.invoke(app, ["export", str(mlp_run), "--format", "safetensors"])
    assert result.exit_code == 0, result.output
    default = mlp_run.parent.parent / "exports" / mlp_run.parent.name / mlp_run.name / "safetensors"
    assert (default / "model.safetensors").is_file() and (default / "export.json").is_file()
    # exporting again replaces the earlier export in place
    result = runner.invoke(app, ["export", str(mlp_run), "--format", "safetensors"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in default.parent.iterdir()) == ["safetensors"]
    code, out = export_cli(mlp_run, "tflite", tmp_path / "x")
    assert code == 2 and "unknown export format 'tflite'" in out
    code, out = export_cli(mlp_run, "onnx", mlp_run / "onnx")
    assert code == 2 and "inside the run" in out
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, out = export_cli(mlp_run, "onnx", foreign)
    assert code == 2 and "not an earlier export" in out
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert snapshot(mlp_run) == before


# ------------------------------------------------------------------ BERT
def test_bert_exports_give_predicts_probabilities(bert_run: Path, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    before = snapshot(bert_run)
    expected = predict(str(bert_run), TEXTS)
    labels = [p.label for p in expected]
    for fmt in ("hf", "safetensors", "onnx", "torch-export"):
        code, out = export_cli(bert_run, fmt, tmp_path / fmt)
        assert code == 0, out
    found: dict[str, np.ndarray] = {}
    # hf, as its README says: AutoModel for the encoder, the head applied to the mean-pooled states
    folder = tmp_path / "hf"
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    encoder = AutoModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    assert encoder.config.id2label == {0: "negative", 1: "positive"}
    assert encoder.config.label2id == {"negative": 0, "positive": 1}
    head = load_file(str(folder / "head.safetensors"))
    batch = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        probabilities = (pooled @ head["weight"].T + head["bias"]).softmax(-1)
    assert [encoder.config.id2label[i] for i in probabilities.argmax(-1).tolist()] == labels
    found["hf"] = probabilities.max(-1).values.numpy()
    # safetensors: encoder.* are a transformers BertModel's weights, head.* the linear head
    weights = load_file(str(tmp_path / "safetensors" / "model.safetensors"))
    plain = AutoModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    plain.load_state_dict(
        {k.removeprefix("encoder."): v for k, v in weights.items() if k.startswith("encoder.")}
    )
    with torch.no_grad():
        hidden = plain(**batch).last_hidden_state
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        logits = pooled @ weights["head.weight"].T + weights["head.bias"]
    found["safetensors"] = logits.softmax(-1).max(-1).values.numpy()
    # onnx and torch.export read token ids from the tokenizer saved beside them; batch and length dynamic
    ids = AutoTokenizer.from_pretrained(str(tmp_path / "onnx"))(TEXTS, padding=True, return_tensors="np")
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input_ids": ids["input_ids"]})[0]
    found["onnx"] = torch.from_numpy(logits).softmax(-1).max(-1).values.numpy()
    single = session.run(
        ["logits"], {"input_ids": ids["input_ids"][:1, : int(ids["attention_mask"][0].sum())]}
    )
    np.testing.assert_allclose(single[0], logits[:1], atol=1e-4)
    program = torch.export.load(str(tmp_path / "torch-export" / "model.pt2")).module()
    with torch.no_grad():
        logits = program(torch.from_numpy(ids["input_ids"]))
    found["torch-export"] = logits.softmax(-1).max(-1).values.numpy()
    for fmt, probabilities in found.items():
        np.testing.assert_allclose(probabilities, probabilities_of(expected), atol=1e-4, rtol=0, err_msg=fmt)
    assert "has no sequence-classification class" in (folder / "README.md").read_text()
    assert snapshot(bert_run) == before


def test_bert_with_the_pooler_loads_as_a_sequence_classifier(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from transformers import pipeline

    data = write_tiny_sst2(tmp_path_factory.mktemp("data"))
    run = trained(
        tmp_path_factory.mktemp("runs"), *BERT, "model.pooling=pooler", "trainer.max_steps=1",
        f"data.root={data}", f"data.cache_dir={tmp_path / 'cache'}",
    )  # fmt: skip
    texts = [*TEXTS, " ".join(["a gorgeous film"] + ["awful"] * 300)]  # beyond max_length and 512
    expected = predict(str(run), texts)
    code, out = export_cli(run, "hf", tmp_path / "hf")
    assert code == 0, out
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert "classify(texts, truncation=True)" in (tmp_path / "hf" / "README.md").read_text()
    classify = pipeline("text-classification", model=str(tmp_path / "hf"), device="cpu")
    scored = classify(texts, truncation=True)  # as the folder's README says
    assert [s["label"] for s in scored] == [p.label for p in expected]
    np.testing.assert_allclose([s["score"] for s in scored], probabilities_of(expected), atol=1e-4, rtol=0)


# ------------------------------------------------------------------ ResNet
def test_resnet_onnx_has_a_dynamic_batch_and_reproduces_evals_test_time_views(
    tmp_path: Path, runs_root: Path
) -> None:
    root = tmp_path / "data"
    write_cifar(root / cifar10.FOLDER, (40,), 20)
    run = trained(
        runs_root, "conf=resnet_cifar", f"data.root={root}", "trainer.epochs=1", "trainer.batch_size=16",
        "trainer.eval_batch_size=20", "trainer.precision=fp32", "data.repeats=1", *SINGLE,
    )  # fmt: skip
    code, out = export_cli(run, "onnx", tmp_path / "onnx")
    assert code == 0, out
    readme = (tmp_path / "onnx" / "README.md").read_text()
    assert "mean softmax over 6 views" in readme and "| test-time views |" in readme
    data = load_dataset(compose([], config_file=run / "config.yaml").config.data)
    images = data.test.inputs
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])

    def scores(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(["logits"], {"input": np.ascontiguousarray(x.numpy())})[0])

    whole, five = scores(images), scores(images[:5])  # two batch sizes
    assert whole.shape == (20, 10) and five.shape == (5, 10)
    torch.testing.assert_close(five, whole[:5], atol=1e-4, rtol=0)
    # the README's six views (shifts 0, +1, -1 and their mirror images), averaged: eval's accuracy
    from trainctl.data.augment import translate

    views = [translate(images, d, d) for d in (0, 1, -1)]
    views += [v.flip(3) for v in views]
    averaged = torch.stack([scores(v).softmax(-1) for v in views]).mean(0)
    accuracy = (averaged.argmax(1) == data.test.targets).float().mean().item()
    assert accuracy == pytest.approx(evaluate_checkpoint(str(run), [])["accuracy"])
    # static int8 (compress on a conv net): refused by every format, with what to do instead
    result = runner.invoke(app, ["compress", str(run), "--quantize", "int8", "--calib-batches", "1"])
    assert result.exit_code == 0, result.output
    child = (runs_root / "latest").resolve()
    for fmt in ("safetensors", "onnx"):
        code, out = export_cli(child, fmt, tmp_path / f"int8-{fmt}")
        assert code == 2 and "static int8" in out and f"trainctl export {run} --format {fmt}" in out, out
        assert not (tmp_path / f"int8-{fmt}").exists()


# ------------------------------------------------------------------ compressed runs
def test_int8_mlp_exports_dequantised_weights_and_refuses_graph_formats(
    mlp_run: Path, runs_root: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["compress", str(mlp_run), "--quantize", "int8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    child = (mlp_run.parent.parent / "latest").resolve()
    before = snapshot(child)
    code, out = export_cli(child, "safetensors", tmp_path / "st")
    assert code == 0, out
    assert "dequantised" in out and "vs the run's int8 model" in out
    weights = load_file(str(tmp_path / "st" / "model.safetensors"))
    assert {k: v.dtype for k, v in weights.items()} == dict.fromkeys(
        ["1.weight", "1.bias", "3.weight", "3.bias"], torch.float32
    )
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    plain.load_state_dict(weights)
    data = load_dataset(compose([], config_file=child / "config.yaml").config.data)
    with torch.no_grad():
        accuracy = (plain(data.test.inputs).argmax(1) == data.test.targets).float().mean().item()
    assert abs(accuracy - evaluate_checkpoint(str(child), [])["accuracy"]) < 0.02  # int8 activations aside
    for fmt in ("onnx", "torch-export", "hf"):
        code, out = export_cli(child, fmt, tmp_path / fmt)
        assert code == 2, out
        assert ("int8" in out and f"trainctl export {mlp_run} --format {fmt}" in out) or fmt == "hf", out
        assert not (tmp_path / fmt).exists()
    # a bf16 model: onnxruntime's CPU kernels cannot run it, so onnx is refused; torch.export keeps it
    result = runner.invoke(app, ["compress", str(mlp_run), "--quantize", "bf16", "--threads", "1"])
    assert result.exit_code == 0, result.output
    half = (mlp_run.parent.parent / "latest").resolve()
    code, out = export_cli(half, "onnx", tmp_path / "bf16-onnx")
    assert code == 2 and "bfloat16" in out, out
    code, out = export_cli(half, "torch-export", tmp_path / "bf16-pt2")
    assert code == 0, out
    assert snapshot(child) == before


# ------------------------------------------------------------------ input descriptions
def test_normalisation_reproduces_the_data_sets_inputs(tmp_path: Path) -> None:
    import gzip

    root = make_tiny_mnist(tmp_path / "data")
    mnist = load_dataset(compose(["dataset=mnist", f"data.root={root}"]).config.data)
    raw = gzip.decompress((root / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())[16:]
    pixels = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, 1, 28, 28)
    torch.testing.assert_close(mnist.normalisation.apply(pixels), mnist.test.inputs)
    write_cifar(tmp_path / "cifar" / cifar10.FOLDER, (30,), 10)
    cfg = compose(["conf=resnet_cifar", f"data.root={tmp_path / 'cifar'}"]).config.data
    cifar = load_dataset(cfg)
    images, _ = cifar10.read_split(cifar10.locate(cfg), ["test_batch"], 10)
    torch.testing.assert_close(cifar.normalisation.apply(images), cifar.test.inputs)
    assert len(cifar.normalisation.mean) == 3 and cifar.normalisation.divide_by == 255.0
