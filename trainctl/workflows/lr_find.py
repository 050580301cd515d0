"""`trainctl lr-find`: the range-test recipe run as a one-process job; its result read back from the run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from trainctl.errors import TrainctlError
from trainctl.recipes.lr_find import LrFindResult


def lr_find(
    overrides: Sequence[str], *, steps: int = 200, start: float = 1e-7, end: float = 10.0
) -> LrFindResult:
    """Run recipe=lr_find on the config's model, data and optimizer; its run lives under <runs>/lr_find/."""
    from trainctl import api
    from trainctl.config.compose import compose

    if not (0 < start < end) or steps < 10:
        raise TrainctlError("need 0 < --start-lr < --end-lr and --steps >= 10")
    given = {o.split("=", 1)[0] for o in overrides}
    args = [
        *overrides,
        *(o for o in ("parallel=none", "launcher.nproc=1") if o.split("=", 1)[0] not in given),
    ]
    root = Path(compose(args).config.run.root) / "lr_find"
    job = api.plan_job([*args, "recipe=lr_find", f"run.root={root}"])
    if job.plan.world_size != 1:
        raise TrainctlError("lr-find runs in one process", fix="drop the parallel/launcher overrides")
    job.plan.recipe_args = {"steps": steps, "start": start, "end": end}
    summary = api.launch(job, log=print)
    return LrFindResult(**json.loads((Path(summary["run dir"]) / "lr_find.json").read_text()))
