"""PNG line plots of runs' metrics against step with matplotlib (Agg backend, imported on first use)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

LEGEND_WRAP = 40  # characters per legend line


@dataclass
class Series:
    """One run's values of one quantity: a line (or markers) on a shared axis."""

    label: str
    steps: list[float]
    values: list[float]
    markers: bool = False  # evaluations: few points, drawn with markers
    color: int | None = None  # series of one run share a colour (default: one per series)


@dataclass
class Figure:
    """One PNG: a title, axis labels and the lines of every run."""

    name: str
    title: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    log_y: bool = False
    xlabel: str = "step"
    log_x: bool = False
    marks: list[tuple[float, str]] = field(default_factory=list)  # vertical lines: (x, label)
    ylim: tuple[float, float] | None = None
    legend_title: str | None = None  # e.g. what the runs' labels are made of


def pyplot():  # type: ignore[no-untyped-def]
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(figure: Figure, path: Path) -> Path:
    """Write `figure` as a PNG: one colour per series (or per run), evaluations with markers."""
    plt = pyplot()
    fig = plotted(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")  # the canvas grows to hold the legend
    plt.close(fig)
    return path


def plotted(figure: Figure):  # type: ignore[no-untyped-def]
    """The matplotlib figure of `figure`, its legend on the right outside the axes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for index, series in enumerate(figure.series):
        color = f"C{(index if series.color is None else series.color) % 10}"
        if series.markers:
            ax.plot(series.steps, series.values, "o--", color=color, label=series.label, markersize=4)
        else:
            ax.plot(series.steps, series.values, "-", color=color, label=series.label, linewidth=1.4)
    for index, (x, label) in enumerate(figure.marks):
        ax.axvline(x, color=f"C{(len(figure.series) + index) % 10}", linestyle=":", label=label)
    ax.set_title(figure.title)
    ax.set_xlabel(figure.xlabel)
    ax.set_ylabel(figure.ylabel)
    if figure.log_y and all(v > 0 for s in figure.series for v in s.values):
        ax.set_yscale("log")
    if figure.ylim is not None:
        ax.set_ylim(*figure.ylim)
    if figure.log_x:
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    if figure.series:  # outside the axes, on the right, so that no curve hides under it
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(
            handles,
            [textwrap.fill(label, LEGEND_WRAP) for label in labels],  # long labels wrap, never cut
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            title=textwrap.fill(figure.legend_title, LEGEND_WRAP) if figure.legend_title else None,
            title_fontsize=8,
        )
    return fig
