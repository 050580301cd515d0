"""`trainctl sweep`: run the sweep's jobs, then print them ranked by a metric."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainctl.errors import TrainctlError
from trainctl.runs.metrics import higher_is_better
from trainctl.runs.summaries import format_duration, format_metric
from trainctl.workflows.sweep import JobResult, check_finished, metric_of, run_sweep


def sweep(
    args: Sequence[str],
    *,
    parallel: int = 1,
    metric: str | None = None,
    name: str | None = None,
    console: Console | None = None,
) -> list[JobResult]:
    """Run the sweep (jobs finished before are skipped), print the ranked table; fail if a job failed."""
    console = console or Console()
    results = run_sweep(args, parallel=parallel, name=name, say=console.print)
    console.print(ranked_table(results, metric))
    check_finished(results)
    return results


def ranked_table(results: list[JobResult], metric: str | None) -> Table:
    """Jobs best first by `metric` (default: the runs' main metric); unfinished ones last."""
    chosen = metric or next((r.summary.metric for r in results if r.summary.metric), None)
    if chosen is None:
        chosen = "loss"
    higher = higher_is_better(chosen)
    scored = [(metric_of(r, chosen), r) for r in results]
    if chosen and all(v is None for v, _ in scored) and any(r.summary.status == "finished" for r in results):
        raise TrainctlError(
            f"no job reports a metric named '{chosen}'", fix="use --metric accuracy, rmse, loss"
        )

    def order(item: tuple[float | None, JobResult]) -> tuple[int, float]:
        value, result = item
        if value is None or result.summary.status != "finished":
            return (1, 0.0)
        return (0, -value if higher else value)

    table = Table(title=f"sweep ranked by {chosen} ({'higher' if higher else 'lower'} is better)")
    for column in ("#", "job", "status", chosen, "duration", "this time", "run dir"):
        table.add_column(column)
    for rank, (value, result) in enumerate(sorted(scored, key=order), start=1):
        table.add_row(
            str(rank),
            escape(result.job.label),
            result.summary.status,
            "-" if value is None else format_metric(chosen, value).split(" ", 1)[1],
            format_duration(result.summary.seconds),
            "ran" if result.ran else "skipped",
            str(result.path),
        )
    return table
