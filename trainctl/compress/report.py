"""The report card: two models side by side (size, sparsity, CPU latency, accuracy), as table, JSON, text."""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from trainctl.data.types import DataBundle
from trainctl.training.evaluation import evaluate, evaluated_model
from trainctl.training.objective import Objective, higher_is_better

BATCH_SIZES = (1, 64)
WARMUP = 3  # untimed calls per model and batch size before measuring
MIN_REPEATS = 5
MAX_REPEATS = 200
BUDGET_S = 1.0  # per model and batch size: repeat until this much time is measured (and MIN_REPEATS)


@dataclass
class LayerFigures:
    """One weighted layer (a weight with 2+ dimensions): its shape and the fraction of zeros."""

    shape: list[int]
    sparsity: float


@dataclass
class ModelFigures:
    """What the report card says about one model."""

    parameters: int
    nonzero_parameters: int
    file_bytes: int  # bytes torch.save writes for the model's state dict
    latency_ms: dict[str, float]  # batch size -> median milliseconds per forward pass
    metrics: dict[str, float]  # test loss and the task's metrics
    layers: dict[str, LayerFigures] = field(default_factory=dict)


@dataclass
class ReportCard:
    """Parent against result, and the conditions they were measured under."""

    parent: str
    result: str
    passes: list[str]
    before: ModelFigures
    after: ModelFigures
    threads: int
    repeats: dict[str, int]  # batch size -> timed runs per model (after WARMUP untimed ones)
    eval_samples: int
    columns: tuple[str, str] = ("parent", "result")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(figure, parent, result, change) rows of the main table."""
        a, b = self.before, self.after
        rows = [
            (
                "parameters",
                f"{a.parameters:,}",
                f"{b.parameters:,}",
                ratio(a.parameters, b.parameters, "smaller"),
            ),
            (
                "non-zero parameters",
                f"{a.nonzero_parameters:,}",
                f"{b.nonzero_parameters:,}",
                ratio(a.nonzero_parameters, b.nonzero_parameters, "fewer"),
            ),
            (
                "model file",
                megabytes(a.file_bytes),
                megabytes(b.file_bytes),
                ratio(a.file_bytes, b.file_bytes, "smaller"),
            ),
        ]
        for batch in a.latency_ms:
            x, y = a.latency_ms[batch], b.latency_ms[batch]
            rows.append((f"CPU latency, batch {batch}", f"{x:.3f} ms", f"{y:.3f} ms", ratio(x, y, "faster")))
        for metric in a.metrics:
            rows.append(
                (
                    f"test {metric}",
                    metric_text(metric, a.metrics[metric]),
                    metric_text(metric, b.metrics[metric]),
                    metric_change(metric, a.metrics[metric], b.metrics[metric]),
                )
            )
        return rows

    def layer_rows(self) -> list[tuple[str, str, str, str]]:
        """(layer, parent shape, result shape, result sparsity) for every layer of either model."""
        names = list(dict.fromkeys([*self.before.layers, *self.after.layers]))
        rows = []
        for name in names:
            a, b = self.before.layers.get(name), self.after.layers.get(name)
            rows.append(
                (
                    name,
                    "x".join(map(str, a.shape)) if a else "-",
                    "x".join(map(str, b.shape)) if b else "-",
                    f"{b.sparsity:.1%}" if b else "-",
                )
            )
        return rows

    def conditions(self) -> str:
        repeats = ", ".join(f"{n} at batch {b}" for b, n in self.repeats.items())
        return (
            f"CPU latency: median of timed forward passes ({repeats}) after {WARMUP} warm-up passes, "
            f"{self.threads} thread(s), the two models timed alternately on the same test batches; "
            f"metrics on the same test split ({self.eval_samples:,} samples); model file: torch.save of "
            "the state dict."
        )

    def to_markdown(self) -> str:
        lines = [
            f"# Report card: {self.result}",
            "",
            f"{self.columns[0].capitalize()}: `{self.parent}`  ",
            f"Passes: {'; '.join(self.passes) or '-'}",
            "",
            f"| figure | {self.columns[0]} | {self.columns[1]} | change |",
            "| --- | ---: | ---: | --- |",
            *(f"| {' | '.join(row)} |" for row in self.rows()),
            "",
            f"| layer | {self.columns[0]} shape | {self.columns[1]} shape | {self.columns[1]} sparsity |",
            "| --- | --- | --- | ---: |",
            *(f"| {' | '.join(row)} |" for row in self.layer_rows()),
            "",
            self.conditions(),
            "",
        ]
        return "\n".join(lines)

    def print(self, console: Any | None = None) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        table = Table(
            title=f"report card: {self.parent} -> {self.result}"
            if self.columns[0] == "parent"
            else f"{self.parent} vs {self.result}",
            title_style="bold",
        )
        for column in ("figure", *self.columns, "change"):
            table.add_column(column, justify="right" if column in self.columns else "left")
        for row in self.rows():
            table.add_row(*row)
        console.print(table)
        layers = Table(show_header=True, header_style="bold")
        first, second = self.columns
        for column in ("layer", f"{first} shape", f"{second} shape", f"{second} sparsity"):
            layers.add_column(column)
        for row in self.layer_rows():
            layers.add_row(*row)
        console.print(layers)
        if self.passes:
            console.print(f"passes: {'; '.join(self.passes)}")
        console.print(self.conditions(), soft_wrap=True)


def ratio(before: float, after: float, word: str) -> str:
    """`2.85x faster`-style change; `same` when equal."""
    if before == after:
        return "same"
    if after == 0 or before == 0:
        return "-"
    if after > before:
        return f"{after / before:.2f}x {OPPOSITE[word]}"
    return f"{before / after:.2f}x {word}"


OPPOSITE = {"smaller": "larger", "fewer": "more", "faster": "slower"}


def megabytes(count: int) -> str:
    return f"{count / 1e6:.3f} MB"


def metric_text(metric: str, value: float) -> str:
    return f"{value:.2%}" if metric == "accuracy" else f"{value:.4f}"


def metric_change(metric: str, before: float, after: float) -> str:
    if metric == "accuracy":
        return f"{(after - before) * 100:+.2f} points"
    better = (after > before) == higher_is_better(metric)
    return "same" if after == before else f"{after - before:+.4f} ({'better' if better else 'worse'})"


# ------------------------------------------------------------------------------------------ measuring
def weight_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every learned tensor by name, float or int8 (quantized layers keep theirs behind methods)."""
    tensors = {name: p.detach() for name, p in model.named_parameters()}
    for path, module in model.named_modules():
        if not type(module).__module__.startswith(
            ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")
        ):
            continue
        for attr in ("weight", "bias"):
            getter = getattr(module, attr, None)
            value = getter() if callable(getter) else None
            if isinstance(value, torch.Tensor):
                tensors[f"{path}.{attr}"] = value
    return tensors


def as_float(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.dequantize() if tensor.is_quantized else tensor


def file_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def static_figures(model: nn.Module) -> tuple[int, int, dict[str, LayerFigures]]:
    """Parameters, non-zero parameters and the weighted layers of `model`."""
    tensors = weight_tensors(model)
    total = sum(t.numel() for t in tensors.values())
    nonzero = sum(int(torch.count_nonzero(as_float(t))) for t in tensors.values())
    layers = {
        name.removesuffix(".weight"): LayerFigures(
            list(t.shape), 1.0 - int(torch.count_nonzero(as_float(t))) / t.numel()
        )
        for name, t in tensors.items()
        if name.endswith("weight") and t.dim() >= 2
    }
    return total, nonzero, layers


@contextmanager
def threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def latency_batches(data: DataBundle) -> dict[int, torch.Tensor]:
    """The first 1 and 64 test inputs (the test split repeated if it is smaller), gathered as training
    and evaluation gather them (a text batch is padded only to its own longest sequence)."""
    return {size: data.test.batch(torch.arange(size) % len(data.test))[0] for size in BATCH_SIZES}


def time_alternately(models: list[nn.Module], batch: torch.Tensor) -> tuple[list[float], int]:
    """Median seconds per forward pass of each model, timed in alternation; and the repeat count."""
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for model in models:
            for _ in range(WARMUP):
                model(batch)
        while len(times[0]) < MAX_REPEATS and (
            len(times[0]) < MIN_REPEATS or min(sum(t) for t in times) < BUDGET_S
        ):
            for model, spent in zip(models, times, strict=True):
                started = time.perf_counter()
                model(batch)
                spent.append(time.perf_counter() - started)
    return [statistics.median(t) for t in times], len(times[0])


def measure(
    before: nn.Module,
    after: nn.Module,
    data: DataBundle,
    objective: Objective,
    *,
    thread_count: int,
    eval_batch_size: int,
    names: tuple[str, str],
    passes: list[str],
    columns: tuple[str, str] = ("parent", "result"),
) -> ReportCard:
    """The report card of two models on the CPU, both on the same data and thread count."""
    cpu = torch.device("cpu")
    models = [before.to(cpu).eval(), after.to(cpu).eval()]
    latencies: dict[str, list[float]] = {}
    repeats: dict[str, int] = {}
    with threads(thread_count):
        for size, batch in latency_batches(data).items():
            seconds, count = time_alternately(models, batch)
            latencies[str(size)] = [s * 1e3 for s in seconds]
            repeats[str(size)] = count
        metrics = [  # as the runs evaluate: with the data set's test-time views, if any
            evaluate(evaluated_model(m, data), data.test, objective, batch_size=eval_batch_size, device=cpu)
            for m in models
        ]
    figures = []
    for i, model in enumerate(models):
        total, nonzero, layers = static_figures(model)
        figures.append(
            ModelFigures(
                parameters=total,
                nonzero_parameters=nonzero,
                file_bytes=file_bytes(model),
                latency_ms={size: values[i] for size, values in latencies.items()},
                metrics=metrics[i],
                layers=layers,
            )
        )
    return ReportCard(
        parent=names[0],
        result=names[1],
        passes=passes,
        before=figures[0],
        after=figures[1],
        threads=thread_count,
        repeats=repeats,
        eval_samples=len(data.test),
        columns=columns,
    )
