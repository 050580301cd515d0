"""Shell completion: the bash script completes commands, conf=, group= values and section keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainctl.cli.completion import complete_overrides

BIN = Path(sys.executable).parent

BASH_PRELUDE = r"""
source <(trainctl --show-completion bash) || exit 3
# What bash hands a completion function: `conf=ml` arrives split at '=' (COMP_WORDBREAKS).
complete_words() {
    COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
    _trainctl_completion trainctl
    echo "${COMPREPLY[*]}"
}
"""
BASH_TEST = (
    BASH_PRELUDE
    + r"""
complete_words trainctl train conf = ml
complete_words trainctl train conf =
complete_words trainctl smoke conf = lin
complete_words trainctl train optim = ada
complete_words trainctl train conf = mf_movielens model.
complete_words trainctl tr
"""
)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_script_completes_presets_options_and_keys() -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", BASH_TEST], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "mlp_digits mlp_mnist"  # `conf=ml<TAB>`: readline keeps `conf=`, gets the rest
    presets = {"bert_sst2", "linreg", "mf_movielens", "mlp_digits", "mlp_mnist", "resnet_cifar"}
    presets |= {"ease_movielens", "item_knn_movielens", "implicit_mf_movielens"}
    assert set(lines[1].split()) == presets
    assert lines[2] == "linreg"
    assert lines[3] == "adagrad adam adamw"
    assert lines[4].split() == ["model.factors=", "model.init_std=", "model.reg=", "model.bias_reg="]
    assert lines[5] == "train"


def make_run(root: Path, rel: str) -> Path:
    path = root / rel
    path.mkdir(parents=True)
    (path / "run.json").write_text("{}")
    return path


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_eval_tab_completes_latest_and_run_directories(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    old = make_run(root, "mlp_digits/20260101-000000")
    new = make_run(root, "mlp_digits/20260102-000000")
    job = make_run(root, "sweeps/s/optim.lr=0.01_model=mlp-46c987c3")
    (root / "latest").symlink_to(new.relative_to(root))
    (root / "tensorboard" / "mlp_digits" / new.name).mkdir(parents=True)  # event files: not a run
    script = (
        BASH_PRELUDE
        + r"""
complete_words trainctl eval ""
complete_words trainctl eval la
complete_words trainctl eval "$ROOT/mlp_digits/202601"
complete_words trainctl eval "$ROOT/sweeps/s/optim.lr" = "0.01_model" = m
complete_words trainctl train --resume la
"""
    )
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TRAINCTL_RUNS_DIR": str(root),
        "ROOT": str(root),
    }
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["latest", str(old), str(new), str(job)]
    assert lines[1] == "latest"
    assert lines[2].split() == [str(old), str(new)]
    assert lines[3] == "mlp-46c987c3"  # readline keeps what precedes the last '='
    assert lines[4] == "latest"


def test_completion_reads_configs_without_importing_torch_or_hydra() -> None:
    code = (
        "import sys; from trainctl.cli.completion import complete_overrides as c; "
        "print(c([], 'trainer.sched'), c(['model=linear'], 'model.'), "
        "'torch' in sys.modules, 'hydra' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['trainer.schedule=']", "['model.bias=']", "False", "False"]


def test_values_of_enums_booleans_loggers_and_nested_keys() -> None:
    assert complete_overrides([], "trainer.device=") == [
        "trainer.device=auto",
        "trainer.device=cpu",
        "trainer.device=cuda",
    ]
    assert complete_overrides([], "trainer.profile=t") == ["trainer.profile=true"]
    assert complete_overrides([], "logger=") == ["logger=jsonl", "logger=tensorboard", "logger=mlflow"]
    assert "trainer.early_stopping.patience=" in complete_overrides([], "trainer.early")
    assert complete_overrides([], "dataset.") == complete_overrides(["dataset=digits"], "dataset.")
    assert "optim.momentum=" in complete_overrides(["optim=sgd"], "optim.")
    assert "optim.momentum=" not in complete_overrides(["optim=adam"], "optim.")
    assert set(complete_overrides([], "co")) == {"compress.", "compress=", "conf="}


def user_folder_and_plugin(tmp_path: Path) -> dict[str, str]:
    """A config folder (a `_target_` model, a preset) and an installed plugin (its .dist-info on the
    path, entry point in trainctl.plugins); the environment that sees the plugin."""
    from tests.test_user_components import PLUGIN, write

    write(tmp_path / "conf/model/mynet.yaml", "# my CNN\n_target_: mynet.Net\nwidth: 4\n")
    write(
        tmp_path / "conf/preset/my_digits.yaml",
        "# @package _global_\ndefaults:\n  - override /model: mynet\n",
    )
    site = tmp_path / "site"
    write(site / "tinyplug/__init__.py", PLUGIN)
    write(site / "tinyplug-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n")
    write(site / "tinyplug-0.1.dist-info/entry_points.txt", "[trainctl.plugins]\ntiny = tinyplug\n")
    return {"PYTHONPATH": str(site), "CONF": str(tmp_path / "conf")}


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_completion_offers_the_users_config_folder_and_the_plugins_options(tmp_path: Path) -> None:
    script = (
        BASH_PRELUDE
        + r"""
complete_words trainctl train --config-dir "$CONF" model =
complete_words trainctl train -cd "$CONF" conf = my
complete_words trainctl train -cd "$CONF" model = mynet model.
complete_words trainctl train model = tiny model.
complete_words trainctl train model = mynet model.
"""
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **user_folder_and_plugin(tmp_path)}
    env.pop("TRAINCTL_CONFIG_PATH", None)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert {"mynet", "tiny", "mlp", "cnn"} <= set(lines[0].split())  # the folder's, the plugin's, built-in
    assert lines[1] == "my_digits"
    assert lines[2] == "model.width="  # the keys its YAML sets
    assert lines[3] == "model.width="  # the plugin's schema, read from its source
    assert lines[4] == ""  # without the folder on the line, there is no mynet


def test_plugin_completion_imports_neither_the_plugin_nor_torch(tmp_path: Path) -> None:
    env = {**os.environ, **user_folder_and_plugin(tmp_path)}
    env["TRAINCTL_CONFIG_PATH"] = env.pop("CONF")
    code = (
        "import sys; from trainctl.cli.completion import complete_overrides as c; "
        "print(c([], 'model=t'), c(['model=tiny'], 'model.w'), c([], 'model=myn'), "
        "'torch' in sys.modules, 'tinyplug' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["['model=tiny']", "['model.width=']", "['model=mynet']", "False", "False"]
