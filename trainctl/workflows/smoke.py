"""Smoke checks for CI: a few steps of each preset must give a finite, falling loss; optionally a run
split by a resume must equal a straight run, and two runs with one seed must be bit-identical."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainctl.config.compose import options
from trainctl.errors import TrainctlError
from trainctl.runs.summaries import read_metrics

DEFAULT_STEPS = 20


@dataclass
class SmokeResult:
    """What the smoke run of one preset found: a line per check, and whether all passed."""

    preset: str
    checks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def loss_falls(losses: list[float]) -> tuple[bool, str]:
    """Finite everywhere, and the mean of the last quarter of steps below the mean of the first."""
    if not losses:
        return False, "no training step was logged"
    bad = [i for i, v in enumerate(losses, start=1) if not math.isfinite(v)]
    if bad:
        return False, f"non-finite loss at logged step {bad[0]}"
    k = max(1, len(losses) // 4)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    if len(losses) < 2 or not last < first:
        return False, f"loss did not fall: {first:.4g} (first {k} steps) -> {last:.4g} (last {k})"
    return True, f"loss {first:.4g} -> {last:.4g} over {len(losses)} steps"


def final_weights(run: Path) -> dict[str, Any]:
    from trainctl.training.checkpoint import load_checkpoint

    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def difference(a: Any, b: Any, where: str = "") -> str | None:
    """None when `a` and `b` (state dicts: tensors, nested containers, plain values) are bit-identical."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
            return f"{where} differs in type or shape"
        if torch.equal(a, b):
            return None
        if a.is_floating_point():
            return f"{where} differs (max abs difference {(a.double() - b.double()).abs().max().item():.3g})"
        return f"{where} differs"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where or 'state'} has different keys: {sorted(map(str, set(a) ^ set(b)))}"
        return next(
            (d for k in a if (d := difference(a[k], b[k], f"{where}.{k}" if where else str(k)))), None
        )
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        return next(
            (
                d
                for i, (x, y) in enumerate(zip(a, b, strict=True))
                if (d := difference(x, y, f"{where}[{i}]"))
            ),
            None,
        )
    return None if a == b else f"{where} differs: {a!r} != {b!r}"


def compare_weights(a: Path, b: Path) -> str | None:
    """None when the two runs' final weights are bit-identical, else what differs."""
    return difference(final_weights(a), final_weights(b))


@contextlib.contextmanager
def quiet(log: Path) -> Iterator[None]:
    """Send a run's console output to a log file."""
    with log.open("a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


class PresetSmoke:
    """Trains one preset a few times under `folder` and checks the results."""

    def __init__(self, preset: str, overrides: Sequence[str], steps: int, folder: Path) -> None:
        self.preset = preset
        self.overrides = list(overrides)
        self.steps = steps
        self.folder = folder
        self.result = SmokeResult(preset)

    def run(self, name: str, steps: int, resume: Path | None = None) -> Path:
        """Train `name` for `steps` optimizer steps (or continue `resume` up to that cap)."""
        from trainctl.cli.train import train

        root = self.folder / name
        args = [f"trainer.max_steps={steps}"]
        if resume is None:
            args = [f"conf={self.preset}", "trainer.log_every=1", f"run.root={root}", *self.overrides, *args]
        root.mkdir(parents=True, exist_ok=True)
        with quiet(self.folder / f"{name}.log"):
            summary = train(args, resume=str(resume) if resume else None)
        return Path(summary["run dir"])

    def check(self, check_resume: bool, check_determinism: bool) -> SmokeResult:
        straight = self.run("straight", self.steps)
        losses = [r["loss"] for r in read_metrics(straight / "metrics.jsonl") if r.get("kind") == "train"]
        ok, text = loss_falls(losses)
        (self.result.checks if ok else self.result.failures).append(text)
        if check_determinism:
            self.compare("determinism", straight, self.run("again", self.steps), "two runs with one seed")
        if check_resume:
            half = self.run("split", self.steps // 2)
            resumed = self.run("split", self.steps, resume=half)
            self.compare(
                "resume",
                straight,
                resumed,
                f"{self.steps // 2} steps + resume + {self.steps - self.steps // 2}",
            )
        return self.result

    def compare(self, check: str, a: Path, b: Path, what: str) -> None:
        problem = compare_weights(a, b)
        if problem is None:
            self.result.checks.append(f"{check}: {what} give bit-identical weights")
        else:
            self.result.failures.append(f"{check}: {what}: {problem}")


def smoke(
    presets: Sequence[str],
    overrides: Sequence[str] = (),
    *,
    steps: int = DEFAULT_STEPS,
    check_resume: bool = False,
    check_determinism: bool = False,
    keep: Path | None = None,
    report: Callable[[SmokeResult], None] = lambda result: None,
) -> list[SmokeResult]:
    """Smoke-test each preset (every preset when none is named); runs live in a temporary folder
    unless `keep` names one. A preset that cannot even start is a failure with its error."""
    if steps < 2:
        raise TrainctlError(f"--steps must be at least 2, got {steps}", fix="use e.g. --steps 20")
    names = list(presets) or options("preset")
    for name in names:
        if name not in options("preset"):
            from trainctl.config.compose import option_file

            option_file("preset", name)  # raises with a suggestion
    results = []
    with contextlib.ExitStack() as stack:
        folder = keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trainctl-smoke-")))
        for name in names:
            tester = PresetSmoke(name, overrides, steps, folder / name)
            try:
                result = tester.check(check_resume, check_determinism)
            except TrainctlError as exc:
                result = tester.result
                result.failures.append(f"{exc.what}" + (f" (fix: {exc.fix})" if exc.fix else ""))
            except Exception as exc:  # a crash in one preset must not hide the others' results
                result = tester.result
                result.failures.append(
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                )
            report(result)
            results.append(result)
    return results


def data_root_overrides(overrides: Sequence[str]) -> list[str]:
    """`data.root=DIR` applies to every preset that reads files: it becomes $TRAINCTL_DATA_DIR (the
    default root) so presets without a data root still compose. Returns the other overrides."""
    rest = []
    for text in overrides:
        key, _, value = text.partition("=")
        if key in ("data.root", "dataset.root") and value:
            os.environ["TRAINCTL_DATA_DIR"] = str(Path(value).expanduser().absolute())
        else:
            rest.append(text)
    return rest
