"""`trainctl smoke`: run the smoke checks of the named presets (default: all) and print one line each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from trainctl.workflows.smoke import SmokeResult, data_root_overrides, smoke


def split_presets(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """conf=NAME words name presets to test; the rest apply to every preset."""
    presets, rest = [], []
    for text in overrides:
        key, _, value = text.partition("=")
        if key in ("conf", "preset"):
            presets += [v for v in value.split(",") if v]
        else:
            rest.append(text)
    return presets, rest


def smoke_command(
    overrides: Sequence[str], steps: int, check_resume: bool, check_determinism: bool, keep: Path | None
) -> int:
    """Exit code: 0 when every preset passed, 1 otherwise."""
    console = Console(soft_wrap=True)
    presets, rest = split_presets(overrides)
    rest = data_root_overrides(rest)

    def show(result: SmokeResult) -> None:
        mark = "[green]ok[/]" if result.ok else "[bold red]FAILED[/]"
        console.print(f"{mark} [bold]{result.preset}[/]")
        for line in result.checks:
            console.print(f"   {escape(line)}")
        for line in result.failures:
            console.print(f"   [red]{escape(line)}[/]")

    results = smoke(
        presets,
        rest,
        steps=steps,
        check_resume=check_resume,
        check_determinism=check_determinism,
        keep=keep,
        report=show,
    )
    failed = [r.preset for r in results if not r.ok]
    if failed:
        console.print(f"[bold red]smoke failed[/]: {', '.join(failed)}")
        return 1
    console.print(f"[green]smoke passed[/]: {len(results)} preset(s)")
    return 0
