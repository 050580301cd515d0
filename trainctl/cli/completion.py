"""Shell completion of config overrides (conf=, group=, section.key=) from the config folders' YAML
and the schema dataclasses' source (the package's and the installed plugins'), and of runs (`latest`,
run directories), without importing torch, Hydra or a plugin: it runs on every <TAB>."""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import typing
from collections.abc import Sequence
from pathlib import Path

import yaml

from trainctl.config.compose import GROUP_ALIASES, KEY_ALIASES, conf_dir, file_options, find_option, groups
from trainctl.config.schema import Logger
from trainctl.config.validate import FIXED_SECTIONS, REGISTRY_SECTIONS
from trainctl.errors import TrainctlError
from trainctl.registry import PLUGIN_GROUP

PACKAGE = Path(__file__).resolve().parents[1]  # the trainctl package
SECTIONS = [*REGISTRY_SECTIONS, *FIXED_SECTIONS]


Schemas = tuple[dict[str, dict[str, str]], dict[str, tuple[list[str], list[str]]]]


@functools.lru_cache(maxsize=1)
def source_schemas() -> Schemas:
    """From the package's source: {registry variable: {option name: schema class}} and
    {class: (base classes, own field names)}, read with `ast` so no component module is imported."""
    return read_schemas(PACKAGE.rglob("*.py"))


@functools.lru_cache(maxsize=1)
def plugin_schemas() -> Schemas:
    """The same from the source of the installed plugins' entry-point modules (group trainctl.plugins),
    found on the path without importing them (nor their packages)."""
    from importlib.metadata import entry_points

    return read_schemas(p for point in entry_points(group=PLUGIN_GROUP) if (p := module_file(point.module)))


def module_file(name: str) -> Path | None:
    """The .py file of module `name`, looked up part by part on sys.path: no package is imported."""
    from importlib.machinery import PathFinder

    parts = name.split(".")
    search: list[str] | None = None
    spec = None
    for depth in range(1, len(parts) + 1):
        spec = PathFinder.find_spec(".".join(parts[:depth]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def read_schemas(paths: typing.Iterable[Path]) -> Schemas:
    registered: dict[str, dict[str, str]] = {}
    classes: dict[str, tuple[list[str], list[str]]] = {}
    for path in paths:
        text = path.read_text()
        if "class " not in text and ".register(" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
                fields = [
                    s.target.id
                    for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                ]
                classes.setdefault(node.name, (bases, fields))
            elif (  # @REGISTRY.register("name", SchemaClass, ...)
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "register"
                and isinstance(node.func.value, ast.Name)
                and len(node.args) >= 2
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[1], ast.Name)
            ):
                registered.setdefault(node.func.value.id, {})[str(node.args[0].value)] = node.args[1].id
    return registered, classes


def class_fields(name: str) -> list[str]:
    """Field names of a schema class found in the source (the package's, then the plugins'), base
    classes' fields first."""
    bases, own = source_schemas()[1].get(name) or plugin_schemas()[1].get(name, ([], []))
    inherited = [f for base in bases for f in class_fields(base)]
    return list(dict.fromkeys([*inherited, *own]))


def defaults_of(path: Path) -> dict[str, str]:
    """group -> option from a YAML file's defaults list (`override /model: mlp` counts as `model`)."""
    chosen = {}
    for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                chosen[str(key).replace("override", "").strip().strip("/")] = str(value)
    return chosen


def chosen_options(words: Sequence[str]) -> dict[str, str]:
    """Group -> option for the command line so far: its group=option words over the preset's defaults
    over conf/config.yaml's."""
    picked = {
        GROUP_ALIASES.get(key, key): value
        for key, _, value in (word.partition("=") for word in words if "=" in word)
        if "." not in key
    }
    choices = defaults_of(conf_dir() / "config.yaml")
    preset_file = find_option("preset", str(picked.get("preset") or choices.get("preset")))
    if preset_file is not None:
        choices.update(defaults_of(preset_file))
    return choices | picked


def section_keys(section: str, words: Sequence[str]) -> list[str]:
    """Every settable key of a section as the command line so far configures it, nested dataclasses
    flattened (trainer.early_stopping.patience); `name` is left out (it is chosen with group=option)."""
    if section in FIXED_SECTIONS:
        hints = typing.get_type_hints(FIXED_SECTIONS[section])
        keys = []
        for name, kind in hints.items():
            if dataclasses.is_dataclass(kind):
                keys += [f"{section}.{name}.{f.name}" for f in dataclasses.fields(kind)]
            else:
                keys.append(f"{section}.{name}")
        return keys
    group = next((g for g, s in KEY_ALIASES.items() if s == section), section)
    option = chosen_options(words).get(group)
    option_file = find_option(group, option) if option is not None else None
    name = option
    if option_file is not None:
        node = yaml.safe_load(option_file.read_text()) or {}
        if (
            "_target_" in node
        ):  # the user's component: the keys its YAML sets (its signature decides the rest)
            return [f"{section}.{k}" for k in node if k not in ("name", "_target_")]
        name = node.get("name", option)
    registry = REGISTRY_SECTIONS[section].split(":")[1]
    schema_class = source_schemas()[0].get(registry, {}).get(str(name))
    if schema_class is None and name is not None:  # a plugin's component, or nothing known
        schema_class = plugin_schemas()[0].get(registry, {}).get(str(name))
    return [f"{section}.{f}" for f in class_fields(schema_class) if f != "name"] if schema_class else []


def group_options(group: str) -> list[str]:
    """A group's options as `options` lists them: the config folders' YAML files and, read from their
    source, the names installed plugins register in the group's registry."""
    registry = REGISTRY_SECTIONS.get(KEY_ALIASES.get(group, group), "").rpartition(":")[2]
    plugged = plugin_schemas()[0].get(registry, {}) if registry else {}
    return sorted(set(file_options(group)) | set(plugged))


def value_choices(key: str) -> list[str]:
    """Values worth offering for `key`: a group's options, an enum's members, true/false."""
    group = GROUP_ALIASES.get(key, key)
    if "." not in key and group in groups():
        return group_options(group)
    if key == "logger":
        return [member.value for member in Logger]
    section, _, rest = key.partition(".")
    kind: object = FIXED_SECTIONS.get(section)
    for part in rest.split("."):
        kind = typing.get_type_hints(kind).get(part) if dataclasses.is_dataclass(kind) else None
    for arg in typing.get_args(kind) or (kind,):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return [member.value for member in arg]
        if arg is bool:
            return ["true", "false"]
    return []


def key_choices(prefix: str, words: Sequence[str]) -> list[str]:
    """Top level: `group=`, `section.` and `logger=`; inside a section: its `section.key=` entries."""
    if "." not in prefix:
        tops = ["conf=" if g == "preset" else f"{g}=" for g in groups()]
        tops += [f"{section}." for section in SECTIONS] + ["logger="]
        return sorted(t for t in tops if t.startswith(prefix))
    shown = prefix.split(".", 1)[0]  # `dataset.` is accepted for `data.`
    section = KEY_ALIASES.get(shown, shown)
    if section not in SECTIONS:
        return []
    keys = [f"{shown}{key[len(section) :]}=" for key in section_keys(section, words)]
    return [k for k in keys if k.startswith(prefix)]


def complete_overrides(words: Sequence[str], incomplete: str) -> list[str]:
    """Completions for the word being typed, whole `key=value` words (the bash script trims what
    readline keeps); `words` are the overrides typed before it, which pick the options."""
    try:
        if "=" in incomplete:
            key, _, prefix = incomplete.partition("=")
            return [f"{key}={v}" for v in value_choices(key) if v.startswith(prefix)]
        return key_choices(incomplete, words)
    except (OSError, yaml.YAMLError, SyntaxError, TrainctlError):  # never break the user's shell
        return []


def complete_runs(incomplete: str) -> list[str]:
    """`latest` (when there is one) and the run directories under the runs root, as paths the command
    accepts, for `trainctl eval <TAB>` and the other commands that take a run. Reads only the folder
    listing: no run file is opened."""
    from trainctl.runs.run_dir import LATEST, default_runs_root

    root = default_runs_root()
    try:
        found = [*root.glob("*/*/run.json"), *root.glob("sweeps/*/*/run.json")]
    except OSError:
        return []
    runs = sorted({str(p.parent) for p in found if p.parent.name != LATEST})
    candidates = ([LATEST] if (root / LATEST).exists() else []) + runs
    return [c for c in candidates if c.startswith(incomplete)]


def complete_formats(incomplete: str) -> list[str]:
    """The export formats (as their modules register them, read from the source), for `export -f <TAB>`."""
    return sorted(name for name in source_schemas()[0].get("FORMATS", {}) if name.startswith(incomplete))
