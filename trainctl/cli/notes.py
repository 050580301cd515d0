"""How a command tells the user something without stopping: one yellow `note:` line on stderr."""

from __future__ import annotations

from trainctl.runs.run_dir import RunDir


def note(text: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[yellow]note:[/] {escape(text)}")


def note_if_running(run: RunDir) -> None:
    """Readers of a run that is training right now say that they read its latest checkpoint."""
    from trainctl.runs.lock import reading_note

    text = reading_note(run)
    if text is not None:
        note(text)
