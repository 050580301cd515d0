"""Planning checks of the compression settings: the `compress` passes fit the model, distillation can run."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from trainctl.config.schema import Config
from trainctl.data.types import DataSpec


def compression_checks(
    cfg: Config, spec: DataSpec | None, model: Callable[[], nn.Module], owns_step: bool
) -> list[str]:
    """Raise a TrainctlError for settings that cannot run; return the checks that passed."""
    from trainctl.compress import build_passes
    from trainctl.compress.base import check_passes
    from trainctl.training.distillation import check_distill

    checks = []
    passes = build_passes(cfg.compress)
    if passes and spec is not None:
        check_passes(passes, model(), [])
        checks.append("compression after training: " + "; ".join(p.describe() for p in passes))
    return checks + check_distill(cfg, spec, owns_step)
