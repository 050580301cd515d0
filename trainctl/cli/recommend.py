"""`trainctl recommend`: print the answer to a recommendation query as a table or as JSON."""

from __future__ import annotations

import json

from trainctl.recommend.answer import Recommendation


def render(answer: Recommendation, as_json: bool) -> None:
    """Print the answer as a rich table, or as JSON."""
    if as_json:
        print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Top {len(answer.items)} for user {answer.user} · {answer.method}",
        caption=answer.fallback or answer.description,
        caption_style="yellow" if answer.fallback else "dim",
    )
    table.add_column("#", justify="right")
    table.add_column("item", justify="right")
    table.add_column("title")
    table.add_column("predicted", justify="right")
    for row in answer.items:
        table.add_row(str(row["rank"]), str(row["item"]), row["title"], f"{row['predicted_rating']:.2f}")
    console = Console()
    console.print(table)
    console.print(f"[dim]{answer.source}[/]")
