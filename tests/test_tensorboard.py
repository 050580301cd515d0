"""TensorBoard: every run once under `tensorboard --logdir runs/` (the `latest` link adds none), with its
config in the HParams tab."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SINGLE
from trainctl.cli.train import train
from trainctl.observe.tensorboard import flat_hparams, tensorboard_dir
from trainctl.runs.run_dir import RunDir

SHORT = ["trainer.epochs=1", "logger=tensorboard", *SINGLE]


def test_each_run_appears_once_under_the_runs_root_though_latest_links_to_one(runs_root: Path) -> None:
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    first = Path(train([*SHORT, "optim.lr=0.01"])["run dir"])
    second = Path(train([*SHORT, "optim.lr=0.1"])["run dir"])
    assert (runs_root / "latest").resolve() == second.resolve()
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(runs_root))  # as `tensorboard --logdir runs/` walks it
    multiplexer.Reload()
    assert sorted(multiplexer.Runs()) == sorted(
        str(tensorboard_dir(RunDir(run)).relative_to(runs_root)) for run in (first, second)
    )
    assert not list(first.glob("**/events.out.tfevents.*"))  # none that `latest` could show again


def test_the_run_config_is_in_the_hparams_tab_beside_its_test_metrics(runs_root: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    run = Path(train([*SHORT, "optim.lr=0.02", "model.hidden=[64,32]"])["run dir"])
    events = EventAccumulator(str(tensorboard_dir(RunDir(run))))
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    assert set(content) == {metadata.SESSION_START_INFO_TAG}  # no experiment of its own to override others
    hparams = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG]).hparams
    assert hparams["optim.lr"].number_value == 0.02
    assert hparams["model.hidden"].string_value == "[64,32]"
    assert hparams["parallel.name"].string_value == "none"
    assert "run.root" not in hparams
    assert {"test/accuracy", "test/loss"} <= set(events.Tags()["scalars"])  # the metrics columns


def test_hparams_values_are_numbers_or_text() -> None:
    tree = {"a": {"b": 1, "c": [1, 2], "d": None, "e": True}, "run": {"root": "x"}, "f": "g"}
    assert flat_hparams(tree) == {"a.b": 1, "a.c": "[1,2]", "a.e": "true", "f": "g"}
