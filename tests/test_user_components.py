"""The user's own code and configs, from a project folder outside the package: `_target_` components,
config folders (--config-dir, TRAINCTL_CONFIG_PATH), plugins through entry points, bad input, and the
rule that a run's config is data (reading it runs no code of its author)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

TRAINCTL = str(Path(sys.executable).parent / "trainctl")  # the console script: cwd is not on its sys.path
FAST = ["launcher.nproc=1", "parallel=none", "trainer.threads=1", "trainer.epochs=1", "trainer.max_steps=3"]

MYNET = '''
import os  # noqa: F401  (an alias mynet.os.system must not get through)

from torch import nn


class Net(nn.Module):
    """A small CNN over the 8x8 digits."""

    def __init__(self, num_classes: int, in_channels: int, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(width, num_classes),
        )

    def forward(self, x):
        return self.body(x)


def not_a_model(width: int = 1):
    return "a string"
'''


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project: mynet.py and a conf/ folder with a model, an optimizer and a preset."""
    root = tmp_path_factory.mktemp("project")
    write(root / "mynet.py", MYNET)
    write(root / "conf/model/mynet.yaml", "# my CNN\n_target_: mynet.Net\nwidth: 4\n")
    write(
        root / "conf/optim/rmsprop.yaml", "# RMSprop\n_target_: torch.optim.RMSprop\nlr: 0.01\nalpha: 0.9\n"
    )
    write(
        root / "conf/preset/my.yaml",
        """\
        # @package _global_
        # mynet on the digits
        defaults:
          - override /model: mynet
          - override /dataset: digits
          - override /optim: rmsprop
        model:
          width: 6
        """,
    )
    return root


def run(
    cwd: Path, *args: str, runs: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRAINCTL_CONFIG_PATH")}
    full = {**clean, "TRAINCTL_RUNS_DIR": str(runs), **(env or {})}
    return subprocess.run([TRAINCTL, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=300)


def config_of(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def test_target_model_and_optimizer_from_the_command_line_train_and_evaluate(
    project: Path, runs_root: Path
) -> None:
    done = run(
        project,
        "train",
        "model._target_=mynet.Net",
        "model.width=5",
        "optim._target_=torch.optim.RMSprop",
        "optim.alpha=0.95",
        "scheduler._target_=torch.optim.lr_scheduler.CosineAnnealingLR",
        "loss._target_=torch.nn.CrossEntropyLoss",
        "loss.label_smoothing=0.1",
        *FAST,
        runs=runs_root,
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p.parent for p in runs_root.glob("*/*/config.yaml")]
    saved = config_of(run_dir)
    assert saved["model"] == {"name": "mynet.Net", "_target_": "mynet.Net", "width": 5}
    assert saved["optim"]["_target_"] == "torch.optim.RMSprop" and saved["optim"]["alpha"] == 0.95
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["model"]["body.0.weight"].shape[0] == 5  # the user's class, built with model.width
    evaluated = run(project, "eval", "latest", runs=runs_root)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "accuracy" in evaluated.stdout


def test_config_folder_by_option_and_by_environment(project: Path, runs_root: Path, tmp_path: Path) -> None:
    planned = run(project, "plan", "--config-dir", "conf", "conf=my", *FAST, runs=runs_root)
    assert planned.returncode == 0, planned.stderr
    assert "mynet.Net on digits" in planned.stdout
    assert f"model=mynet from {project / 'conf/model/mynet.yaml'}" in planned.stdout + planned.stderr
    env = {"TRAINCTL_CONFIG_PATH": str(project / "conf"), "PYTHONPATH": str(project)}  # from elsewhere
    shown = run(tmp_path, "configs", "show", "conf=my", "model.width=7", runs=runs_root, env=env)
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["model"]["width"] == 7
    listed = run(tmp_path, "configs", "list", "model", runs=runs_root, env={**env, "COLUMNS": "200"})
    assert "mynet" in listed.stdout and str(project / "conf") in listed.stdout and "built-in" in listed.stdout
    copied = run(tmp_path, "configs", "cp", "model/mlp", "mine", runs=runs_root)
    assert copied.returncode == 0 and (tmp_path / "mine/model/mlp.yaml").is_file()
    assert "--config-dir mine model=mlp" in copied.stdout
    assert not runs_root.exists()


def test_cd_is_the_short_name_of_config_dir_and_c_stays_config(project: Path, runs_root: Path) -> None:
    from trainctl.cli.app import hoist_config_dirs

    assert hoist_config_dirs(["train", "-cd", "conf", "-c", "x.yaml"]) == [
        "-cd",
        "conf",
        "train",
        "-c",
        "x.yaml",
    ]
    listed = run(project, "-cd", "conf", "configs", "list", "model", runs=runs_root, env={"COLUMNS": "200"})
    assert listed.returncode == 0 and str(project / "conf") in listed.stdout, listed.stderr
    shown = run(project, "configs", "show", "-cd", "conf", "-c", "conf/preset/my.yaml", runs=runs_root)
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["model"] == {"name": "mynet.Net", "_target_": "mynet.Net", "width": 6}
    assert not runs_root.exists()


@pytest.mark.parametrize("folder", ["missing", "a_file", "bad_yaml"])
def test_a_bad_config_folder_exits_2(folder: str, tmp_path: Path, runs_root: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    write(tmp_path / "bad_yaml/model/x.yaml", "hidden: [1, 2\n")
    for command in (["train", "--config-dir", folder], ["configs", "list"]):
        done = run(tmp_path, *command, runs=runs_root, env={"TRAINCTL_CONFIG_PATH": str(tmp_path / folder)})
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and str(tmp_path / folder) in done.stderr
    assert not runs_root.exists()


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["model._target_=nomodule.Net"], ["no module named 'nomodule'", "PYTHONPATH"]),
        (["model._target_=mynet.Nett"], ["has no attribute 'Nett'", "Did you mean 'Net'"]),
        (["model._target_=mynet.Net", "model.widht=3"], ["unknown key(s) widht", "Net(num_classes"]),
        (["optim._target_=mynet.Net"], ["wrong kind", "torch.optim.Optimizer"]),
        (["model._target_=mynet.not_a_model"], ["built a str", "torch.nn.Module"]),
        (["scheduler._target_=torch.optim.lr_scheduler.StepLR"], ["missing required argument(s) step_size"]),
        (["model._target_=torch.load"], ["not allowed", "your own project"]),
    ],
)
def test_a_bad_target_exits_2_and_writes_nothing(
    overrides: list[str], says: list[str], project: Path, runs_root: Path
) -> None:
    done = run(project, "train", *overrides, *FAST, runs=runs_root)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    for text in says:
        assert text in done.stderr
    assert not runs_root.exists()


PLUGIN = '''
from dataclasses import dataclass
import math
from torch import nn
from trainctl.config.ranges import ranged
from trainctl.config.schema import ModelConfig
from trainctl.models import MODELS


@dataclass
class TinyConfig(ModelConfig):
    """A plugin's tiny MLP (model.width)"""

    width: int = ranged(8, "[1, inf)")


@MODELS.register("tiny", TinyConfig)
def build(cfg, spec):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(spec.input_shape), cfg.width), nn.ReLU(),
                         nn.Linear(cfg.width, spec.num_outputs))
'''


def test_an_installed_plugin_registers_a_named_model(tmp_path: Path, runs_root: Path) -> None:
    """A distribution on the path (its .dist-info, as pip writes it), entry point in trainctl.plugins."""
    site = tmp_path / "site"
    write(site / "tinyplug/__init__.py", PLUGIN)
    write(site / "tinyplug-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n")
    write(site / "tinyplug-0.1.dist-info/entry_points.txt", "[trainctl.plugins]\ntiny = tinyplug\n")
    env = {"PYTHONPATH": str(site), "COLUMNS": "200"}
    listed = run(tmp_path, "configs", "list", "model", runs=runs_root, env=env)
    assert "tiny" in listed.stdout and "plugin tiny (tinyplug)" in listed.stdout
    refused = run(tmp_path, "train", "model=tiny", "model.width=0", *FAST, runs=runs_root, env=env)
    assert refused.returncode == 2 and "outside [1, inf)" in refused.stderr  # its schema's range holds
    done = run(tmp_path, "train", "model=tiny", "model.width=3", *FAST, runs=runs_root, env=env)
    assert done.returncode == 0, done.stderr
    (config,) = runs_root.glob("*/*/config.yaml")
    assert yaml.safe_load(config.read_text())["model"] == {"name": "tiny", "width": 3}


@pytest.mark.slow
def test_a_target_model_trains_on_two_ddp_ranks(project: Path, runs_root: Path) -> None:
    """Forkserver workers import the user's module from the working directory."""
    done = run(
        project, "train", "--config-dir", "conf", "conf=my", "parallel=ddp", "launcher.nproc=2",
        "trainer.threads=1", "trainer.epochs=1", "trainer.max_steps=4", runs=runs_root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    (run_dir,) = [p.parent for p in runs_root.glob("*/*/config.yaml")]
    assert (run_dir / "logs" / "rank1.log").is_file()
    assert config_of(run_dir)["model"]["_target_"] == "mynet.Net"


# A config is data: each of these in a handed-over run's config makes no command run it.
MARKER = "pwned"
HOSTILE = [
    {"_target_": "os.system", "command": f"touch {MARKER}"},
    {"_target_": "posix.system", "command": f"touch {MARKER}"},
    {"_target_": "builtins.exec", "_args_": [f"open('{MARKER}', 'w')"]},
    {"_target_": "subprocess.Popen", "args": ["touch", MARKER]},
    {"_target_": "mynet.os.system", "command": f"touch {MARKER}"},  # an alias through the user's module
    {"_target_": "hydra.utils.call", "config": {"_target_": "os.system", "command": f"touch {MARKER}"}},
    {"_target_": "mynet.Net", "width": {"_target_": "os.system", "command": f"touch {MARKER}"}},  # nested
    {"_target_": "mynet.Net", "_args_": [{"_target_": "os.system", "_partial_": True}]},
]


@pytest.fixture(scope="module")
def handed_over(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of a `_target_` model, as someone could hand it over."""
    runs = tmp_path_factory.mktemp("handed")
    done = run(project, "train", "--config-dir", "conf", "conf=my", *FAST, runs=runs)
    assert done.returncode == 0, done.stderr
    (config,) = runs.glob("*/*/config.yaml")
    return config.parent


def hand_over(run_dir: Path, source: Path, model: dict) -> None:
    """Copy the run `source` to `run_dir` with `model` in its config.yaml and in every checkpoint."""
    import shutil

    shutil.copytree(source, run_dir, symlinks=True)
    config = config_of(run_dir)
    config["model"] = {"name": model["_target_"], **model}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    for checkpoint in (run_dir / "checkpoints").glob("*.pt"):
        if not checkpoint.is_symlink():
            state = torch.load(checkpoint, weights_only=True)
            state["config"]["model"] = config["model"]
            torch.save(state, checkpoint)
    for manifest in (run_dir / "checkpoints").glob("*.manifest.json"):
        manifest.unlink()  # as a hand-made run would come, unverified


def test_a_run_config_with_os_system_runs_nothing_in_any_command(handed_over: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "my" / handed_over.name
    hand_over(run_dir, handed_over, HOSTILE[0])
    commands = [
        ["eval", str(run_dir)],
        ["export", str(run_dir), "--format", "safetensors", "--out", str(tmp_path / "export")],
        ["compress", str(run_dir), "--quantize", "int8"],
        ["predict", str(run_dir), "--text", "hello"],
        ["train", "--resume", str(run_dir), "trainer.epochs=2"],
        ["train", "--config", str(run_dir / "config.yaml")],
    ]
    for command in commands:
        done = run(tmp_path, *command, runs=tmp_path / "runs")
        assert done.returncode == 2, (command, done.stderr)
        assert "Traceback" not in done.stderr and "not allowed" in done.stderr, command
        assert not (tmp_path / MARKER).exists(), command
    assert not (tmp_path / "export").exists()
    assert sorted(p.name for p in (tmp_path / "runs").rglob("run.json")) == ["run.json"]  # no new run


@pytest.fixture(scope="module")
def saved_tree(project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A complete config of the project, as a run saves it."""
    shown = run(
        project, "configs", "show", "--config-dir", "conf", "conf=my", runs=tmp_path_factory.mktemp("r")
    )
    return yaml.safe_load(shown.stdout)


@pytest.mark.parametrize("hostile", HOSTILE, ids=[f"{i}-{h['_target_']}" for i, h in enumerate(HOSTILE)])
def test_no_alias_of_a_code_target_gets_through(
    hostile: dict, project: Path, saved_tree: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What every command does with a saved config (compose it from the saved tree) refuses each form."""
    from omegaconf import OmegaConf

    from trainctl.config.compose import compose
    from trainctl.errors import TrainctlError

    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the project goes on it: undone after the test
    monkeypatch.delitem(sys.modules, "mynet", raising=False)
    saved = {**saved_tree}
    saved["model"] = {"name": hostile["_target_"], **hostile}
    with pytest.raises(TrainctlError, match="not allowed"):
        compose([], base=OmegaConf.create(saved))
    assert not (project / MARKER).exists()
