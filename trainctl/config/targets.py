"""Components from the user's code: `_target_` sections resolved under a safety rule, checked against
the target's signature, and built with Hydra's instantiate.

The rule (a config is data: reading a run's config.yaml must not run its author's code):
- the module path is dotted identifiers; its top-level package is neither in Python's standard library
  (builtins, os, posix, subprocess, sys, importlib, pickle, shutil, ...) nor hydra/omegaconf;
- a class target must subclass the section's kind (torch.nn.Module for a model or loss,
  torch.utils.data.Dataset, torch.optim.Optimizer, an LR scheduler), wherever it is installed;
- a function target (a factory; its result is checked against the kind) must be defined in a source file
  of the user's own project: outside the Python installation and outside site-packages (the working
  directory, PYTHONPATH entries, editable installs);
- nested `_target_` nodes (arguments, `_args_` items, `_partial_` ones) follow the same rule, with any
  of the component kinds allowed.
Everything is checked before the target is called, and a module is imported only once its top-level
package passed the first check.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import re
import site
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from trainctl.errors import TrainctlError, suggestion

TARGET = "_target_"
PARTIAL = "_partial_"
ARGS = "_args_"
HYDRA_KEYS = (TARGET, PARTIAL, ARGS, "_recursive_", "_convert_")  # keys that are not constructor arguments
BLOCKED_PACKAGES = frozenset({"hydra", "omegaconf", "__main__", "__future__"})
DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


@dataclass(frozen=True)
class Kind:
    """What a target must build: a subclass of one of `bases` (dotted class paths)."""

    name: str
    bases: tuple[str, ...]

    def classes(self) -> tuple[type, ...]:
        found = []
        for path in self.bases:
            module, _, attr = path.rpartition(".")
            found.append(getattr(importlib.import_module(module), attr))
        return tuple(found)

    def describe(self) -> str:
        return " or ".join(self.bases)


MODEL = Kind("model", ("torch.nn.Module",))
DATASET = Kind("dataset", ("torch.utils.data.Dataset",))
OPTIMIZER = Kind("optimizer", ("torch.optim.Optimizer",))
SCHEDULER = Kind("LR scheduler", ("torch.optim.lr_scheduler.LRScheduler",))
LOSS = Kind("loss", ("torch.nn.Module",))
COMPONENT = Kind(
    "component", tuple(dict.fromkeys([*MODEL.bases, *DATASET.bases, *OPTIMIZER.bases, *SCHEDULER.bases]))
)

Kinds = Kind | Sequence[Kind]


def as_kinds(kinds: Kinds) -> tuple[Kind, ...]:
    return (kinds,) if isinstance(kinds, Kind) else tuple(kinds)


def bases_of(kinds: tuple[Kind, ...]) -> tuple[type, ...]:
    return tuple(c for k in kinds for c in k.classes())


def is_target_section(node: Any) -> bool:
    """Whether a config section (a mapping) builds its component from a `_target_`."""
    return isinstance(node, Mapping) and TARGET in node


# ---------------------------------------------------------------------------------------------- where
def project_paths() -> list[str]:
    """Where the user's modules import from: the working directory, then PYTHONPATH's entries."""
    paths = [os.getcwd()]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys(str(Path(p).absolute()) for p in paths))


def ensure_project_on_path() -> None:
    """Put the working directory (and PYTHONPATH) on sys.path, as `python -m` does: console scripts and
    forkserver workers start without it."""
    for path in reversed(project_paths()):
        if path not in sys.path:
            sys.path.insert(0, path)


@functools.cache
def installation_dirs() -> tuple[str, ...]:
    """The Python installation's library folders and every site-packages: code that is not the user's."""
    dirs = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    return tuple(sorted(str(Path(d).resolve()) for d in dirs if d))


def in_project(file: str | None) -> bool:
    """Whether a source file is the user's own: outside the Python installation and site-packages."""
    if not file:
        return False
    resolved = str(Path(file).resolve())
    return not any(resolved == d or resolved.startswith(d + os.sep) for d in installation_dirs())


def blocked_package(top: str) -> bool:
    return top in BLOCKED_PACKAGES or top in sys.stdlib_module_names or top in sys.builtin_module_names


# -------------------------------------------------------------------------------------------- resolve
def not_allowed(path: str, why: str, where: str) -> TrainctlError:
    return TrainctlError(
        f"target '{path}' is not allowed: {why}",
        where=where,
        fix="a target is a class of the expected kind, or a function in your own project's files "
        "(see README: Your own model and data)",
    )


def import_module_of(path: str, where: str) -> tuple[Any, list[str]]:
    """The longest importable module prefix of `path` and the attribute names after it."""
    parts = path.split(".")
    top = parts[0]
    if blocked_package(top):
        raise not_allowed(path, f"'{top}' is Python's standard library or Hydra's own, never a target", where)
    ensure_project_on_path()
    if importlib.util.find_spec(top) is None:
        raise TrainctlError(
            f"cannot import '{top}' for target '{path}': no module named '{top}'",
            where=where,
            fix=f"looked in the working directory and PYTHONPATH ({', '.join(project_paths())}) and the "
            "installed packages; run from your project's folder, set PYTHONPATH, or pip install it",
        )
    for cut in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:  # a parent is a plain module, not a package
            found = False
        if found:
            try:
                return importlib.import_module(name), parts[cut:]
            except ImportError as exc:
                raise TrainctlError(
                    f"cannot import '{name}' for target '{path}': {exc}", where=where
                ) from None
            except Exception as exc:  # the user's module failed while importing
                raise TrainctlError(
                    f"importing '{name}' for target '{path}' failed: {type(exc).__name__}: {exc}",
                    where=where,
                    fix="fix the module (python -c 'import " + name + "' shows the traceback)",
                ) from None
    raise TrainctlError(f"target '{path}' names a module, not a class or function in it", where=where)


def resolve_target(path: Any, kinds: Kinds, where: str) -> Any:
    """The class or function that `path` names, after the safety rule (module docstring) allowed it."""
    kinds = as_kinds(kinds)
    if not isinstance(path, str) or not DOTTED.fullmatch(path):
        raise TrainctlError(
            f"a _target_ is a dotted path such as mypackage.module.Class, not {path!r}", where=where
        )
    module, attrs = import_module_of(path, where)
    obj: Any = module
    for i, attr in enumerate(attrs):
        if not hasattr(obj, attr):
            owner = ".".join(path.split(".")[: len(path.split(".")) - len(attrs) + i])
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise TrainctlError(
                f"'{owner}' has no attribute '{attr}'.{suggestion(attr, names)}",
                where=f"{where}: target '{path}'",
                fix=f"names in {owner}: {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}",
            )
        obj = getattr(obj, attr)
    check_allowed(path, obj, kinds, where)
    return obj


def check_allowed(path: str, obj: Any, kinds: tuple[Kind, ...], where: str) -> None:
    """The resolved object itself (not its path: an alias such as mymodule.os.system is caught here)."""
    wanted = " or ".join(k.describe() for k in kinds)
    origin_top = str(getattr(obj, "__module__", "") or "").split(".")[0]
    if origin_top and blocked_package(origin_top):
        raise not_allowed(
            path, f"it is {origin_top}.{getattr(obj, '__qualname__', '?')}, from the standard library", where
        )
    if inspect.isclass(obj):
        if not issubclass(obj, bases_of(kinds)):
            raise TrainctlError(
                f"target '{path}' is a class of the wrong kind: {kinds[0].name} needs a subclass of {wanted}",
                where=where,
                fix=f"point _target_ at a {wanted} subclass",
            )
        return
    if inspect.isfunction(obj):
        if not in_project(inspect.getsourcefile(obj)):
            raise not_allowed(
                path,
                f"a function may build a {kinds[0].name} only from your own project's files, and "
                f"{obj.__module__}.{obj.__qualname__} is installed code",
                where,
            )
        return
    raise not_allowed(path, f"it is a {type(obj).__name__}, neither a class nor a Python function", where)


def nested_targets(value: Any, key: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every `_target_` node inside a section's arguments, with its dotted key."""
    if isinstance(value, Mapping):
        if TARGET in value:
            yield key, value
        for k, v in value.items():
            if k != TARGET:
                yield from nested_targets(v, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from nested_targets(v, f"{key}[{i}]")


# ---------------------------------------------------------------------------------------------- check
def signature_text(obj: Any) -> str:
    try:
        return f"{obj.__name__}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return obj.__name__


def arguments(section: Mapping[str, Any]) -> dict[str, Any]:
    """A section's constructor keys: everything but Hydra's own (`_target_`, `_partial_`, ...)."""
    return {str(k): v for k, v in section.items() if k not in HYDRA_KEYS}


def check_call(
    section: Mapping[str, Any],
    kinds: Kinds,
    where: str,
    *,
    provided: Iterable[str] = (),
    positional: int = 0,
    ignored: Iterable[str] = (),
) -> tuple[Any, set[str]]:
    """Resolve the section's target (and every nested one) and check its keys against its signature.

    `positional` arguments are passed first by position (an optimizer's parameters, a scheduler's
    optimizer); `provided` names are passed by keyword only where the target has a parameter of that name
    and the section does not set it; `ignored` keys belong to trainctl, not the target. Returns the target
    and the provided names it accepts. Unknown keys and missing required arguments are a TrainctlError
    that shows the signature.
    """
    kinds = as_kinds(kinds)
    target = resolve_target(section.get(TARGET), kinds, where)
    for key, node in nested_targets(arguments(section) | {ARGS: section.get(ARGS) or []}, where):
        check_call(node, COMPONENT, key)
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):  # no signature to read (some C types): the call itself will tell
        return target, set()
    keys = [k for k in arguments(section) if k not in set(ignored)]
    named = {p.name: p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    n_args = positional + len(section.get(ARGS) or [])
    by_position = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:n_args]
    accepted = {name for name in provided if name in named and name not in by_position and name not in keys}
    unknown = [] if takes_any else [k for k in keys if k not in named]
    missing = [
        p.name
        for p in named.values()
        if p.default is p.empty
        and p.name not in by_position
        and p.name not in keys
        and p.name not in accepted
    ]
    if unknown or missing:
        parts = []
        if unknown:
            hints = "".join(suggestion(k, named) for k in unknown)
            parts.append(f"unknown key(s) {', '.join(unknown)}.{hints}")
        if missing:
            parts.append(f"missing required argument(s) {', '.join(missing)}")
        raise TrainctlError(
            f"{section[TARGET]} cannot take this config: {'; '.join(parts)}",
            where=where,
            fix=f"its signature: {signature_text(target)}"
            + (f"; given by trainctl when asked for: {', '.join(sorted(provided))}" if provided else ""),
        )
    return target, accepted


# ------------------------------------------------------------------------------------------- instantiate
def instantiate(
    section: Mapping[str, Any],
    kinds: Kinds,
    where: str,
    *args: Any,
    ignored: Iterable[str] = (),
    **provided: Any,
) -> Any:
    """Build the section's target with Hydra's instantiate semantics (`_target_`, nested targets,
    `_partial_`, `_args_`) after `check_call`: `args` go first by position, each `provided` value by
    name where the target asks for it. The built object must be of one of `kinds`."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate
    from omegaconf import OmegaConf

    kinds = as_kinds(kinds)
    ignored = set(ignored)
    _, accepted = check_call(section, kinds, where, provided=provided, positional=len(args), ignored=ignored)
    if args and section.get(ARGS):
        raise TrainctlError(
            f"{where} cannot take _args_: trainctl passes its first argument",
            where=where,
            fix="set the target's arguments by name",
        )
    config = {k: v for k, v in section.items() if k not in ignored and k != PARTIAL}
    config.setdefault("_convert_", "all")
    config.update({name: provided[name] for name in accepted})
    try:
        built = hydra_instantiate(OmegaConf.create(config, flags={"allow_objects": True}), *args)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise TrainctlError(
            f"building {section[TARGET]} failed: {type(cause).__name__}: {cause}", where=where
        ) from exc
    if not isinstance(built, bases_of(kinds)):
        raise TrainctlError(
            f"{section[TARGET]} built a {type(built).__name__}, not a {kinds[0].describe()}",
            where=where,
            fix=f"make {section[TARGET]} return a {kinds[0].name}",
        )
    return built


# ------------------------------------------------------------------------------------ typed sections
@dataclass
class Targeted:
    """The fields of a section built from a `_target_`, mixed in after the section's own schema
    (`class TargetModelConfig(ModelConfig, Targeted)`): the target's path and its arguments."""

    target: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)


def section_base(schema: type) -> type:
    """The section's own schema of a target schema (ModelConfig of TargetModelConfig)."""
    return schema.__bases__[0]


def trainctl_keys(schema: type) -> list[str]:
    """The keys of a target section that belong to trainctl, not to the target's constructor."""
    return [f.name for f in fields(schema) if f.name not in ("target", "arguments")]


def target_section(cfg: Any) -> dict[str, Any]:
    """A typed target section back as the mapping instantiate reads: `_target_` and the arguments."""
    return {TARGET: cfg.target, **cfg.arguments}


# Sections that only take a `_target_` (null: trainctl's own): kind, positional arguments, provided names.
SCHEDULER_INPUTS = ("total_steps", "steps_per_epoch", "epochs", "T_max")
TARGET_ONLY_SECTIONS: dict[str, tuple[Kind, int, tuple[str, ...]]] = {
    "scheduler": (SCHEDULER, 1, SCHEDULER_INPUTS),  # gets the optimizer first
    "loss": (LOSS, 0, ()),
}


def check_target_only(section: str, node: Mapping[str, Any]) -> Targeted:
    """A `scheduler` or `loss` section, checked against its target's signature, in its typed form."""
    kind, positional, provided = TARGET_ONLY_SECTIONS[section]
    if not is_target_section(node):
        raise TrainctlError(
            f"config section '{section}' takes a _target_ (or null)",
            where=section,
            fix=f"e.g. {section}._target_=torch.optim.lr_scheduler.StepLR"
            if section == "scheduler"
            else f"e.g. {section}._target_=torch.nn.SmoothL1Loss",
        )
    check_call(node, kind, section, provided=provided, positional=positional)
    return Targeted(str(node[TARGET]), {k: v for k, v in node.items() if k != TARGET})


def is_target(cfg: Any) -> bool:
    """Whether a typed section was built from a `_target_`."""
    return bool(getattr(cfg, "target", None)) and hasattr(cfg, "arguments")
