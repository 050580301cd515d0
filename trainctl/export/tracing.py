"""Tracing a run's model (torch.export, torch.onnx): its chatter silenced, its failures named errors."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

from trainctl.export.base import ExportFailed

if TYPE_CHECKING:
    from trainctl.api import OpenedRun

CHATTY = (
    "torch.onnx",
    "torch.export",
    "torch._export",
    "torch.fx.experimental.symbolic_shapes",
    "onnxscript",
)

ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")  # torch.onnx colours its messages for terminals


@contextlib.contextmanager
def quiet_tracing(source: OpenedRun, fmt: str) -> Iterator[None]:
    """Hide the exporters' progress lines and warnings; a model they cannot trace is an ExportFailed."""
    loggers = [logging.getLogger(name) for name in CHATTY]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except ExportFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.export raises many kinds of errors
        text = ANSI_CODES.sub("", str(exc))
        first = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
        raise ExportFailed(
            f"torch cannot trace this {source.cfg.model.name} model for --format {fmt}: {first}",
            where=str(source.run.path),
            fix="--format safetensors exports its weights without tracing",
        ) from exc
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
