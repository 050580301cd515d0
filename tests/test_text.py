"""Text: TSV/CSV/JSONL reading and its named errors, token caching and trimming, BERT, bert_sst2, predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from trainctl.cli.app import app
from trainctl.cli.train import train
from trainctl.config.compose import compose
from trainctl.data import load_dataset
from trainctl.data.sets.text import read_rows
from trainctl.data.tokens import TokenSplit, default_pretrained_folder
from trainctl.errors import TrainctlError
from trainctl.models import build_model

runner = CliRunner()
GOOD = [
    "a gorgeous, witty film",
    "wonderful and moving",
    "a delight from start to finish",
    "brilliant acting",
]
BAD = ["a dull, tedious mess", "awful and boring", "the worst film of the year", "painfully bad writing"]


@pytest.fixture(autouse=True)
def token_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRAINCTL_CACHE_DIR", str(cache))
    return cache


def write_tiny_sst2(root: Path) -> Path:
    """`root` with sst2/train.tsv (64 phrases) and dev.tsv (16) in the GLUE layout."""
    folder = root / "sst2"
    folder.mkdir(parents=True)
    rows = [(t, 1) for t in GOOD] + [(t, 0) for t in BAD]
    train_rows = (rows * 8)[:64]
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in train_rows))
    (folder / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows * 2))
    return root


@pytest.fixture
def tiny_sst2(tmp_path: Path) -> Path:
    """A data root with a tiny SST-2 (see write_tiny_sst2)."""
    return write_tiny_sst2(tmp_path / "data")


def sst2(root: Path, *extra: str):
    return load_dataset(compose(["conf=bert_sst2", f"data.root={root}", *extra]).config.data)


def text_data(folder: Path, *extra: str):
    return load_dataset(compose(["model=bert", "dataset=text", f"data.root={folder}", *extra]).config.data)


# ------------------------------------------------------------------ reading files
def test_sst2_layout_reads_labels_as_names(tiny_sst2: Path) -> None:
    data = sst2(tiny_sst2)
    assert data.class_names == ["negative", "positive"] and len(data.train) == 64 and len(data.test) == 16
    assert data.train.targets[:4].tolist() == [1, 1, 1, 1] and data.train.targets[4:8].tolist() == [0] * 4
    assert data.spec.num_outputs == 2 and data.spec.pad_token_id == 0


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_csv_and_jsonl_with_configurable_columns_and_label_values(tmp_path: Path, kind: str) -> None:
    rows = [("great movie", "pos"), ('she said "no", twice', "neg"), ("fine", "neutral")] * 3
    for name in ("train", "test"):
        path = tmp_path / f"{name}.{kind}"
        if kind == "csv":
            body = "".join(f'"{t.replace(chr(34), chr(34) * 2)}",{y}\n' for t, y in rows)
            path.write_text("review,stars\n" + body)
        else:
            path.write_text("".join(json.dumps({"review": t, "stars": y}) + "\n" for t, y in rows))
    data = text_data(
        tmp_path,
        f"data.train_file=train.{kind}",
        f"data.test_file=test.{kind}",
        "data.text_column=review",
        "data.label_column=stars",
    )
    assert data.class_names == ["neg", "neutral", "pos"]
    assert data.train.targets[:3].tolist() == [2, 0, 1]
    assert len(read_rows(compose(["dataset=text", f"data.train_file=train.{kind}",
                                  "data.text_column=review", "data.label_column=stars"]).config.data,
                         tmp_path / f"train.{kind}").texts) == 9  # fmt: skip


def write_tsv(folder: Path, train: str, test: str | None = None) -> Path:
    (folder / "sst2").mkdir(parents=True, exist_ok=True)
    (folder / "sst2" / "train.tsv").write_text(train)
    (folder / "sst2" / "dev.tsv").write_text(test if test is not None else train)
    return folder


def test_unknown_label_value_names_file_and_line(tmp_path: Path) -> None:
    root = write_tsv(tmp_path, "sentence\tlabel\ngood\t1\nbad\t0\n", "sentence\tlabel\ngood\t1\nmeh\tmaybe\n")
    with pytest.raises(TrainctlError, match="unknown label value 'maybe' in column 'label'") as info:
        sst2(root)
    assert info.value.where == f"{root / 'sst2' / 'dev.tsv'}, line 3"


def test_empty_text_and_missing_column_name_file_and_line(tmp_path: Path) -> None:
    root = write_tsv(tmp_path, "sentence\tlabel\ngood\t1\n \t0\n")
    with pytest.raises(TrainctlError, match="empty text in column 'sentence'") as info:
        sst2(root)
    assert info.value.where == f"{root / 'sst2' / 'train.tsv'}, line 3"
    write_tsv(tmp_path, "text\tlabel\ngood\t1\n")
    with pytest.raises(TrainctlError, match="no column 'sentence' in train.tsv") as info:
        sst2(root)
    assert "data.text_column= one of: text, label" in info.value.fix


def test_missing_tokenizer_file_is_a_named_error(tiny_sst2: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(default_pretrained_folder() / "config.json", folder)
    with pytest.raises(TrainctlError, match="no tokenizer file in the pretrained folder") as info:
        sst2(tiny_sst2, f"model.pretrained={folder}")
    assert str(folder) in info.value.where and "model.pretrained" in info.value.where


# ------------------------------------------------------------------ tokens
def test_batches_are_trimmed_to_their_longest_sequence() -> None:
    ids = torch.tensor([[101, 5, 102, 0, 0], [101, 5, 6, 7, 102], [101, 102, 0, 0, 0]], dtype=torch.int32)
    split = TokenSplit(ids, torch.tensor([0, 1, 0]), torch.tensor([3, 5, 2]))
    inputs, targets = split.batch(torch.tensor([2, 0]))
    assert inputs.tolist() == [[101, 102, 0], [101, 5, 102]] and inputs.dtype == torch.int64
    assert split.batch(torch.tensor([1]))[0].shape == (1, 5)


def test_tokens_are_computed_once_and_cached(tiny_sst2: Path, token_cache: Path) -> None:
    first = sst2(tiny_sst2)
    cached = sorted((token_cache / "tokens").iterdir())
    assert len(cached) == 2
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = sst2(tiny_sst2)
    assert [p.stat().st_mtime_ns for p in sorted((token_cache / "tokens").iterdir())] == stamps
    assert torch.equal(first.train.inputs, again.train.inputs)
    assert first.train.inputs.shape[1] == int(first.train.lengths.max())
    sst2(tiny_sst2, "model.max_length=4")  # another max length: another cache entry
    assert len(list((token_cache / "tokens").iterdir())) == 4


def mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose memory mapping holds `tensor`'s data in this process (/proc/self/maps), if any."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5].strip() if len(fields) == 6 else None
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux's /proc")
def test_the_second_load_maps_the_token_cache_instead_of_tokenising(
    tiny_sst2: Path, token_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainctl.data import tokens

    first = sst2(tiny_sst2)

    def tokenise_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("the texts were tokenised again")

    monkeypatch.setattr(tokens, "encode", tokenise_again)
    again = sst2(tiny_sst2)
    for split in (again.train, again.test):
        mapped = mapped_file(split.inputs)
        assert mapped is not None and mapped.startswith(str(token_cache / "tokens")), mapped
        assert mapped.endswith("ids.npy")
    assert torch.equal(first.train.inputs, again.train.inputs) and torch.equal(
        first.test.lengths, again.test.lengths
    )


def test_length_sampler_groups_similar_lengths(tiny_sst2: Path) -> None:
    from trainctl.data.samplers import LengthGroupedOrder

    lengths = torch.randint(1, 60, (1000,))
    order = LengthGroupedOrder(lengths, batch_size=10)(1000, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(1000))
    spread = (lengths[order].view(100, 10).max(1).values - lengths[order].view(100, 10).min(1).values).float()
    assert spread.mean() < 5  # random batches of 10 spread about 45


# ------------------------------------------------------------------ model
def test_bert_loads_minilm_with_blocks_and_freezing(tiny_sst2: Path) -> None:
    data = sst2(tiny_sst2)
    cfg = compose(["conf=bert_sst2", "model.freeze_embeddings=true", "model.freeze_layers=2"]).config.model
    model = build_model(cfg, data.spec)
    assert len(model.blocks()) == 6
    assert not any(p.requires_grad for p in model.encoder.embeddings.parameters())
    assert not any(p.requires_grad for p in model.blocks()[1].parameters())
    assert all(p.requires_grad for p in model.blocks()[2].parameters())
    inputs, _ = data.train.batch(torch.arange(4))
    assert model(inputs).shape == (4, 2)
    with pytest.raises(TrainctlError, match="exceeds the 512 positions"):
        build_model(compose(["conf=bert_sst2", "model.max_length=1000"]).config.model, data.spec)


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_padding_does_not_change_the_prediction(tiny_sst2: Path, pooling: str) -> None:
    data = sst2(tiny_sst2)
    cfg = compose(["conf=bert_sst2", f"model.pooling={pooling}"]).config.model
    model = build_model(cfg, data.spec).eval()
    short = data.encode(["a gorgeous, witty film"])
    padded = torch.cat([short, torch.zeros(1, 7, dtype=short.dtype)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(short), model(padded), rtol=1e-4, atol=1e-4)


def test_the_pooler_is_the_checkpoints_and_only_there_when_asked_for(tiny_sst2: Path) -> None:
    from safetensors.torch import load_file

    data = sst2(tiny_sst2)
    pooled = build_model(compose(["conf=bert_sst2", "model.pooling=pooler"]).config.model, data.spec)
    saved = load_file(str(default_pretrained_folder() / "model.safetensors"))
    key = next(k for k in saved if k.endswith("pooler.dense.weight"))
    assert torch.equal(pooled.encoder.pooler.dense.weight, saved[key])
    plain = build_model(compose(["conf=bert_sst2", "model.pooling=mean"]).config.model, data.spec)
    assert plain.encoder.pooler is None


# ------------------------------------------------------------------ preset, predict
def test_bert_sst2_preset_trains_a_few_steps_and_predicts(
    tiny_sst2: Path, runs_root: Path, tmp_path: Path
) -> None:
    summary = train(
        ["conf=bert_sst2", f"data.root={tiny_sst2}", "trainer.epochs=2", "trainer.batch_size=16",
         "trainer.log_every=1", "optim.lr=2e-4", "trainer.warmup_ratio=0.1"]
    )  # fmt: skip
    records = [json.loads(line) for line in (runs_root / "latest" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 8 and sum(losses[-2:]) < sum(losses[:2])
    assert summary["test"]["accuracy"] >= 0.75
    evaluated = runner.invoke(app, ["eval", "latest"])
    assert f"accuracy {summary['test']['accuracy']:.2%}" in evaluated.output, evaluated.output
    result = runner.invoke(app, ["predict", "latest", "--text", "a gorgeous, witty film"])
    assert result.exit_code == 0, result.output
    label, probability = result.output.split()
    assert label == "positive" and 0.5 < float(probability) <= 1.0
    texts = tmp_path / "texts.txt"
    texts.write_text("awful and boring\n\nwonderful and moving\n")
    result = runner.invoke(app, ["predict", "latest", "--file", str(texts)])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.splitlines()]
    assert [(line[0], line[2]) for line in lines] == [
        ("negative", "awful and boring"),
        ("positive", "wonderful and moving"),
    ]
    # int8 (Linear layers and embedding tables): a much smaller file that predicts the same labels
    result = runner.invoke(app, ["compress", "latest", "--quantize", "int8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((runs_root / "latest" / "report.json").read_text())
    assert report["before"]["file_bytes"] > 3 * report["after"]["file_bytes"]
    result = runner.invoke(app, ["predict", "latest", "--file", str(texts)])
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.output.splitlines()] == ["negative", "positive"]
    result = runner.invoke(app, ["eval", "latest"])
    assert f"accuracy {report['after']['metrics']['accuracy']:.2%}" in result.output, result.output


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_bert_sst2_preset_trains_on_two_ranks(mode: str, tiny_sst2: Path, runs_root: Path) -> None:
    summary = train(
        ["conf=bert_sst2", f"data.root={tiny_sst2}", "launcher.nproc=2", f"parallel={mode}",
         "trainer.epochs=2", "trainer.batch_size=16", "trainer.log_every=1", "optim.lr=2e-4",
         "trainer.warmup_ratio=0.1"]
    )  # fmt: skip
    run = runs_root / "latest"
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert yaml.safe_load((run / "config.yaml").read_text())["parallel"]["name"] == mode
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train" and r["rank"] == 0]
    assert len(losses) == 8 and sum(losses[-2:]) < sum(losses[:2])  # layer-wise rates over sharded blocks
    evaluated = runner.invoke(app, ["eval", "latest"])  # the gathered weights load into one process
    assert f"accuracy {summary['test']['accuracy']:.2%}" in evaluated.output, evaluated.output


def test_predict_refuses_an_image_run_and_empty_input(runs_root: Path) -> None:
    train(["trainer.epochs=1"])
    result = runner.invoke(app, ["predict", "latest", "--text", "hello"])
    assert result.exit_code == 2 and "predict takes texts" in result.output
    result = runner.invoke(app, ["predict", "latest"])
    assert result.exit_code == 2 and "nothing to predict" in result.output


def test_balanced_sampler_and_class_weights(runs_root: Path) -> None:
    from trainctl.data.samplers import BalancedOrder, balanced_class_weights

    targets = torch.tensor([0] * 90 + [1] * 10)
    torch.testing.assert_close(balanced_class_weights(targets, 2), torch.tensor([100 / 180, 100 / 20]))
    drawn = targets[BalancedOrder(targets, 2)(10_000, torch.Generator().manual_seed(0))]
    assert 4_500 < int(drawn.sum()) < 5_500
    summary = train(["trainer.epochs=2", "dataset.sampler=balanced", "trainer.class_weights=balanced"])
    assert summary["test"]["accuracy"] > 0.8
    result = runner.invoke(app, ["train", "conf=linreg", "dataset.sampler=balanced"])
    assert result.exit_code == 2 and "balances classes" in result.output


@pytest.mark.data("sst2")
def test_reads_the_shared_sst2_files(shared_data: Path) -> None:
    cfg = compose(["conf=bert_sst2", f"data.root={shared_data}"]).config.data
    train_rows = read_rows(cfg, shared_data / "sst2" / "train.tsv")
    dev_rows = read_rows(cfg, shared_data / "sst2" / "dev.tsv")
    assert len(train_rows.texts) == 62_349 and len(dev_rows.texts) == 872
    assert set(train_rows.labels) == {"0", "1"}
