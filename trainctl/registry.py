"""Name -> (config schema, builder) registries that discover their entries from one package."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from trainctl.errors import TrainctlError, suggestion

B = TypeVar("B", bound=Callable[..., Any])

PLUGIN_GROUP = "trainctl.plugins"  # entry points of installed packages that register components


class Plugins:
    """The installed packages' entry points in PLUGIN_GROUP, each imported once per process (the
    launcher, every rank, every restart): importing one registers its components in the registries."""

    def __init__(self) -> None:
        self.loaded = False
        self.loading: str | None = None  # the entry point being imported: what `register` records

    def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        from importlib.metadata import entry_points

        for point in entry_points(group=PLUGIN_GROUP):
            dist = point.dist.name if point.dist is not None else "?"
            self.loading = f"plugin {point.name} ({dist})"
            try:
                point.load()
            except Exception as exc:
                raise TrainctlError(
                    f"cannot load the trainctl plugin '{point.name}' of package {dist}: "
                    f"{type(exc).__name__}: {exc}",
                    where=f"entry point {point.name} = {point.value} (group {PLUGIN_GROUP})",
                    fix=f"fix or uninstall {dist} (pip uninstall {dist})",
                ) from None
            finally:
                self.loading = None


PLUGINS = Plugins()


@dataclass(frozen=True)
class Entry(Generic[B]):
    """One registered component: its name, its config dataclass and the function that builds it."""

    name: str
    schema: type
    build: B
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)  # optional extras, e.g. `prepare`


class Registry(Generic[B]):
    """Components of one kind; every module of `package` registers its entries when imported.

    Adding a model, data set, optimizer, strategy or launcher is one module in the package and
    one YAML file in conf/; nothing else changes.
    """

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, Entry[B]] = {}
        self._discovered = False
        self._target: Entry[B] | None = None  # builds a section that names a `_target_` (a dotted path)
        self.origins: dict[str, str] = {}  # name -> the plugin that registered it

    def register(self, name: str, schema: type, **hooks: Callable[..., Any]) -> Callable[[B], B]:
        """Decorator: register `build` under `name` with its config dataclass `schema`."""

        def decorator(build: B) -> B:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, schema, build, dict(hooks))
            if PLUGINS.loading:
                self.origins[name] = PLUGINS.loading
            return build

        return decorator

    def register_target(self, schema: type, **hooks: Callable[..., Any]) -> Callable[[B], B]:
        """Decorator: `build` makes the component of a section whose name is a dotted `_target_` path
        (the user's class); `schema` holds the section's trainctl keys, the rest go to the target."""

        def decorator(build: B) -> B:
            self._target = Entry("_target_", schema, build, dict(hooks))
            return build

        return decorator

    def plugin_names(self) -> list[str]:
        """The names that installed plugins registered (their packages are imported, not ours)."""
        PLUGINS.load()
        return sorted(self.origins)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        PLUGINS.load()
        pkg = importlib.import_module(self.package)  # a plain module registers on import
        for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def _import_named(self, name: str) -> None:
        """Import the package's module named after the entry, when there is one: asking for one
        component then loads only its module (fsdp's and pipeline's torch imports cost seconds)."""
        package = importlib.import_module(self.package)  # a plain module registers on import
        module = f"{self.package}.{name}"
        if hasattr(package, "__path__") and name.isidentifier() and importlib.util.find_spec(module):
            importlib.import_module(module)

    def get(self, name: str) -> Entry[B]:
        if "." in name:  # registered names have no dot: a dotted name is a `_target_` path
            if self._target is None:
                raise TrainctlError(
                    f"a {self.kind} cannot be built from a _target_ ('{name}')",
                    fix=f"choose one of: {', '.join(self.names())}",
                )
            return Entry(name, self._target.schema, self._target.build, self._target.hooks)
        if name not in self._entries and not self._discovered:
            self._import_named(name)
        if name not in self._entries:
            PLUGINS.load()
        if name not in self._entries:
            self._discover()
        try:
            return self._entries[name]
        except KeyError:
            raise TrainctlError(
                f"unknown {self.kind} '{name}'.{suggestion(name, self._entries)}",
                fix=f"choose one of: {', '.join(self.names())}",
            ) from None
