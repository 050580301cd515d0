"""Learning-rate range test: train with an exponentially rising rate and suggest where loss falls fastest.

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

from trainctl.errors import TrainctlError

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


def lr_find(
    overrides: Sequence[str], *, steps: int = 200, start: float = 1e-7, end: float = 10.0
) -> LrFindResult:
    """Run the range test on the config's model, data and optimizer in this process; save a plot."""
    import torch
    from trainctl.recipes.supervised import SupervisedRecipe

    from trainctl.config.compose import compose
    from trainctl.observe.events import Reporter
    from trainctl.observe.plots import Figure, Series, draw
    from trainctl.plan import make_plan
    from trainctl.runs.run_dir import create_run_dir
    from trainctl.runtime.parallel import build_strategy
    from trainctl.runtime.worker import StopFlag, WorkerContext

    if not (0 < start < end) or steps < 10:
        raise TrainctlError("need 0 < --start-lr < --end-lr and --steps >= 10")
    given = {o.split("=", 1)[0] for o in overrides}
    forced = [o for o in ("parallel=none", "launcher.nproc=1") if o.split("=", 1)[0] not in given]
    plan = make_plan(compose([*overrides, *forced]))
    if plan.world_size != 1:
        raise TrainctlError("lr-find runs in one process", fix="drop the parallel/launcher overrides")
    cfg = plan.config
    folder = create_run_dir(Path(cfg.run.root) / "lr_find", cfg.preset)
    plan.run_dir = folder.path
    torch.set_num_threads(plan.threads_per_worker)
    strategy = build_strategy(cfg.parallel)
    device = torch.device("cuda" if plan.device == "cuda" else "cpu")
    strategy.setup(0, 1, device)
    with StopFlag() as stop:
        ctx = WorkerContext(folder, plan, device, Reporter([]), strategy, stop)
        recipe = SupervisedRecipe(cfg, ctx)
        recipe.setup()
        recipe.scheduler = torch.optim.lr_scheduler.LambdaLR(recipe.optimizer, lambda step: 1.0)
        schedule = rates(start, end, steps)
        losses: list[float] = []
        stopped = f"reached --end-lr {end:g}"
        for lr, (inputs, targets, size) in zip(schedule, batches(recipe), strict=False):
            for group in recipe.optimizer.param_groups:
                group["lr"] = lr
            loss = recipe.train_step(inputs, targets, size)
            if not math.isfinite(loss):
                stopped = f"the loss became {loss} at rate {lr:.3g}"
                break
            losses.append(loss)
            smoothed = smooth(losses)
            if len(losses) > 10 and smoothed[-1] > DIVERGED * min(smoothed):
                stopped = f"the loss diverged (over {DIVERGED:g}x its minimum) at rate {lr:.3g}"
                break
            if stop.requested:
                stopped = "interrupted"
                break
    smoothed = smooth(losses)
    tried = schedule[: len(losses)]
    suggested, min_over_10 = suggest(tried, smoothed)
    result = LrFindResult(tried, losses, smoothed, suggested, min_over_10, stopped, str(folder.path))
    figure = Figure(
        "lr_find",
        f"learning-rate range test: {cfg.preset}",
        "train loss",
        xlabel="learning rate",
        log_x=True,
        series=[Series("loss", tried, losses), Series("smoothed", tried, smoothed)],
        marks=[(suggested, f"steepest {suggested:.2g}"), (min_over_10, f"min/10 {min_over_10:.2g}")],
        ylim=(min(losses) * 0.8, max(smoothed) * 1.5) if min(losses) > 0 else None,  # past divergence: off
        log_y=True,
    )
    draw(figure, folder.path / "lr_find.png")
    (folder.path / "lr_find.json").write_text(json.dumps(asdict(result), indent=1) + "\n")
    return result


def batches(recipe: object) -> Iterator[tuple[object, object, int]]:
    """Batches of the recipe's loader, epoch after epoch, for as long as they are asked for."""
    epoch = 0
    while True:
        for _, inputs, targets, size in recipe.loader.epoch(epoch):  # type: ignore[attr-defined]
            yield inputs, targets, size
        epoch += 1
