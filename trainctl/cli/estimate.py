"""`trainctl plan --estimate`: measure the job (or each variant of --compare), print the projection,
what-if predictions at other world sizes, or all of it as JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from trainctl.errors import TrainctlError
from trainctl.workflows.cost_model import Network, Prediction
from trainctl.workflows.estimate import Estimate, measure, process_started, what_if
from trainctl.workflows.estimate_compare import Comparison, Variant, compare, parse_size


def size(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} B"


def seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.1f} h ({value:,.0f} s)"
    if value >= 120:
        return f"{value / 60:.1f} min ({value:,.0f} s)"
    return f"{value:.3g} s" if value < 10 else f"{value:.1f} s"


def differ(values: Sequence[float], tolerance: float = 0.05) -> bool:
    return len(values) > 1 and max(values) > (1 + tolerance) * min(values)


def print_estimate(e: Estimate, console: Console) -> None:
    console.print(
        f"[bold]estimate: {e.preset}[/], {e.world_size} rank(s) parallel {e.parallel} on {e.device}, "
        f"{e.threads_per_rank} thread(s) per rank; measured {e.warmup_steps} warm-up + {e.measured_steps} "
        f"steps in {e.estimate_seconds:.1f} s (nothing kept)"
    )
    bound = (
        f"data-bound: {e.input_wait_fraction:.0%} of a step waits for input"
        if e.bound == "data"
        else f"compute-bound: {e.input_wait_fraction:.0%} of a step waits for input"
    )
    peaks = ", ".join(f"rank {r} {size(b)}" for r, b in enumerate(e.peak_memory_bytes_per_rank))
    memory_kind = "GPU reserved" if e.device == "cuda" else "resident"
    rows = [
        (
            "start-up",
            f"{seconds(e.startup_seconds)} to the first step; warm-up steps {seconds(e.first_step_seconds)}",
        ),
        ("step", f"{e.seconds_per_step:.4g} s, {e.samples_per_second:,.0f} samples/s; {bound}"),
        ("epoch", f"{seconds(e.seconds_per_epoch)} ({e.steps_per_epoch:,} steps of {e.global_batch})"),
        ("evaluation", f"{seconds(e.eval_seconds)} per pass x {e.eval_passes}"),
        (
            "checkpoint",
            f"{size(e.checkpoint_bytes)}; {seconds(e.checkpoint_seconds)} per write x {e.checkpoint_writes}",
        ),
        ("whole run", f"{seconds(e.total_seconds)} ({e.epochs} epoch(s), {e.run_steps:,} steps)"),
        (f"peak memory ({memory_kind})", peaks),
    ]
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    ranks = e.per_rank
    if differ([r["seconds_per_step"] for r in ranks]) or differ([r["eval_seconds"] for r in ranks]):
        per_rank = Table("rank", "s/step", "waits for input", "evaluation", "peak memory", box=None)
        for r in ranks:
            per_rank.add_row(
                str(r["rank"]),
                f"{r['seconds_per_step']:.4g}",
                f"{r['input_wait_fraction']:.0%}",
                seconds(r["eval_seconds"]),
                size(r["peak_memory_bytes"]),
            )
        console.print(per_rank)


def whole_run_at(e: Estimate, prediction: Prediction) -> float:
    """The whole run with the predicted step in place of the measured one."""
    return e.total_seconds + max(e.run_steps - e.warmup_steps, 0) * (
        prediction.step_seconds - e.seconds_per_step
    )


def print_what_if(e: Estimate, predictions: list[Prediction], network: Network, console: Console) -> None:
    console.print(
        f"[bold]what if[/] (from the {e.world_size}-rank measurement; {network.bandwidth_gbit:g} Gbit/s, "
        f"{network.latency_us:g} us per message)"
    )
    table = Table("ranks", "s/step", "compute", "communication", "bubble", "samples/s", "whole run", box=None)
    for p in predictions:
        table.add_row(
            str(p.ranks),
            f"{p.step_seconds:.4g}",
            f"{p.compute_seconds:.4g}",
            f"{p.comm_seconds:.4g}",
            f"{p.bubble:.0%}" if e.parallel == "pipeline" else "-",
            f"{e.global_batch / p.step_seconds:,.0f}" if p.step_seconds > 0 else "-",
            seconds(whole_run_at(e, p)),
        )
    console.print(table)
    if predictions:
        console.print(f"model: step = {predictions[0].formula}")
        console.print("assumptions: " + "; ".join(predictions[0].assumptions))


def print_comparison(result: Comparison, console: Console) -> None:
    table = Table("variant", "s/step", "samples/s", "epoch", "whole run", "peak memory", "fits", box=None)
    for v in result.variants:
        e = v.estimate
        if e is None:
            table.add_row(v.label, f"cannot run: {v.error}", "", "", "", "", "")
            continue
        fits = "?" if v.fits is None else "yes" if v.fits else "[red]no[/]"
        table.add_row(
            v.label,
            f"{e.seconds_per_step:.4g}",
            f"{e.samples_per_second:,.0f}",
            seconds(e.seconds_per_epoch),
            seconds(e.total_seconds),
            " / ".join(size(b) for b in e.peak_memory_bytes_per_rank),
            fits,
        )
    console.print(table)
    if result.memory is not None:
        console.print(f"memory available: {size(result.memory.bytes)} ({result.memory.source})")
    if result.suggested is None:
        console.print("[red]no variant fits[/]: lower the batch size, or shard the model (parallel=fsdp)")
    else:
        console.print(f"fastest that fits: {result.suggested.label}\n  {result.suggested.command}")


def variant_json(v: Variant) -> dict[str, Any]:
    return {
        "overrides": v.overrides,
        "label": v.label,
        "command": v.command,
        "fits": v.fits,
        "error": v.error,
        "estimate": v.estimate.to_json() if v.estimate is not None else None,
    }


def estimate_command(
    overrides: Sequence[str],
    *,
    config_file: Path | None = None,
    as_json: bool = False,
    compare_variants: bool = False,
    world: list[int] | None = None,
    bandwidth: float | None = None,
    latency: float | None = None,
    memory_budget: str | None = None,
) -> None:
    """Measure and print; `world` adds what-if rows, `compare_variants` expands the sweep syntax."""
    started = process_started()
    network = Network(
        bandwidth if bandwidth is not None else Network.bandwidth_gbit,
        latency if latency is not None else Network.latency_us,
    )
    if network.bandwidth_gbit <= 0 or network.latency_us < 0:
        raise TrainctlError("--bandwidth must be above 0 and --latency at least 0")
    if world and min(world) < 1:
        raise TrainctlError(f"--world {min(world)}: a world has 1 rank or more")
    budget = parse_size(memory_budget) if memory_budget is not None else None
    console = Console(stderr=as_json, soft_wrap=True)
    if compare_variants:
        first = [True]

        def measure_variant(args: list[str]) -> Estimate:
            console.print(f"measuring {' '.join(args) or '(the preset)'} ...")
            began = started if first[0] else None  # the first variant pays the command's start
            first[0] = False
            return measure(args, config_file=config_file, command_started=began)

        result = compare(overrides, measure_variant, budget=budget)
        if as_json:
            document = {
                "variants": [variant_json(v) for v in result.variants],
                "memory_available": asdict(result.memory) if result.memory else None,
                "suggested": variant_json(result.suggested) if result.suggested else None,
                "estimate": result.suggested.estimate.to_json()
                if result.suggested and result.suggested.estimate
                else None,
            }
            print(json.dumps(document, indent=2, default=str))
        else:
            print_comparison(result, console)
        return
    if not as_json:
        console.print("measuring the job (a few steps in a scratch folder) ...")
    estimate = measure(overrides, config_file=config_file, command_started=started)
    predictions = [what_if(estimate, n, network) for n in world or []]
    if as_json:
        document = {
            "estimate": estimate.to_json(),
            "what_if": [asdict(p) | {"total_seconds": whole_run_at(estimate, p)} for p in predictions],
            "network": asdict(network),
        }
        print(json.dumps(document, indent=2, default=str))
        sys.stdout.flush()
        return
    print_estimate(estimate, console)
    if predictions:
        print_what_if(estimate, predictions, network, console)
