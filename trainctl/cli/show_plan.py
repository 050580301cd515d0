"""Print a Plan for people: `trainctl plan` and `trainctl train --dry-run`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from trainctl.plan import Plan


def print_plan(plan: Plan, launch: str, console: Console | None = None) -> None:
    from trainctl.models import build_model
    from trainctl.runtime.parallel import build_strategy

    console = console or Console()
    cfg = plan.config
    strategy = build_strategy(cfg.parallel)
    steps = plan.steps_per_epoch
    if plan.spec is not None:
        layout = "\n".join(
            strategy.layout(build_model(cfg.model, plan.spec), plan.world_size, plan.per_rank_batch)
        )
    else:
        layout = "(the data set is not on disk yet)"
    table = Table(title=f"plan: {cfg.preset}", show_header=False, title_style="bold")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("recipe", cfg.recipe),
        (
            "model / data",
            f"{cfg.model.name} on {cfg.data.name}"
            + (
                f" ({plan.train_samples:,} train / {plan.test_samples:,} test samples)"
                if plan.train_samples
                else ""
            ),
        ),
        ("optimizer", f"{cfg.optim.name} lr {cfg.optim.lr:g}, schedule {cfg.trainer.schedule.value}"),
        (
            "world",
            f"{plan.world_size} rank(s), parallel {cfg.parallel.name}, device {plan.device}, "
            f"{plan.threads_per_worker} thread(s) per rank (from {plan.threads_source})",
        ),
        (
            "batch",
            f"global {plan.global_batch}; per rank {plan.per_rank_batch}; micro-batch {plan.micro_batch} "
            f"x {cfg.trainer.grad_accum} accumulation step(s)",
        ),
        (
            "steps",
            f"{steps} per epoch x {cfg.trainer.epochs} epochs = {steps * cfg.trainer.epochs}"
            if steps
            else f"{cfg.trainer.epochs} epochs (steps known once the data is on disk)",
        ),
        ("ranks", layout),
        ("launch", launch.splitlines()[0]),
        ("run dir", str(plan.run_dir) if plan.run_dir else f"{cfg.run.root}/{cfg.preset}/<timestamp>"),
        ("resume from", str(plan.resume_from) if plan.resume_from else "-"),
        ("checks", "\n".join(f"ok  {c}" for c in plan.checks)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if len(launch.splitlines()) > 1:  # a command or script, printed as is so that it can be copied
        print("\n".join(launch.splitlines()[1:]))
