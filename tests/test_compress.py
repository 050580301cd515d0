"""Compression: passes, stored compressed models, compress/compare commands, bad input, the config group."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from tests.conftest import SINGLE
from trainctl.cli.app import app
from trainctl.cli.evaluate import evaluate_checkpoint
from trainctl.cli.train import train
from trainctl.compress import build_passes
from trainctl.compress.base import PassJob
from trainctl.compress.job import compress_run, load_run
from trainctl.compress.passes.prune import narrowables
from trainctl.compress.report import static_figures
from trainctl.compress.stored import rebuild_model
from trainctl.errors import TrainctlError
from trainctl.training.checkpoint import load_checkpoint

runner = CliRunner()
DIGITS = ["trainer.epochs=2", "model.hidden=[64,32]", "model.dropout=0", "trainer.threads=1", *SINGLE]


def snapshot(run: Path) -> dict[str, str]:
    """Every file of a run with its content hash: the parent must come out of compression unchanged."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in run.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained digits MLP (784->64->32->10 on 8x8 images), shared read-only by this module's tests."""
    root = tmp_path_factory.mktemp("runs")
    train([*DIGITS, f"run.root={root}"])
    return next((root / "mlp_digits").iterdir())


def compress_cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["compress", *args, "--threads", "1"])
    return result.exit_code, result.output


def latest_beside(run: Path) -> Path:
    """The newest run of the runs folder that holds `run` (where its compressed children go)."""
    return (run.parent.parent / "latest").resolve()


def test_int8_makes_a_new_run_with_report_and_leaves_the_parent_untouched(
    digits_run: Path, runs_root: Path
) -> None:
    before = snapshot(digits_run)
    code, out = compress_cli(str(digits_run), "--quantize", "int8")
    assert code == 0, out
    assert snapshot(digits_run) == before
    child = latest_beside(digits_run)
    meta = json.loads((child / "run.json").read_text())
    assert meta["parent"] == f"mlp_digits/{digits_run.name}" and meta["status"] == "finished"
    assert meta["compression"] == [{"name": "int8", "embeddings": True, "per_channel": True}]
    report = json.loads((child / "report.json").read_text())
    assert report["before"]["parameters"] == report["after"]["parameters"]
    assert report["after"]["file_bytes"] < report["before"]["file_bytes"]
    assert set(report["before"]["latency_ms"]) == {"1", "64"} and report["threads"] == 1
    assert "| model file |" in (child / "report.md").read_text()
    assert "report card" in out and "CPU latency, batch 64" in out
    # eval rebuilds the quantized model from config + pass records and finds the report's figures
    result = evaluate_checkpoint(str(child), [])
    assert result["accuracy"] == pytest.approx(report["after"]["metrics"]["accuracy"])
    assert abs(result["accuracy"] - report["before"]["metrics"]["accuracy"]) < 0.02
    state = load_checkpoint(child / "checkpoints" / "last.pt")
    assert state["compression"][0]["config"]["name"] == "int8"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prune", "1.5"], "between 0 and 1"),
        (["--prune", "0"], "between 0 and 1"),
        (["--quantize", "int8-static", "--calib-batches", "0"], "needs calibration data"),
        (["--quantize", "int4"], "unknown --quantize"),
        (["--finetune-epochs", "1"], "go with --prune"),
        ([], "no compression pass"),
    ],
)
def test_bad_compress_input_exits_2_and_writes_nothing(
    digits_run: Path, runs_root: Path, args: list[str], message: str
) -> None:
    before, runs = snapshot(digits_run), set(digits_run.parent.iterdir())
    code, out = compress_cli(str(digits_run), *args)
    assert code == 2, out
    assert message in out
    assert snapshot(digits_run) == before and set(digits_run.parent.iterdir()) == runs


def test_a_run_without_checkpoint_is_refused(digits_run: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.yaml").write_text((digits_run / "config.yaml").read_text())
    code, out = compress_cli(str(bare), "--quantize", "int8")
    assert code == 2 and "has no last checkpoint" in out


def test_structured_pruning_of_a_layer_type_it_does_not_know_is_refused(runs_root: Path) -> None:
    train(["model=linear", "trainer.epochs=1", *SINGLE])
    code, out = compress_cli("latest", "--prune", "0.5", "--prune-method", "structured-channels")
    assert code == 2 and "no layer pair it knows how to narrow" in out
    (static,) = build_passes({"name": "int8_static"})
    with pytest.raises(TrainctlError, match="no float Conv or Linear layers to trace"):
        static.check(nn.Linear(3, 2))

    class Custom(nn.Module):  # its own forward: the pass cannot know how the two layers are wired
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    (prune,) = build_passes({"name": "prune", "method": "structured-channels"})
    with pytest.raises(TrainctlError, match="layer types it does not know: Custom"):
        prune.check(Custom())


def test_quantizing_twice_or_pruning_after_int8_is_refused(digits_run: Path, runs_root: Path) -> None:
    assert compress_cli(str(digits_run), "--quantize", "int8")[0] == 0
    code, out = compress_cli(str(latest_beside(digits_run)), "--prune", "0.5")
    assert code == 2 and "cannot follow 'int8'" in out


def test_global_pruning_folds_masks_and_fine_tuning_keeps_the_zeros(
    digits_run: Path, runs_root: Path
) -> None:
    code, out = compress_cli(str(digits_run), "--prune", "0.6", "--finetune-epochs", "1")
    assert code == 0, out
    child = latest_beside(digits_run)
    state = load_checkpoint(child / "checkpoints" / "last.pt")
    assert not any(k.endswith(("_orig", "_mask")) for k in state["model"])  # masks folded in
    weights = [v for k, v in state["model"].items() if k.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.6, abs=0.01)  # fine-tuning did not bring pruned weights back
    report = json.loads((child / "report.json").read_text())
    layers = report["after"]["layers"]
    assert set(layers) == {"1", "3", "5"} and all(0 < layer["sparsity"] < 1 for layer in layers.values())
    assert report["after"]["nonzero_parameters"] < 0.5 * report["before"]["nonzero_parameters"]
    assert "fine-tune epoch 1/1" in (child / "compress.log").read_text()


def test_structured_pruning_really_removes_units(digits_run: Path, runs_root: Path) -> None:
    code, out = compress_cli(str(digits_run), "--prune", "0.5", "--prune-method", "structured-channels")
    assert code == 0, out
    child = load_run(str(latest_beside(digits_run)))
    shapes = {k: tuple(v.shape) for k, v in child.model.state_dict().items() if k.endswith("weight")}
    assert shapes == {"1.weight": (32, 64), "3.weight": (16, 32), "5.weight": (10, 16)}
    parent = load_run(str(digits_run))
    assert static_figures(child.model)[0] < static_figures(parent.model)[0] / 2


def narrowed_outputs(model: nn.Module, example: torch.Tensor) -> tuple[torch.Tensor, nn.Module]:
    """Outputs after narrowing every known width by half, and the rebuilt model of the same layout."""
    (prune,) = build_passes({"name": "prune", "method": "structured-channels", "amount": 0.5})
    prune.check(model)
    job = PassJob(cfg=None, data=None, device=torch.device("cpu"), log=lambda line: None)  # type: ignore[arg-type]
    small = prune.apply(model, job).eval()
    return small(example), small


def test_structured_pruning_of_conv_chains_and_residual_blocks_rebuilds_the_layout() -> None:
    class Block(nn.Module):  # the residual basic block of He et al.
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))

    def build() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), Block(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
        )  # fmt: skip

    model = build().eval()
    assert [(n.producer, n.consumer) for n in narrowables(model)] == [("3.conv1", "3.conv2")]
    example = torch.randn(2, 3, 8, 8)
    out, small = narrowed_outputs(model, example)
    assert small.get_submodule("3.conv1").out_channels == 4 and small.get_submodule("3.bn1").num_features == 4
    (prune,) = build_passes({"name": "prune", "method": "structured-channels", "amount": 0.5})
    rebuilt = prune.restore(build(), {"widths": {"3.conv1": 4}}).eval()
    rebuilt.load_state_dict(small.state_dict())
    assert torch.equal(rebuilt(example), out)


def test_every_pass_round_trips_through_its_checkpoint(digits_run: Path) -> None:
    parent = load_run(str(digits_run))
    x = parent.data.test.inputs[:32]
    for step in (
        {"name": "int8"},
        {"name": "int8_static", "calib_batches": 4},
        {"name": "cast", "dtype": "bf16"},
        {"name": "prune", "method": "structured-channels", "amount": 0.25, "finetune_epochs": 1},
        {"name": "chain", "passes": [{"name": "prune", "amount": 0.5}, {"name": "int8"}]},
    ):
        child, card = compress_run(parent, step, thread_count=1, log=lambda line: None)
        state = load_checkpoint(child.checkpoint("last"))
        first = rebuild_model(parent.cfg.model, parent.data.spec, state).eval()
        second = load_run(child).model
        with torch.no_grad():
            assert torch.equal(first(x), second(x)), step
            assert second(x).dtype == torch.float32
        assert abs(card.after.metrics["accuracy"] - card.before.metrics["accuracy"]) < 0.05, step


def test_train_with_a_compress_option_writes_a_child_run(runs_root: Path) -> None:
    summary = train([*DIGITS, "compress=prune50"])
    parent = Path(summary["run dir"])
    child = Path(summary["compressed"]["run dir"])
    assert (runs_root / "latest").resolve() == child and child.parent == parent.parent != child
    assert json.loads((child / "run.json").read_text())["parent"] == f"mlp_digits/{parent.name}"
    assert (child / "report.md").is_file() and "test accuracy" in summary["compressed"]
    assert load_checkpoint(parent / "checkpoints" / "last.pt").get("compression") is None
    result = runner.invoke(app, ["train", "--resume", str(child)])
    assert result.exit_code == 2 and "cannot be resumed" in result.output


def test_a_compress_option_the_model_cannot_take_stops_before_the_run(runs_root: Path) -> None:
    result = runner.invoke(app, ["train", "model=linear", "compress=channels50", *SINGLE])
    assert result.exit_code == 2 and "no layer pair" in result.output
    result = runner.invoke(
        app, ["train", "compress=chain", "compress.passes=[{name:int8},{name:prune}]", *SINGLE]
    )
    assert result.exit_code == 2 and "cannot follow 'int8'" in result.output
    assert not runs_root.exists()


def test_compare_prints_two_runs_and_refuses_different_data(digits_run: Path, runs_root: Path) -> None:
    assert compress_cli(str(digits_run), "--quantize", "fp16")[0] == 0
    result = runner.invoke(
        app, ["compare", str(digits_run), str(latest_beside(digits_run)), "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "model file" in result.output and "x smaller" in result.output
    assert f"{digits_run.name} vs" in result.output  # columns A and B, not parent and result
    train(["conf=linreg", "trainer.epochs=1", *SINGLE])
    result = runner.invoke(app, ["compare", str(digits_run), "latest"])
    assert result.exit_code == 2 and "different data" in result.output


def test_int8_quantizes_embedding_tables_even_with_expanded_indices() -> None:
    class Embedder(nn.Module):  # like BERT's embeddings: token-type ids are an expanded (strided) buffer
        def __init__(self) -> None:
            super().__init__()
            self.words, self.types, self.head = nn.Embedding(50, 8), nn.Embedding(2, 8), nn.Linear(8, 2)
            self.register_buffer("type_ids", torch.zeros(1, 16, dtype=torch.long))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            types = self.type_ids.expand(ids.shape[0], -1)[:, : ids.shape[1]]
            return self.head((self.words(ids) + self.types(types)).mean(dim=1))

    torch.manual_seed(0)
    model, ids = Embedder().eval(), torch.randint(0, 50, (4, 16))
    (int8,) = build_passes({"name": "int8"})
    quantized = int8.apply(copy.deepcopy(model))
    assert isinstance(quantized.words, torch.ao.nn.quantized.Embedding)
    assert isinstance(quantized.types, torch.ao.nn.quantized.Embedding)
    assert torch.allclose(quantized(ids), model(ids), atol=0.05)
    restored = int8.restore(Embedder(), {})
    restored.load_state_dict(quantized.state_dict())
    assert torch.equal(restored(ids), quantized(ids))


def test_int8_on_a_conv_net_is_static_and_structured_pruning_narrows_convolutions(runs_root: Path) -> None:
    cnn = [
        "model=cnn",
        "model.channels=[8,16]",
        "model.dense=32",
        "trainer.epochs=2",
        "trainer.threads=1",
        *SINGLE,
    ]
    parent = Path(train(cnn)["run dir"])
    code, out = compress_cli(str(parent), "--quantize", "int8", "--calib-batches", "4")
    assert code == 0, out
    child = latest_beside(parent)
    meta = json.loads((child / "run.json").read_text())
    assert meta["compression"] == [{"name": "int8_static", "calib_batches": 4}]
    report = json.loads((child / "report.json").read_text())
    assert abs(report["after"]["metrics"]["accuracy"] - report["before"]["metrics"]["accuracy"]) < 0.03
    after = report["after"]["metrics"]["accuracy"]
    assert evaluate_checkpoint(str(child), [])["accuracy"] == pytest.approx(after)
    code, out = compress_cli(str(parent), "--prune", "0.5", "--prune-method", "structured-channels")
    assert code == 0, out
    state = load_run(str(latest_beside(parent))).model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["0.weight"] == (4, 1, 3, 3) and shapes["3.weight"] == (
        16,
        4,
        3,
        3,
    )  # conv, relu, pool, conv
    assert shapes["8.weight"] == (16, 64) and shapes["11.weight"] == (10, 16)  # dense -> head


def test_a_checkpoint_with_a_moving_average_is_rebuilt_with_the_averaged_weights(digits_run: Path) -> None:
    parent = load_run(str(digits_run))
    averaged = {k: torch.full_like(v, 0.5) for k, v in parent.state["model"].items()}
    model = rebuild_model(parent.cfg.model, parent.data.spec, parent.state | {"ema": {"module": averaged}})
    assert all(torch.equal(v, averaged[k]) for k, v in model.state_dict().items())
