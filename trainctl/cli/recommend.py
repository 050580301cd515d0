"""`trainctl recommend`: print the answer to a recommendation query as a table or as JSON."""

from __future__ import annotations

import json

from trainctl.recommend.answer import Recommendation


def render(answer: Recommendation, as_json: bool) -> None:
    """Print the answer as a rich table, or as JSON; notes about the ratings go to stderr either way."""
    from trainctl.cli.notes import note

    for text in answer.data_notes:
        note(text)
    if as_json:
        print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Top {len(answer.items)} for user {answer.user} · {answer.method}",
        caption=answer.note or answer.description,
        caption_style="yellow" if answer.note else "dim",
    )
    table.add_column("#", justify="right")
    table.add_column("title")
    table.add_column("score", justify="right")
    table.add_column("ratings", justify="right")
    explained = any(row["because"] for row in answer.items)
    if explained:
        table.add_column("because you liked")
    for row in answer.items:
        cells = [
            str(row["rank"]),
            row["title"] or f"item {row['item']}",
            f"{row['score']:.3f}",
            f"{row['ratings']:,}",
        ]
        if explained:
            cells.append(", ".join(row["because"] or []))
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(f"[dim]{answer.source}[/]")
