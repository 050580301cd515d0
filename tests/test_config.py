"""Composition: presets, group choices, key overrides, aliases, copied presets and saved configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from typer.testing import CliRunner

from trainctl.cli.app import app
from trainctl.config.compose import compose
from trainctl.errors import TrainctlError
from trainctl.models.mlp import MLPConfig
from trainctl.optim.optimizers import AdamConfig

runner = CliRunner()


def test_default_is_the_digits_preset_with_every_schema_key() -> None:
    cfg = compose([]).config
    assert cfg.preset == "mlp_digits"
    assert cfg.data.name == "digits"
    assert isinstance(cfg.model, MLPConfig)
    assert cfg.trainer.grad_clip is None  # a schema default the YAML never mentions


def test_preset_then_group_then_key_overrides_in_that_order(tmp_path: Path) -> None:
    cfg = compose(
        [
            "conf=mlp_mnist",
            "model.hidden=[512,256]",
            "optim=adam",
            "optim.lr=3e-3",
            "trainer.epochs=5",
            f"data.root={tmp_path}",
        ]
    ).config
    assert cfg.preset == "mlp_mnist"
    assert cfg.data.name == "mnist" and cfg.data.root == str(tmp_path)
    assert isinstance(cfg.optim, AdamConfig) and cfg.optim.name == "adam"
    assert cfg.optim.lr == pytest.approx(3e-3)
    assert cfg.model.hidden == [512, 256] and cfg.trainer.epochs == 5


def test_command_line_group_choice_beats_the_preset() -> None:
    assert compose(["conf=mlp_mnist", "dataset=digits"]).config.data.name == "digits"


def test_dataset_keys_alias_data_keys(tmp_path: Path) -> None:
    cfg = compose(["conf=mlp_mnist", f"dataset.root={tmp_path}"]).config
    assert cfg.data.root == str(tmp_path)


def test_relative_data_root_becomes_absolute() -> None:
    cfg = compose(["conf=mlp_mnist", "data.root=some/where"]).config
    assert Path(cfg.data.root).is_absolute()


def test_data_root_defaults_to_env_then_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRAINCTL_DATA_DIR", str(tmp_path))
    assert compose(["conf=mlp_mnist"]).config.data.root == str(tmp_path)
    monkeypatch.delenv("TRAINCTL_DATA_DIR")
    assert compose(["conf=mlp_mnist"]).config.data.root == str(Path("~/.cache/trainctl/data").expanduser())


def test_name_keys_cannot_be_set_as_values() -> None:
    with pytest.raises(TrainctlError, match="switch the whole option"):
        compose(["model.name=linear"])


def test_typo_in_a_preset_file_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hiden: [3]\n")
    with pytest.raises(TrainctlError, match=r"unknown config key 'model.hiden'.*Did you mean 'hidden'"):
        compose([], config_file=bad)


def test_configs_cp_then_train_the_copy(tmp_path: Path, runs_root: Path) -> None:
    dest = tmp_path / "my_linreg.yaml"
    result = runner.invoke(app, ["configs", "cp", "linreg", str(dest)])
    assert result.exit_code == 0, result.output
    text = dest.read_text().replace("epochs: 5", "epochs: 1")
    dest.write_text(text)
    cfg = compose(["optim.lr=0.05"], config_file=dest).config
    assert cfg.preset == "my_linreg" and cfg.trainer.epochs == 1 and cfg.optim.lr == pytest.approx(0.05)
    result = runner.invoke(app, ["train", "--config", str(dest)])
    assert result.exit_code == 0, result.output
    assert (runs_root / "my_linreg").is_dir()
    again = runner.invoke(app, ["configs", "cp", "linreg", str(dest)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_a_saved_complete_config_trains_as_is(tmp_path: Path) -> None:
    shown = runner.invoke(app, ["configs", "show", "conf=linreg", "trainer.epochs=2"])
    assert shown.exit_code == 0, shown.output
    path = tmp_path / "full.yaml"
    path.write_text(shown.output)
    cfg = compose(["optim.lr=0.2"], config_file=path).config
    assert cfg.trainer.epochs == 2 and cfg.optim.lr == pytest.approx(0.2) and cfg.model.name == "linear"
    with pytest.raises(TrainctlError, match="cannot switch"):
        compose(["optim=adam"], config_file=path)


def test_configs_show_is_valid_yaml_of_the_resolved_tree() -> None:
    result = runner.invoke(app, ["configs", "show", "conf=mlp_mnist", "optim=sgd", "optim.nesterov=true"])
    assert result.exit_code == 0, result.output
    tree = yaml.safe_load(result.output)
    assert tree["optim"] == {**tree["optim"], "name": "sgd", "nesterov": True}
    assert tree["trainer"]["schedule"] == "onecycle"
    assert OmegaConf.create(tree).data.name == "mnist"


def test_configs_list_names_groups_and_presets() -> None:
    result = runner.invoke(app, ["configs", "list"])
    assert result.exit_code == 0
    for word in ("mlp_mnist", "linreg", "adagrad", "digits", "none"):
        assert word in result.output
    only = runner.invoke(app, ["configs", "list", "optim"])
    assert "adamw" in only.output and "mlp_mnist" not in only.output
    bad = runner.invoke(app, ["configs", "list", "optimm"])
    assert bad.exit_code == 2 and "Did you mean 'optim'" in bad.output
