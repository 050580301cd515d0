"""Launchers: how a planned job becomes running workers; the launcher registry and protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from trainctl.registry import Registry

if TYPE_CHECKING:
    from trainctl.config.schema import LauncherConfig
    from trainctl.plan import Plan

LAUNCHERS: Registry = Registry("launcher", "trainctl.runtime.launch")


class Launcher(Protocol):
    """Hydra-style: `setup` prepares, `launch` runs the plan and returns rank 0's summary."""

    def world_size(self) -> int: ...

    def check(self) -> list[str]: ...

    def describe(self, plan: Plan) -> str: ...

    def setup(self, plan: Plan) -> None: ...

    def launch(self, plan: Plan) -> dict[str, Any]: ...


def build_launcher(cfg: LauncherConfig) -> Launcher:
    return LAUNCHERS.get(cfg.name).build(cfg)
