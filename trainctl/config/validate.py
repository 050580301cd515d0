"""Turn a composed, untyped config into the typed Config, with errors that name the key and a fix."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from trainctl.config.ranges import check_ranges
from trainctl.config.schema import Config, DistillConfig, RunConfig, TrainerConfig
from trainctl.config.targets import (
    TARGET,
    TARGET_ONLY_SECTIONS,
    check_target_only,
    is_target_section,
    section_base,
    trainctl_keys,
)
from trainctl.errors import TrainctlError, suggestion

# Sections chosen from a registry by their `name` field: section -> "module:REGISTRY".
REGISTRY_SECTIONS: dict[str, str] = {
    "model": "trainctl.models:MODELS",
    "data": "trainctl.data:DATASETS",
    "optim": "trainctl.optim:OPTIMIZERS",
    "parallel": "trainctl.runtime.parallel:STRATEGIES",
    "compress": "trainctl.compress:PASSES",
    "launcher": "trainctl.runtime.launch:LAUNCHERS",
}
FIXED_SECTIONS: dict[str, type] = {"trainer": TrainerConfig, "run": RunConfig, "distill": DistillConfig}
VALUES = ("preset", "recipe", "logger")  # top-level values that are not sections
TOP_LEVEL = [f.name for f in dataclasses.fields(Config)]


def registry(section: str) -> Any:
    """The registry that serves `section` (imported on first use)."""
    module, attr = REGISTRY_SECTIONS[section].split(":")
    return getattr(importlib.import_module(module), attr)


def section_schema(section: str, name: str | None) -> type:
    """The dataclass that validates `section` when its chosen option is `name`."""
    if section in FIXED_SECTIONS:
        return FIXED_SECTIONS[section]
    if not name:
        raise TrainctlError(f"config section '{section}' has no 'name'", fix=f"pick one with {section}=NAME")
    return registry(section).get(name).schema


def typed_tree(raw: DictConfig, origin: str) -> DictConfig:
    """Merge each section of `raw` onto its schema; unknown keys and wrong types raise TrainctlError."""
    for key in raw:
        if key not in TOP_LEVEL:
            raise TrainctlError(
                f"unknown config section '{key}'.{suggestion(str(key), TOP_LEVEL)}",
                where=origin,
                fix=f"top-level sections are: {', '.join(TOP_LEVEL)}",
            )
    tree = OmegaConf.structured(Config)
    for key in VALUES:
        if key in raw:
            tree[key] = raw[key]
    for section in [*REGISTRY_SECTIONS, *FIXED_SECTIONS]:
        node = raw.get(section)
        if node is None and section in FIXED_SECTIONS:
            continue
        if not isinstance(node, DictConfig):
            raise TrainctlError(f"config section '{section}' is missing", where=origin)
        if is_target_section(node):
            tree[section] = typed_target_node(section, node, origin)
            continue
        schema = section_schema(section, node.get("name"))
        try:
            tree[section] = OmegaConf.merge(OmegaConf.structured(schema), node)
        except OmegaConfBaseException as exc:
            raise friendly_error(exc, section, schema, origin) from None
    for section in TARGET_ONLY_SECTIONS:
        if raw.get(section) is not None:
            tree[section] = OmegaConf.create(OmegaConf.to_container(raw[section]))
    OmegaConf.set_struct(tree, True)
    return tree


def typed_target_node(section: str, node: DictConfig, origin: str) -> DictConfig:
    """A `_target_` section: trainctl's keys of the section typed by its schema, every other key kept
    as written for the target (checked against its signature once the overrides are in: `to_config`)."""
    path = str(node[TARGET])
    schema = registry(section).get(path).schema  # the registry's target entry
    own = [k for k in trainctl_keys(schema) if k != "name"]
    base = section_base(schema)
    try:
        typed = OmegaConf.merge(OmegaConf.structured(base), {k: node[k] for k in own if k in node})
    except OmegaConfBaseException as exc:
        raise friendly_error(exc, section, base, origin) from None
    out = OmegaConf.create({"name": path, TARGET: path})
    for key in node:
        if key not in ("name", TARGET, *own):
            out[key] = node[key]
    for key in own:
        out[key] = typed[key]
    return out


def in_target_section(tree: DictConfig, key: str) -> bool:
    section = key.split(".")[0]
    return section in [*REGISTRY_SECTIONS, *TARGET_ONLY_SECTIONS] and is_target_section(tree.get(section))


def apply_override(tree: DictConfig, key: str, value: Any, text: str) -> None:
    """Set `key` to `value` in the typed tree; the key must exist and the value must fit its type."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(tree, parent_key) if parent_key else tree
    if in_target_section(tree, key) and leaf != "name":  # keys of the user's target: its signature decides
        try:
            OmegaConf.update(tree, key, value, merge=False, force_add=True)
        except OmegaConfBaseException as exc:
            raise TrainctlError(
                f"bad value for '{key}': {first_line(exc)}", where=f"override '{text}'"
            ) from None
        return
    if not isinstance(parent, DictConfig) or leaf not in parent:
        siblings = [str(k) for k in parent] if isinstance(parent, DictConfig) else []
        options = [f"{parent_key}.{k}" if parent_key else k for k in siblings]
        hint = suggestion(key, options) or suggestion(leaf, siblings)
        raise TrainctlError(
            f"unknown config key '{key}'.{hint}",
            where=f"override '{text}'",
            fix=f"keys here: {', '.join(siblings)}" if siblings else "see `trainctl configs show`",
        )
    if leaf == "name" and parent_key in REGISTRY_SECTIONS:
        group = "dataset" if parent_key == "data" else parent_key
        raise TrainctlError(
            f"'{key}' picks the component and cannot be set as a value",
            where=f"override '{text}'",
            fix=f"switch the whole option with {group}={value}",
        )
    if OmegaConf.is_list(parent[leaf]) and not isinstance(value, list | tuple):
        value = [value]  # `logger=tensorboard` means the list [tensorboard]
    try:
        OmegaConf.update(tree, key, value, merge=False)
    except OmegaConfBaseException as exc:
        raise TrainctlError(f"bad value for '{key}': {first_line(exc)}", where=f"override '{text}'") from None


def to_config(tree: DictConfig) -> tuple[Config, DictConfig]:
    """Resolve interpolations, make paths absolute, and build the Config dataclass."""
    try:
        OmegaConf.resolve(tree)
    except OmegaConfBaseException as exc:
        raise TrainctlError(f"cannot resolve config: {first_line(exc)}") from None
    for section in ("data", "run"):
        root = tree[section].get("root")
        if isinstance(root, str):
            tree[section].root = str(Path(root).expanduser().absolute())
    teacher = tree.distill.teacher
    if teacher:  # a fixed path now: `latest` would point at the student's own run once it starts
        path = Path(tree.run.root) / "latest" if teacher == "latest" else Path(teacher).expanduser()
        tree.distill.teacher = str(path.resolve())
    targets = {s: OmegaConf.to_container(tree[s]) for s in REGISTRY_SECTIONS if is_target_section(tree[s])}
    config = OmegaConf.to_object(tree)
    for section, node in targets.items():
        setattr(config, section, typed_target(section, node))
    for section in TARGET_ONLY_SECTIONS:
        if tree[section] is not None:
            setattr(config, section, check_target_only(section, OmegaConf.to_container(tree[section])))
    check_ranges(config)  # every value within the range its schema declares, before anything is written
    return config, tree


def typed_target(section: str, node: dict[str, Any]) -> Any:
    """The typed form of a `_target_` section, after its registry's target entry checked the arguments
    against the target's signature (`check` hook: unknown keys, missing arguments, the safety rule)."""
    entry = registry(section).get(str(node[TARGET]))
    own = trainctl_keys(entry.schema)
    arguments = {k: v for k, v in node.items() if k not in own and k != TARGET}
    entry.hooks["check"]({TARGET: node[TARGET], **arguments}, section)
    base = OmegaConf.to_object(
        OmegaConf.merge(
            OmegaConf.structured(section_base(entry.schema)), {k: node[k] for k in own if k in node}
        )
    )
    return entry.schema(**{k: getattr(base, k) for k in own}, target=str(node[TARGET]), arguments=arguments)


def friendly_error(exc: OmegaConfBaseException, section: str, schema: type, origin: str) -> TrainctlError:
    """Translate an OmegaConf validation error into a TrainctlError naming the key."""
    sub_key = getattr(exc, "full_key", "") or ""
    key = f"{section}.{sub_key}" if sub_key else section
    fields = [f.name for f in dataclasses.fields(schema)]
    if isinstance(exc, ConfigKeyError):
        return TrainctlError(
            f"unknown config key '{key}'.{suggestion(sub_key.split('.')[-1], fields)}",
            where=origin,
            fix=f"keys of {section} ({schema.__name__}): {', '.join(fields)}",
        )
    if isinstance(exc, ValidationError):
        return TrainctlError(f"bad value for '{key}': {first_line(exc)}", where=origin)
    return TrainctlError(f"invalid config section '{section}': {first_line(exc)}", where=origin)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (OmegaConf appends key/type details below)."""
    text = getattr(exc, "msg", None) or str(exc)
    return str(text).splitlines()[0]
