"""Export formats: the registry of exporters (one module per format) and the one entry point that builds one.

A format module registers `FORMATS.register(NAME, SettingsDataclass)` on a function that returns its
`Exporter` (see base.py); `trainctl.export.job` opens the run, lets the exporter write and load back its
files, checks them against the run's model, and writes the folder's README, config and manifest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainctl.registry import Registry

if TYPE_CHECKING:
    from trainctl.export.base import Exporter

FORMATS: Registry = Registry("export format", "trainctl.export.formats")


def build_exporter(name: str) -> Exporter:
    """The exporter of format `name` with its default settings; an unknown name is a named error."""
    entry = FORMATS.get(name)
    return entry.build(entry.schema())
