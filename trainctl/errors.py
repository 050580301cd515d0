"""The project's exception types: user errors carry what went wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TrainctlError(Exception):
    """A problem the user can fix; the CLI prints it on one screen and exits with `exit_code`."""

    exit_code = 2
    status = "failed"  # how a run that ends with this error ends, in its run.json

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.fix = fix

    def __str__(self) -> str:
        parts = [self.what]
        if self.where:
            parts.append(f"where: {self.where}")
        if self.fix:
            parts.append(f"fix: {self.fix}")
        return "\n".join(parts)


class RunFailed(TrainctlError):
    """A run that started but could not finish (non-finite loss, a crashed worker): exit code 1."""

    exit_code = 1


class RunInterrupted(TrainctlError):
    """The user stopped the run; a checkpoint was written and the run can be resumed."""

    exit_code = 130
    status = "interrupted"


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest of `choices` to `word`, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def suggestion(word: str, choices: Iterable[str]) -> str:
    """A ' Did you mean X?' fragment, or '' when nothing is close."""
    match = did_you_mean(word, choices)
    return f" Did you mean '{match}'?" if match else ""
