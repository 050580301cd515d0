"""Compose the config tree from conf/ with Hydra: a preset, group choices, then key=value overrides."""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainctl.config.schema import Config
from trainctl.config.validate import REGISTRY_SECTIONS, apply_override, to_config, typed_tree
from trainctl.errors import TrainctlError, suggestion

GROUP_ALIASES = {"conf": "preset"}  # `conf=NAME` picks a preset
KEY_ALIASES = {"dataset": "data"}  # `dataset.root=X` is `data.root=X`
FILE_PRESET = "__effective__"  # the preset as applied, stored in Hydra's ConfigStore


def conf_dir() -> Path:
    """The folder of YAML configs: $TRAINCTL_CONF_DIR, else the package's own `trainctl.conf` data."""
    env = os.environ.get("TRAINCTL_CONF_DIR")
    return Path(env) if env else Path(str(importlib.resources.files("trainctl.conf")))


def groups() -> list[str]:
    """Config groups: one sub-folder of conf/ each."""
    return sorted(p.name for p in conf_dir().iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def options(group: str) -> list[str]:
    """The options of a group: its YAML files without the suffix."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def option_file(group: str, option: str) -> Path:
    """The YAML file of one option, or a TrainctlError with a suggestion."""
    group = GROUP_ALIASES.get(group, group)
    if group not in groups():
        raise TrainctlError(
            f"unknown config group '{group}'.{suggestion(group, groups())}",
            fix=f"groups: {', '.join(groups())}",
        )
    path = conf_dir() / group / f"{option}.yaml"
    if not path.is_file():
        shown = "conf" if group == "preset" else group
        raise TrainctlError(
            f"no {shown} named '{option}'.{suggestion(option, options(group))}",
            fix=f"choose {shown}= one of: {', '.join(options(group))}",
        )
    return path


def describe(group: str, option: str) -> str:
    """The first comment line of an option's YAML file: its one-line description."""
    for line in option_file(group, option).read_text().splitlines():
        text = line.strip()
        if text.startswith("#") and not text.startswith("# @package"):
            return text.lstrip("# ")
    return ""


@dataclass
class ParsedOverrides:
    """Command-line overrides split into group choices and key=value settings."""

    groups: list[tuple[str, str]] = field(default_factory=list)
    values: list[tuple[str, Any, str]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def parse_overrides(args: Sequence[str]) -> ParsedOverrides:
    """Parse Hydra override syntax; malformed text, sweeps and deletions are user errors."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = ParsedOverrides()
    known_groups = groups()
    for text in args:
        try:
            (override,) = parser.parse_overrides([text])
        except HydraException as exc:
            raise TrainctlError(
                f"malformed override '{text}': {str(exc).splitlines()[0]}",
                fix="overrides look like key=value, group=option or key=[1,2]; quote values with spaces",
            ) from None
        if override.is_sweep_override():
            raise TrainctlError(
                f"'{text}' is a sweep (several values)",
                fix="run one value here, or several with `trainctl sweep`",
            )
        if override.is_delete():
            raise TrainctlError(
                f"'{text}' deletes a key; every key of the schema must stay",
                fix="set the key to another value instead",
            )
        key = override.key_or_group
        head, dot, rest = key.partition(".")
        value = override.value()
        if not dot and GROUP_ALIASES.get(head, head) in known_groups:
            group = GROUP_ALIASES.get(head, head)
            parsed.groups.append((group, str(value)))
            parsed.texts.append(f"{group}={value}")
            continue
        key = f"{KEY_ALIASES.get(head, head)}{dot}{rest}"
        parsed.values.append((key, value, text))
        parsed.texts.append(f"{key}={override.get_value_element_as_str()}")
    return parsed


@dataclass
class Composed:
    """The result of composition: the typed Config and the resolved tree saved as config.yaml."""

    config: Config
    tree: DictConfig
    overrides: list[str]
    notes: list[str] = field(default_factory=list)


def compose(
    args: Sequence[str], *, config_file: Path | None = None, base: DictConfig | None = None
) -> Composed:
    """Compose from conf/ (or a preset file, or a saved complete config) and apply overrides."""
    parsed = parse_overrides(args)
    notes: list[str] = []
    if base is None and config_file is not None:
        base = load_complete_config(config_file)
    if base is not None:
        if parsed.groups:
            group, option = parsed.groups[0]
            raise TrainctlError(
                f"cannot switch {group}={option} on a complete saved config",
                fix="set single keys (key=value), or start from a preset with conf=NAME",
            )
        raw, preset, origin = base, str(base.get("preset", "custom")), "saved config"
    else:
        raw, preset, notes = compose_groups(parsed.groups, config_file)
        origin = f"config file {config_file}" if config_file else f"preset '{preset}'"
    raw = OmegaConf.create(OmegaConf.to_container(raw))
    raw["preset"] = preset
    tree = typed_tree(raw, origin)
    for key, value, text in parsed.values:
        apply_override(tree, key, value, text)
    config, tree = to_config(tree)
    return Composed(config, tree, parsed.texts, notes)


def compose_groups(
    choices: list[tuple[str, str]], config_file: Path | None
) -> tuple[DictConfig, str, list[str]]:
    """Run Hydra's composition for the group choices; returns the raw tree, preset name and notes.

    A preset's values for a group the command line switched are kept where the new option has
    the same key (optim.lr survives optim=adam) and dropped, with a note, where it has not.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.errors import HydraException

    overrides = []
    for group, option in choices:
        option_file(group, option)  # a friendly error before Hydra's
        if group != "preset":
            overrides.append(f"{group}={option}")
    if config_file is not None:
        preset, preset_path = config_file.stem, config_file
    else:
        preset = next((option for group, option in choices if group == "preset"), None) or default_preset()
        preset_path = option_file("preset", preset)
    node = load_yaml(preset_path)
    notes = drop_inapplicable(node, [(g, o) for g, o in choices if g != "preset"])
    ConfigStore.instance().store(group="preset", name=FILE_PRESET, node=node, package="_global_")
    overrides.append(f"preset={FILE_PRESET}")
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            cfg = hydra_compose("config", overrides=overrides)
    except HydraException as exc:
        raise TrainctlError(
            f"cannot compose the config: {str(exc).splitlines()[0]}", where=str(preset_path)
        ) from None
    return cfg, preset, notes


def default_preset() -> str:
    """The preset that config.yaml's defaults list picks."""
    for entry in OmegaConf.load(conf_dir() / "config.yaml").get("defaults", []):
        if isinstance(entry, DictConfig) and "preset" in entry:
            return str(entry["preset"])
    raise TrainctlError("conf/config.yaml picks no default preset", where=str(conf_dir() / "config.yaml"))


def drop_inapplicable(preset: DictConfig, switched: list[tuple[str, str]]) -> list[str]:
    """Remove the preset's values that the newly chosen options have no key for; say which."""
    from trainctl.config.validate import section_schema

    notes = []
    for group, option in switched:
        section = KEY_ALIASES.get(group, group)
        values = preset.get(section)
        if not isinstance(values, DictConfig):
            continue
        name = OmegaConf.load(option_file(group, option)).get("name")
        keys = {f.name for f in dataclasses.fields(section_schema(section, name))}
        for key in [str(k) for k in values if k not in keys]:
            del values[key]
            notes.append(f"the preset's {section}.{key} does not apply to {group}={option}; dropped")
    return notes


def load_yaml(path: Path) -> Any:
    """A YAML file as OmegaConf nodes; a syntax error names the file, line and column (path:line:column)."""
    import yaml

    try:
        return OmegaConf.load(path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = " ".join(part for part in (exc.problem, f"({exc.context})" if exc.context else "") if part)
        raise TrainctlError(
            f"cannot read config file: {what or 'invalid YAML'}",
            where=where,
            fix="fix the YAML at that line and column (a missing bracket, quote or colon is the usual cause)",
        ) from None
    except Exception as exc:  # an unreadable file, or YAML that OmegaConf cannot hold
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainctlError(f"cannot read config file: {first}", where=str(path)) from None


def yaml_kind(path: Path) -> str:
    """What a readable YAML file holds at its top: 'mapping', 'nothing' (empty or comments only), else
    its kind ('a list', 'a scalar')."""
    import yaml

    value = yaml.safe_load(path.read_text())
    if value is None:
        return "nothing (it is empty or only comments)"
    if isinstance(value, dict):
        return "mapping"
    return "a list" if isinstance(value, list) else f"a single value ({str(value)[:40]!r})"


def load_complete_config(path: Path) -> DictConfig | None:
    """A YAML file holding every section with its `name` (a saved config.yaml), else None."""
    if not path.is_file():
        raise TrainctlError(f"config file not found: {path}", fix="give the path of a YAML file")
    node = load_yaml(path)
    held = yaml_kind(path)
    if not isinstance(node, DictConfig) or held != "mapping":
        raise TrainctlError(
            f"a config file holds a mapping of sections, and this one holds {held}",
            where=str(path),
            fix="write sections with their settings, e.g. `trainer:` then `  epochs: 3` on the next line; "
            "`trainctl configs` lists the presets to start from",
        )
    complete = "defaults" not in node and all(
        isinstance(node.get(s), DictConfig) and "name" in node[s] for s in REGISTRY_SECTIONS
    )
    return node if complete else None
