"""Compose the config tree from conf/ with Hydra: a preset, group choices, then key=value overrides."""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainctl.config.schema import Config
from trainctl.config.targets import TARGET, TARGET_ONLY_SECTIONS, is_target_section, trainctl_keys
from trainctl.config.validate import REGISTRY_SECTIONS, apply_override, registry, to_config, typed_tree
from trainctl.errors import TrainctlError, suggestion

GROUP_ALIASES = {"conf": "preset"}  # `conf=NAME` picks a preset
KEY_ALIASES = {"dataset": "data"}  # `dataset.root=X` is `data.root=X`
# `logger.mlflow.KEY=X` is `mlflow.KEY=X`: a logger's options are the section named after it
FILE_PRESET = "__effective__"  # the preset as applied, stored in Hydra's ConfigStore
PRIMARY = "__trainctl_config__"  # conf/config.yaml, stored in Hydra's ConfigStore


CONFIG_PATH_ENV = "TRAINCTL_CONFIG_PATH"  # the user's config folders, os.pathsep-separated, first wins
LEGACY_CONF_ENV = "TRAINCTL_CONF_DIR"  # older name of one such folder
BUILT_IN = "built-in"


def conf_dir() -> Path:
    """The package's own folder of YAML configs (`trainctl.conf`)."""
    return Path(str(importlib.resources.files("trainctl.conf")))


def add_config_dirs(dirs: Sequence[Path]) -> None:
    """Put folders ahead of the user's config path for this process and every process it starts
    (`--config-dir`: workers, restarts and sweep children read the same path)."""
    current = os.environ.get(CONFIG_PATH_ENV, "")
    given = [str(Path(d).expanduser().absolute()) for d in dirs]
    os.environ[CONFIG_PATH_ENV] = os.pathsep.join([*given, *([current] if current else [])])


def user_config_dirs() -> list[Path]:
    """The user's config folders, in order (--config-dir, then $TRAINCTL_CONFIG_PATH, then
    $TRAINCTL_CONF_DIR); each must be a readable folder of valid YAML files."""
    texts = [os.environ.get(CONFIG_PATH_ENV, ""), os.environ.get(LEGACY_CONF_ENV, "")]
    return list(checked_config_dirs(os.pathsep.join(t for t in texts if t)))


@functools.cache
def checked_config_dirs(path_list: str) -> tuple[Path, ...]:
    folders = []
    for text in dict.fromkeys(p for p in path_list.split(os.pathsep) if p):
        folder = Path(text).expanduser().absolute()
        where = f"config folder {folder} (from --config-dir or ${CONFIG_PATH_ENV})"
        fix = "give a folder laid out like trainctl's conf/: model/NAME.yaml, preset/NAME.yaml, ..."
        if not folder.exists():
            raise TrainctlError("config folder not found", where=where, fix=fix)
        if not folder.is_dir():
            raise TrainctlError("a config folder must be a directory, not a file", where=where, fix=fix)
        if not os.access(folder, os.R_OK | os.X_OK):
            raise TrainctlError("cannot read the config folder (permission denied)", where=where)
        if folder.resolve() == conf_dir().resolve():
            continue  # the built-in folder itself (a copy of it is a user folder like any other)
        for path in sorted(folder.glob("*/*.yaml")):
            load_yaml(path)  # bad YAML: path:line:column, before anything else happens
        folders.append(folder)
    return tuple(folders)


def config_folders() -> list[Path]:
    """The config search path: the user's folders first, then the built-in one."""
    return [*user_config_dirs(), conf_dir()]


def origin(folder: Path) -> str:
    return BUILT_IN if folder == conf_dir() else str(folder)


def groups() -> list[str]:
    """Config groups: one sub-folder of conf/ each (and of the user's folders)."""
    return sorted(
        {
            p.name
            for folder in config_folders()
            for p in folder.iterdir()
            if p.is_dir() and not p.name.startswith(("_", "."))
        }
    )


def options(group: str) -> list[str]:
    """The options of a group: its YAML files without the suffix, in every config folder, and the
    components that installed plugins registered for it."""
    return sorted(set(file_options(group)) | set(plugin_options(group)))


def file_options(group: str) -> list[str]:
    """The options of a group that are YAML files (without the suffix), in every config folder."""
    return sorted({p.stem for folder in config_folders() for p in (folder / group).glob("*.yaml")})


def plugin_options(group: str) -> dict[str, str]:
    """Option -> plugin, for the names installed plugins registered in the group's registry."""
    section = KEY_ALIASES.get(group, group)
    if section not in REGISTRY_SECTIONS:
        return {}
    chosen = registry(section)
    return {name: chosen.origins[name] for name in chosen.plugin_names()}


def option_node(group: str, option: str) -> DictConfig:
    """An option as config nodes: its YAML file, or a plugin's component with its schema's defaults."""
    path = find_option(group, option)
    if path is None and option in plugin_options(group):
        return OmegaConf.create({"name": option})
    return load_yaml(option_file(group, option))


def find_option(group: str, option: str) -> Path | None:
    """The YAML file of one option: the first config folder that has it."""
    for folder in config_folders():
        path = folder / group / f"{option}.yaml"
        if path.is_file():
            return path
    return None


def option_origin(group: str, option: str) -> str:
    """Where an option comes from: 'built-in', the user's config folder, or the plugin that registered it."""
    path = find_option(group, option)
    plugin = plugin_options(group).get(option) if path is None else None
    return plugin or origin(option_file(group, option).parents[1])


def option_file(group: str, option: str) -> Path:
    """The YAML file of one option, or a TrainctlError with a suggestion."""
    group = GROUP_ALIASES.get(group, group)
    if group not in groups():
        raise TrainctlError(
            f"unknown config group '{group}'.{suggestion(group, groups())}",
            fix=f"groups: {', '.join(groups())}",
        )
    path = find_option(group, option)
    if path is None:
        shown = "conf" if group == "preset" else group
        folders = ", ".join(origin(f) for f in config_folders())
        raise TrainctlError(
            f"no {shown} named '{option}'.{suggestion(option, options(group))}",
            where=f"config folders: {folders}",
            fix=f"choose {shown}= one of: {', '.join(options(group))}; "
            f"or add {group}/{option}.yaml to a folder given with --config-dir",
        )
    return path


def describe(group: str, option: str) -> str:
    """The first comment line of an option's YAML file: its one-line description."""
    if find_option(group, option) is None and option in plugin_options(group):
        schema = registry(KEY_ALIASES.get(group, group)).get(option).schema
        return (schema.__doc__ or "").strip().splitlines()[0] if schema.__doc__ else ""
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
    args = searchpath_overrides(args)
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
        key = rest if head == "logger" and dot else f"{KEY_ALIASES.get(head, head)}{dot}{rest}"
        parsed.values.append((key, value, text))
        parsed.texts.append(f"{key}={override.get_value_element_as_str()}")
    return parsed


def searchpath_overrides(args: Sequence[str]) -> list[str]:
    """Take Hydra's `hydra.searchpath=[file://DIR,...]` as --config-dir DIR; the other overrides."""
    rest = []
    for text in args:
        key, _, value = text.lstrip("+").partition("=")
        if key != "hydra.searchpath":
            rest.append(text)
            continue
        entries = [e.strip().strip("'\"") for e in value.strip().strip("[]").split(",") if e.strip()]
        if any(not e.startswith("file://") for e in entries):
            raise TrainctlError(
                f"hydra.searchpath takes folders (file://DIR), not {value}",
                where=f"override '{text}'",
                fix="give your config folders with --config-dir DIR (or $TRAINCTL_CONFIG_PATH)",
            )
        add_config_dirs([Path(e.removeprefix("file://")) for e in entries])
    return rest


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
    parsed.values = [v for v in parsed.values if not retarget(raw, *v, notes)]
    tree = typed_tree(raw, origin)
    for key, value, text in parsed.values:
        apply_override(tree, key, value, text)
    config, tree = to_config(tree)
    return Composed(config, tree, parsed.texts, notes)


def retarget(raw: DictConfig, key: str, value: Any, text: str, notes: list[str]) -> bool:
    """Apply a `SECTION._target_=path` override to the raw tree (before typing: it picks the schema);
    the section keeps trainctl's own keys (optim.lr) and drops the old option's, with a note."""
    section, _, leaf = key.partition(".")
    if leaf == TARGET and section in TARGET_ONLY_SECTIONS:
        raw[section] = {TARGET: value}
        return True
    if leaf != TARGET or section not in REGISTRY_SECTIONS:
        return False
    old = raw.get(section)
    if is_target_section(old) and old[TARGET] == value:
        return True
    kept = (
        trainctl_keys(registry(section).get(str(value)).schema)
        if isinstance(value, str) and "." in value
        else []
    )
    node = {TARGET: value}
    for k in [str(k) for k in old or {} if k != "name"]:
        if k in kept:
            node[k] = old[k]
        else:
            notes.append(f"{section}.{k} does not apply to {section}._target_={value}; dropped")
    raw[section] = node
    return True


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
        if find_option(group, option) is None and option in plugin_options(group):
            ConfigStore.instance().store(group=group, name=option, node=option_node(group, option))
        else:
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
    notes += user_origins([("preset", preset), *defaults_of(node), *choices], config_file)
    ConfigStore.instance().store(group="preset", name=FILE_PRESET, node=node, package="_global_")
    overrides.append(f"preset={FILE_PRESET}")
    # The user's folders come first on the search path, so their options win over built-in ones; the
    # primary config (conf/config.yaml) is stored, so that it is found whichever folder comes first.
    first, *rest = config_folders()
    if rest:
        overrides.append("hydra.searchpath=[" + ",".join(quoted(f"file://{f}") for f in rest) + "]")
    ConfigStore.instance().store(name=PRIMARY, node=load_yaml(conf_dir() / "config.yaml"))
    try:
        with initialize_config_dir(config_dir=str(first), version_base=None):
            cfg = hydra_compose(PRIMARY, overrides=overrides)
    except HydraException as exc:
        raise TrainctlError(
            f"cannot compose the config: {str(exc).splitlines()[0]}", where=str(preset_path)
        ) from None
    for section in REGISTRY_SECTIONS:  # a preset's inline `_target_` section replaces the default option
        if is_target_section(node.get(section)) and section not in {
            KEY_ALIASES.get(g, g) for g, _ in choices
        }:
            cfg[section] = node[section]
    return cfg, preset, notes


def defaults_of(node: Any) -> list[tuple[str, str]]:
    """(group, option) pairs of a preset's defaults list (`override /model: mlp` counts as model)."""
    pairs = []
    for entry in node.get("defaults", []) if isinstance(node, DictConfig) else []:
        if isinstance(entry, DictConfig):
            for key, value in entry.items():
                pairs.append((str(key).replace("override", "").strip().strip("/"), str(value)))
    return pairs


def user_origins(choices: list[tuple[str, str]], config_file: Path | None) -> list[str]:
    """A note for each option that comes from the user's config folders: where it was found."""
    notes = []
    for group, option in dict.fromkeys(choices):
        if group == "preset" and config_file is not None:
            continue
        path = find_option(group, option)
        if path is not None and path.parents[1] != conf_dir():
            shown = "conf" if group == "preset" else group
            notes.append(f"{shown}={option} from {path}")
    return notes


def quoted(text: str) -> str:
    """A string as a quoted value of Hydra's override grammar."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
        node = option_node(group, option)
        name = node.get("name") or node.get(TARGET)
        keys = {f.name for f in dataclasses.fields(section_schema(section, name))}
        keys |= {str(k) for k in node} if TARGET in node else set()
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
