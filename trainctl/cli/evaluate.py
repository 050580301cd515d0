"""`trainctl eval`: rebuild a run's model from its checkpoint and measure it on the test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from trainctl.config.compose import compose
from trainctl.errors import TrainctlError
from trainctl.runs.run_dir import default_runs_root, resolve_run


def locate_checkpoint(target: str, tag: str) -> Path:
    """A checkpoint file from a run directory, `latest`, or a .pt path."""
    path = Path(target)
    if path.suffix == ".pt":
        if not path.is_file():
            raise TrainctlError(f"checkpoint not found: {path}")
        return path
    checkpoint = resolve_run(target, default_runs_root()).checkpoint(tag)
    if not checkpoint.is_file():
        raise TrainctlError(
            f"the run has no {tag} checkpoint: {checkpoint}",
            fix="train it first, or pass --best/--last to pick the other one",
        )
    return checkpoint


def evaluate_checkpoint(target: str, overrides: Sequence[str], *, tag: str = "last") -> dict[str, Any]:
    """Loss and metrics of a checkpoint on its data set's test split."""
    import torch

    from trainctl.compress.stored import inference_model, inference_precision
    from trainctl.data import load_dataset
    from trainctl.plan import resolve_device
    from trainctl.runtime.precision import MixedPrecision
    from trainctl.training.checkpoint import load_checkpoint
    from trainctl.training.evaluation import evaluate
    from trainctl.training.objective import build_objective

    checkpoint = locate_checkpoint(target, tag)
    state = load_checkpoint(checkpoint)
    cfg = compose(overrides, base=OmegaConf.create(state["config"])).config
    data = load_dataset(cfg.data)
    model, device = inference_model(cfg, data, state, torch.device(resolve_device(cfg.trainer.device)))
    objective = build_objective(cfg.trainer, data, device)
    with MixedPrecision(inference_precision(cfg, state), device).autocast():  # as the run evaluated
        metrics = evaluate(model, data.test, objective, batch_size=cfg.trainer.eval_batch_size, device=device)
    return {"checkpoint": str(checkpoint), "samples": len(data.test), **metrics}
