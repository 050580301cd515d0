"""`trainctl compress` and `trainctl compare`: command-line flags to passes, and two runs side by side."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from trainctl.errors import TrainctlError

QUANTIZE = ("int8", "int8-dynamic", "int8-static", "bf16", "fp16")
PRUNE_METHODS = ("global-l1", "structured-channels")


def pass_steps(
    model: Any,
    *,
    quantize: str | None,
    prune: float | None,
    prune_method: str | None,
    finetune_epochs: int | None,
    calib_batches: int | None,
) -> list[dict[str, Any]]:
    """The pass settings the flags ask for: pruning (and its fine-tuning) first, then quantization."""
    from torch import nn

    steps: list[dict[str, Any]] = []
    if prune is None and (prune_method is not None or finetune_epochs is not None):
        raise TrainctlError(
            "--prune-method and --finetune-epochs go with --prune", fix="e.g. --prune 0.5 --finetune-epochs 1"
        )
    if prune is not None:
        method = prune_method or "global-l1"
        if method not in PRUNE_METHODS:
            raise TrainctlError(
                f"unknown --prune-method '{method}'", fix=f"use one of: {', '.join(PRUNE_METHODS)}"
            )
        steps.append(
            {"name": "prune", "amount": prune, "method": method, "finetune_epochs": finetune_epochs or 0}
        )
    if quantize is not None and quantize not in QUANTIZE:
        raise TrainctlError(f"unknown --quantize '{quantize}'", fix=f"use one of: {', '.join(QUANTIZE)}")
    if quantize == "int8":  # conv nets get static int8 (dynamic int8 only covers Linear layers)
        has_conv = any(isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) for m in model.modules())
        quantize = "int8-static" if has_conv else "int8-dynamic"
    if calib_batches is not None and quantize != "int8-static":
        raise TrainctlError(
            "--calib-batches is for static int8 (conv nets)", fix="add --quantize int8-static, or drop it"
        )
    if quantize == "int8-dynamic":
        steps.append({"name": "int8"})
    elif quantize == "int8-static":
        steps.append(
            {"name": "int8_static", **({} if calib_batches is None else {"calib_batches": calib_batches})}
        )
    elif quantize in ("bf16", "fp16"):
        steps.append({"name": "cast", "dtype": quantize})
    if not steps:
        raise TrainctlError(
            "nothing to do: no compression pass given", fix="e.g. --quantize int8 or --prune 0.5"
        )
    return steps


def compress(
    target: str,
    *,
    quantize: str | None = None,
    prune: float | None = None,
    prune_method: str | None = None,
    finetune_epochs: int | None = None,
    calib_batches: int | None = None,
    threads: int | None = None,
    best: bool = False,
    console: Console | None = None,
) -> str:
    """Compress a run into a new run; print and save its report card; return the new run's path."""
    from trainctl.compress.job import compress_run, load_run

    console = console or Console(soft_wrap=True)
    parent = load_run(target, "best" if best else "last")
    steps = pass_steps(
        parent.model,
        quantize=quantize,
        prune=prune,
        prune_method=prune_method,
        finetune_epochs=finetune_epochs,
        calib_batches=calib_batches,
    )
    child, card = compress_run(parent, steps, thread_count=threads, log=console.print)
    card.print(console)
    console.print(
        f"compressed run: {child.path} (report.md, report.json); evaluate it with: trainctl eval {child.path}"
    )
    return str(child.path)


def compare(first: str, second: str, *, threads: int | None = None, console: Console | None = None) -> None:
    """Print the report card of two runs trained on the same data."""
    from trainctl.compress.job import load_run
    from trainctl.compress.report import measure
    from trainctl.compress.stored import compression_records

    a, b = load_run(first), load_run(second)
    if comparable_data(a.state["config"]["data"]) != comparable_data(b.state["config"]["data"]):
        raise TrainctlError(
            "the two runs were trained on different data; their figures would not compare",
            where=f"{a.run.path} (data {a.cfg.data.name}) and {b.run.path} (data {b.cfg.data.name})",
            fix="compare runs of the same data set and split",
        )
    card = measure(
        a.model,
        b.model,
        a.data,
        a.objective(),
        thread_count=threads or a.cfg.trainer.threads or torch_threads(),
        eval_batch_size=a.cfg.trainer.eval_batch_size,
        names=(a.id, b.id),
        passes=[
            f"{run.id}: " + (", ".join(r["config"]["name"] for r in compression_records(run.state)) or "none")
            for run in (a, b)
        ],
        columns=("A", "B"),
    )
    card.print(console or Console(soft_wrap=True))


def comparable_data(section: dict[str, Any]) -> dict[str, Any]:
    """A data config without the keys that only say where the files are or whether to fetch them."""
    return {k: v for k, v in section.items() if k not in ("root", "download", "mirrors")}


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()
