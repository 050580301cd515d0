"""What `--resume` may change: settings that leave the checkpoint's meaning and the training intact are
applied; a change to the model, data, optimizer, schedule, seed or layout is refused with a table."""

from __future__ import annotations

from typing import Any

from trainctl.errors import TrainctlError

# Keys (or sections, ending in '.') that a resumed run may change, and why they are safe to change.
MAY_CHANGE = (
    "trainer.epochs",  # more (or fewer) epochs; the schedule is re-planned from the saved step (not onecycle)
    "trainer.max_steps",  # the schedule spans trainer.epochs whatever the cap
    "trainer.log_every",
    "trainer.eval_every",
    "trainer.eval_batch_size",
    "trainer.early_stopping.",
    "trainer.monitor",  # which evaluation picks best.pt from now on
    "trainer.keep_checkpoints",
    "trainer.checkpoint_every",
    "trainer.profile",
    "trainer.threads",
    "logger",
    "mlflow.",
    "launcher.max_restarts",
    "launcher.start_method",
    "launcher.rdzv_endpoint",
    "launcher.rdzv_timeout",
    "launcher.run_id",
    "data.root",  # where the same files are
    "data.download",
    "data.mirrors",
    "data.cache_dir",
    "run.root",
    "compress.",  # a step after training
    "compress",
)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value (lists are leaves)."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat |= flatten(value, f"{prefix}{key}.")
    return flat


def may_change(key: str) -> bool:
    return any(
        key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in MAY_CHANGE
    )


def resume_changes(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every value the new config changes: key -> (old, new). Keys only one side has (a schema that
    gained a field since the run was written) are not changes."""
    old, now = flatten(saved), flatten(new)
    return {key: (old[key], now[key]) for key in old.keys() & now.keys() if old[key] != now[key]}


def check_resume(saved: dict[str, Any], new: dict[str, Any], run: str) -> dict[str, tuple[Any, Any]]:
    """The changes a resume applies; TrainctlError (exit 2) with an old -> new table of those that would
    make the checkpoint mean something else or change how the run trains."""
    changes = resume_changes(saved, new)
    refused: list[tuple[str, Any, Any, str]] = []
    for key, (old, value) in sorted(changes.items()):
        if not may_change(key):
            refused.append((key, old, value, ""))
        elif key == "trainer.epochs" and new["trainer"]["schedule"] == "onecycle":
            refused.append((key, old, value, "a one-cycle schedule spans the epochs it was planned for"))
    if refused:
        width = max(len(key) for key, *_ in refused)
        table = "\n".join(
            f"  {key:<{width}}  {old!r} -> {value!r}" + (f"  ({why})" if why else "")
            for key, old, value, why in refused
        )
        changing = " ".join(f"{key}={value}" for key, _, value, _ in refused)
        raise TrainctlError(
            f"--resume cannot change how the run trains; these overrides would:\n{table}",
            where=run,
            fix="resume without them, or start a new run from this one's config with the change: "
            f"trainctl train --config {run}/config.yaml {changing}. A resume may change: "
            "trainer.epochs (not under a one-cycle schedule), trainer.max_steps, logging, evaluation, "
            "early stopping, checkpoints kept, threads, restarts and where the data are.",
        )
    return changes
