"""Recipe `lr_find`: train with an exponentially rising rate and suggest where the loss falls fastest.

The rule: smooth the loss with an exponential moving average (beta 0.98, bias-corrected), and pick the
rate where the smoothed loss falls steepest against log(rate), looking only below the rate of the
smoothed minimum (past it the loss climbs). `min/10`, the rate of the minimum divided by ten, is
reported beside it as a cross-check.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainctl.errors import TrainctlError

if TYPE_CHECKING:
    from trainctl.config.schema import Config
    from trainctl.runtime.worker import WorkerContext

SMOOTHING = 0.98
DIVERGED = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum


@dataclass
class LrFindResult:
    rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested: float  # steepest descent of the smoothed loss
    min_over_10: float  # the rate of the smoothed minimum / 10
    stopped: str  # why the sweep ended
    folder: str = ""


def smooth(losses: Sequence[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**i))
    return out


def suggest(rates: Sequence[float], smoothed: Sequence[float]) -> tuple[float, float]:
    """(rate of the steepest descent of the smoothed loss before its minimum, minimum's rate / 10)."""
    if len(rates) < 3:
        raise TrainctlError("the range test stopped after fewer than 3 steps", fix="lower --start-lr")
    best = min(range(len(smoothed)), key=lambda i: smoothed[i])
    end = max(best, 2)
    slopes = [
        (smoothed[i + 1] - smoothed[i - 1]) / (math.log(rates[i + 1]) - math.log(rates[i - 1]))
        for i in range(1, end)
    ]
    steepest = 1 + min(range(len(slopes)), key=lambda i: slopes[i])
    return rates[steepest], rates[best] / 10


def rates(start: float, end: float, steps: int) -> list[float]:
    return [start * (end / start) ** (i / (steps - 1)) for i in range(steps)]


def main(cfg: Config, ctx: WorkerContext) -> dict[str, Any]:
    """Run the range test on the config's model, data and optimizer (one process); save a plot."""
    import torch
    from trainctl.recipes.supervised import SupervisedRecipe

    settings = {"steps": 200, "start": 1e-7, "end": 10.0, **ctx.plan.recipe_args}
    steps, start, end = int(settings["steps"]), float(settings["start"]), float(settings["end"])
    recipe = SupervisedRecipe(cfg, ctx)
    recipe.setup()
    recipe.scheduler = torch.optim.lr_scheduler.LambdaLR(recipe.optimizer, lambda step: 1.0)
    schedule = rates(start, end, steps)
    losses: list[float] = []
    stopped = f"reached --end-lr {end:g}"
    for lr, (inputs, targets, size) in zip(schedule, batches(recipe), strict=False):
        for group in recipe.optimizer.param_groups:
            group["lr"] = lr
        loss = recipe.train_step(inputs, targets, size).item()  # one process: a sync costs nothing here
        if not math.isfinite(loss):
            stopped = f"the loss became {loss} at rate {lr:.3g}"
            break
        losses.append(loss)
        smoothed = smooth(losses)
        if len(losses) > 10 and smoothed[-1] > DIVERGED * min(smoothed):
            stopped = f"the loss diverged (over {DIVERGED:g}x its minimum) at rate {lr:.3g}"
            break
        if ctx.stop.requested:
            stopped = "interrupted"
            break
    result = save_result(schedule[: len(losses)], losses, stopped, ctx.run.path, cfg.preset)
    return {
        "steps": len(result.rates),
        "stopped": stopped,
        "suggested": result.suggested,
        "run dir": result.folder,
    }


def save_result(
    tried: list[float], losses: list[float], stopped: str, folder: Path, preset: str
) -> LrFindResult:
    """The suggestion, lr_find.json and the plot lr_find.png in `folder`."""
    from trainctl.observe.plots import Figure, Series, draw

    smoothed = smooth(losses)
    suggested, min_over_10 = suggest(tried, smoothed)
    result = LrFindResult(tried, losses, smoothed, suggested, min_over_10, stopped, str(folder))
    figure = Figure(
        "lr_find",
        f"learning-rate range test: {preset}",
        "train loss",
        xlabel="learning rate",
        log_x=True,
        series=[Series("loss", tried, losses), Series("smoothed", tried, smoothed)],
        marks=[(suggested, f"steepest {suggested:.2g}"), (min_over_10, f"min/10 {min_over_10:.2g}")],
        ylim=(min(losses) * 0.8, max(smoothed) * 1.5) if min(losses) > 0 else None,  # past divergence: off
        log_y=True,
    )
    draw(figure, folder / "lr_find.png")
    (folder / "lr_find.json").write_text(json.dumps(asdict(result), indent=1) + "\n")
    return result


def batches(recipe: object) -> Iterator[tuple[object, object, int]]:
    """Batches of the recipe's loader, epoch after epoch, for as long as they are asked for."""
    epoch = 0
    while True:
        for _, inputs, targets, size in recipe.loader.epoch(epoch):  # type: ignore[attr-defined]
            yield inputs, targets, size
        epoch += 1
