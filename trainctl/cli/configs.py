"""`trainctl configs`: list the groups and options, show a resolved config, copy a preset to edit."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from trainctl.config.compose import (
    GROUP_ALIASES,
    compose,
    describe,
    groups,
    option_file,
    option_origin,
    options,
)
from trainctl.errors import TrainctlError, suggestion


def list_configs(group: str | None, console: Console) -> None:
    shown = ["preset" if g == "conf" else g for g in ([group] if group else groups())]
    for name in shown:
        if name not in groups():
            raise TrainctlError(
                f"unknown config group '{name}'.{suggestion(name, groups())}",
                fix=f"groups: {', '.join(groups())}",
            )
    table = Table(show_header=True, header_style="bold")
    table.add_column("group")
    table.add_column("option")
    table.add_column("what it is")
    table.add_column("from")
    for name in shown:
        label = "conf (preset)" if name == "preset" else name
        for option in options(name):
            table.add_row(label, option, describe(name, option), option_origin(name, option))
            label = ""
    console.print(table)
    console.print(
        "pick one with GROUP=OPTION (a preset with conf=NAME); see every key with `trainctl configs show`"
    )


def show_config(overrides: Sequence[str], config_file: Path | None) -> str:
    """The resolved config as YAML, every key of every schema included."""
    return OmegaConf.to_yaml(compose(overrides, config_file=config_file).tree)


def copy_preset(name: str, dest: Path, force: bool) -> tuple[Path, str]:
    """Copy a preset's YAML to `dest` for editing (train it with `trainctl train --config DEST`), or
    GROUP/OPTION (model/mlp, conf/linreg) into the config folder `dest` as DEST/GROUP/OPTION.yaml (use it
    with --config-dir DEST). Returns the file written and how to use it."""
    group, _, option = name.rpartition("/")
    if group:
        group = GROUP_ALIASES.get(group, group)
        source = option_file(group, option)
        dest = dest / group / source.name
        shown = "conf" if group == "preset" else group
        usage = f"trainctl train --config-dir {dest.parents[1]} {shown}={option}"
    else:
        source = option_file("preset", name)
        if dest.is_dir():
            dest = dest / source.name
        usage = f"trainctl train --config {dest}"
    if dest.exists() and not force:
        raise TrainctlError(f"{dest} already exists", fix="choose another path or pass --force")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    return dest, usage
