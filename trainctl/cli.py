"""The trainctl command line: declares commands and exit codes, delegates to trainctl.commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from trainctl.errors import TrainctlError

app = typer.Typer(
    name="trainctl",
    help="Train models from declarative configs. Example: trainctl train conf=mlp_mnist optim.lr=3e-3",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
configs_app = typer.Typer(
    help="List, show and copy configs. Example: trainctl configs show conf=mlp_mnist", no_args_is_help=True
)
app.add_typer(configs_app, name="configs")

F = TypeVar("F", bound=Callable[..., Any])

OVERRIDES = typer.Argument(
    None, help="Hydra overrides: conf=PRESET, group=option, key=value.", show_default=False
)


def user_errors(command: F) -> F:
    """Print a TrainctlError on one screen (no traceback) and exit with its code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TrainctlError as exc:
            from rich.console import Console
            from rich.markup import escape

            console = Console(stderr=True)
            console.print(f"[bold red]error:[/] {escape(exc.what)}")
            if exc.where:
                console.print(f"  [bold]where:[/] {escape(exc.where)}")
            if exc.fix:
                console.print(f"  [bold]fix:[/] {escape(exc.fix)}")
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def train(
    overrides: list[str] | None = OVERRIDES,
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="A preset-style YAML file to start from (see `trainctl configs cp`), or a saved config.yaml.",
    ),
    resume: str | None = typer.Option(None, "--resume", help="Continue a run: RUN_DIR or 'latest'."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and stop; nothing is written."),
) -> None:
    """Train a model. Example: trainctl train conf=mlp_mnist model.hidden=[512,256] trainer.epochs=5"""
    from trainctl.commands.train import train as run_train

    run_train(overrides or [], config_file=config, resume=resume, dry_run=dry_run)


@app.command("eval")
@user_errors
def eval_command(
    target: str = typer.Argument(..., help="RUN_DIR, 'latest', or a checkpoint file (.pt)."),
    overrides: list[str] | None = OVERRIDES,
    best: bool = typer.Option(False, "--best", help="Use checkpoints/best.pt instead of last.pt."),
) -> None:
    """Evaluate a trained model on its test split. Example: trainctl eval latest"""
    from rich.console import Console

    from trainctl.commands.evaluate import evaluate_checkpoint
    from trainctl.observe.files import format_metrics

    result = evaluate_checkpoint(target, overrides or [], tag="best" if best else "last")
    metrics = {k: v for k, v in result.items() if k not in ("checkpoint", "samples")}
    Console(soft_wrap=True).print(
        f"{result['checkpoint']}: test ({result['samples']} samples) {format_metrics(metrics)}"
    )


@app.command()
@user_errors
def predict(
    target: str = typer.Argument(..., help="RUN_DIR of a text model, 'latest', or a checkpoint file (.pt)."),
    text: list[str] | None = typer.Option(None, "--text", "-t", help="A text to label (repeatable)."),
    file: Path | None = typer.Option(None, "--file", "-f", help="A file with one text per line."),
    best: bool = typer.Option(False, "--best", help="Use checkpoints/best.pt instead of last.pt."),
) -> None:
    """Label texts with a text model. Example: trainctl predict latest --text 'a gorgeous, witty film'"""
    from trainctl.commands.predict import predict as run_predict
    from trainctl.commands.predict import read_texts

    texts = read_texts(text or [], file)
    for p in run_predict(target, texts, tag="best" if best else "last"):
        typer.echo(f"{p.label}\t{p.probability:.4f}" + (f"\t{p.text}" if len(texts) > 1 else ""))


@app.command()
@user_errors
def plan(
    overrides: list[str] | None = OVERRIDES,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="A preset-style YAML file to start from."
    ),
) -> None:
    """Show what a train command would do, without launching. Example: trainctl plan conf=mlp_mnist"""
    from trainctl.commands.train import train as run_train

    run_train(overrides or [], config_file=config, dry_run=True)


@configs_app.command("list")
@user_errors
def configs_list(
    group: str | None = typer.Argument(None, help="Only this group (e.g. model, conf)."),
) -> None:
    """List config groups and their options. Example: trainctl configs list optim"""
    from rich.console import Console

    from trainctl.commands.configs import list_configs

    list_configs(group, Console())


@configs_app.command("show")
@user_errors
def configs_show(
    overrides: list[str] | None = OVERRIDES,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="A preset-style YAML file to start from."
    ),
) -> None:
    """Print the resolved config as YAML. Example: trainctl configs show conf=linreg optim.lr=0.05"""
    from trainctl.commands.configs import show_config

    typer.echo(show_config(overrides or [], config), nl=False)


@configs_app.command("cp")
@user_errors
def configs_cp(
    name: str = typer.Argument(..., help="Preset to copy (see `trainctl configs list conf`)."),
    dest: Path = typer.Argument(..., help="Where to write the copy."),
    force: bool = typer.Option(False, "--force", help="Overwrite DEST."),
) -> None:
    """Copy a preset to edit, then train it with --config. Example: trainctl configs cp mlp_mnist my.yaml"""
    from trainctl.commands.configs import copy_preset

    written = copy_preset(name, dest, force)
    typer.echo(f"wrote {written}; train it with: trainctl train --config {written}")


def main() -> None:
    app()
