"""Print a Plan for people: `trainctl plan` and `trainctl train --dry-run`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from trainctl.plan import Plan


def print_plan(plan: Plan, console: Console | None = None) -> None:
    console = console or Console()
    cfg = plan.config
    table = Table(title=f"plan: {cfg.preset}", show_header=False, title_style="bold")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("recipe", cfg.recipe),
        ("model / data", f"{cfg.model.name} on {cfg.data.name}"),
        ("optimizer", f"{cfg.optim.name} lr {cfg.optim.lr:g}, schedule {cfg.trainer.schedule.value}"),
        ("launcher", f"{cfg.launcher.name}, world size {plan.world_size}, parallel {cfg.parallel.name}"),
        ("device", plan.device),
        (
            "batch",
            f"global {plan.global_batch} = {plan.world_size} rank(s) x {plan.per_rank_batch}; "
            f"micro-batch {plan.micro_batch} x {cfg.trainer.grad_accum} accumulation step(s)",
        ),
        ("epochs", str(cfg.trainer.epochs)),
        ("run dir", str(plan.run_dir) if plan.run_dir else f"{cfg.run.root}/{cfg.preset}/<timestamp>"),
        ("resume from", str(plan.resume_from) if plan.resume_from else "-"),
        ("checks", "\n".join(f"ok  {c}" for c in plan.checks)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
