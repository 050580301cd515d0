"""`trainctl report`: curves labelled by what differs between the runs (swept keys first, group choices
as `group=option`, never cut), the legend outside the axes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from tests.conftest import SINGLE, trainctl
from trainctl.cli.report import figures, label_runs, load, report
from trainctl.config.compose import compose
from trainctl.observe.plots import Figure, Series, plotted
from trainctl.runs.run_dir import RunDir


def fake_run(folder: Path, overrides: list[str]) -> RunDir:
    """A run's files as `trainctl train OVERRIDES` writes them, with two logged steps and one evaluation."""
    folder.mkdir(parents=True)
    run = RunDir(folder)
    tree = OmegaConf.to_container(compose(overrides).tree, enum_to_str=True)
    run.config_file.write_text(yaml.safe_dump(tree, sort_keys=False))
    run.overrides_file.write_text(yaml.safe_dump(overrides))
    run.update_meta(id=f"{folder.parent.name}/{folder.name}", preset="mlp_digits", status="finished")
    records = [
        {"kind": "train", "step": 10, "loss": 1.0, "lr": 0.01, "samples_per_s": 100.0},
        {"kind": "train", "step": 20, "loss": 0.5, "lr": 0.01, "samples_per_s": 100.0},
        {"kind": "eval", "step": 20, "epoch": 0, "split": "test", "loss": 0.6, "accuracy": 0.9},
    ]
    run.metrics_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_a_sweep_is_labelled_by_its_swept_keys_first_in_their_order(tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "s"
    common = ["trainer.epochs=1", *SINGLE]
    jobs = {
        "a": ["optim.lr=0.01", "model=mlp", *common],
        "b": ["optim.lr=0.003", "model=mlp", *common],
        "c": ["optim.lr=0.01", "model=linear", *common],
    }
    runs = [load(fake_run(sweep / name, overrides)) for name, overrides in jobs.items()]
    keys = label_runs(runs)
    assert keys == ["optim.lr", "model"]  # model.hidden etc. follow from model= and are not repeated
    assert [r.label for r in runs] == [
        "optim.lr=0.01 model=mlp",
        "optim.lr=0.003 model=mlp",
        "optim.lr=0.01 model=linear",
    ]


def test_runs_that_differ_by_parallel_ddp_say_so(tmp_path: Path) -> None:
    ddp = load(fake_run(tmp_path / "mlp_digits" / "1", []))  # the preset's 2 ranks under ddp
    single = load(fake_run(tmp_path / "mlp_digits" / "2", ["launcher.nproc=1", "parallel=none"]))
    label_runs([ddp, single])
    assert ddp.label == "launcher.nproc=2 parallel=ddp"
    assert single.label == "launcher.nproc=1 parallel=none"


def test_a_group_chosen_in_a_config_file_is_labelled_as_group_equals_option(tmp_path: Path) -> None:
    ddp = load(fake_run(tmp_path / "x" / "1", ["launcher.nproc=2"]))
    fsdp = load(fake_run(tmp_path / "x" / "2", ["launcher.nproc=2", "parallel=fsdp"]))
    ddp.overrides = fsdp.overrides = []  # as if both came from --config files
    assert label_runs([ddp, fsdp]) == ["parallel"]
    assert (ddp.label, fsdp.label) == ("parallel=ddp", "parallel=fsdp")


def test_long_labels_stay_whole_and_identical_runs_are_told_apart_by_id(tmp_path: Path) -> None:
    many = [f"model.hidden=[{w},{w},{w},{w}]" for w in (123456, 654321)]
    long_a = load(fake_run(tmp_path / "p" / "1", [many[0], "optim.lr=0.0123456789", "trainer.seed=12345"]))
    long_b = load(fake_run(tmp_path / "p" / "2", [many[1], "optim.lr=0.0987654321", "trainer.seed=54321"]))
    same = [load(fake_run(tmp_path / "q" / name, [])) for name in ("1", "2")]
    label_runs([long_a, long_b])
    assert (
        long_a.label == "model.hidden=[123456,123456,123456,123456] optim.lr=0.0123456789 trainer.seed=12345"
    )
    label_runs(same)
    assert [r.label for r in same] == ["q/1", "q/2"]


def test_the_legend_sits_outside_the_axes_and_wraps_long_labels() -> None:
    label = "optim.lr=0.01 model=mlp model.hidden=[512,256] trainer.seed=3 parallel=ddp"
    figure = Figure("loss", "loss", "loss", series=[Series(label, [1, 2], [1.0, 0.5])], legend_title="t")
    fig = plotted(figure)
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = ax.get_legend()
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 > ax.get_window_extent(renderer).x1
    shown = legend.get_texts()[0].get_text()
    assert "\n" in shown and shown.replace("\n", " ") == label


def test_report_of_a_sweep_folder_writes_the_swept_labels_and_legend_title(tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "s"
    (sweep).mkdir(parents=True)
    (sweep / "sweep.json").write_text("{}")
    fake_run(sweep / "a", ["optim.lr=0.01", *SINGLE])
    fake_run(sweep / "b", ["optim.lr=0.1", *SINGLE])
    path = report([str(sweep)], tmp_path / "out")
    text = path.read_text()
    assert "| optim.lr=0.01 |" in text and "| optim.lr=0.1 |" in text
    runs = [load(RunDir(sweep / "a")), load(RunDir(sweep / "b"))]
    label_runs(runs)
    assert [s.label for s in {f.name: f for f in figures(runs)}["accuracy"].series] == [
        "optim.lr=0.01",
        "optim.lr=0.1",
    ]


def test_report_command_on_two_real_runs_labels_the_parallel_mode(runs_root: Path) -> None:
    first = trainctl("train", "trainer.epochs=1", runs=runs_root)
    second = trainctl("train", "trainer.epochs=1", *SINGLE, runs=runs_root)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = sorted((runs_root / "mlp_digits").iterdir())
    result = trainctl("report", str(a), str(b), "--out", str(runs_root / "cmp"), runs=runs_root)
    assert result.returncode == 0, result.stderr
    text = (runs_root / "cmp" / "report.md").read_text()
    assert "parallel=ddp" in text and "parallel=none" in text
