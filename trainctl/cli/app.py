"""The trainctl command line: declares commands and exit codes, delegates to trainctl.cli."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

from trainctl.errors import TrainctlError

CONFIG_DIR_OPTIONS = ("--config-dir", "-cd")  # -cd: Hydra's short name (`-c` is --config)


class ConfigDirsFirst(TyperGroup):
    """The root command: it reads `--config-dir DIR` (`-cd DIR`) wherever it stands, also after a
    command and while the shell completes a line, as its own option."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_config_dirs(args))


app = typer.Typer(
    cls=ConfigDirsFirst,
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


def show_version(value: bool) -> None:
    if value:
        from trainctl.version import describe

        typer.echo(describe())
        raise typer.Exit()


@app.callback()
def options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=show_version,
        is_eager=True,
        help="Print the versions of trainctl (and its git commit), torch and Python, and exit.",
    ),
    config_dir: list[Path] | None = typer.Option(
        None,
        *CONFIG_DIR_OPTIONS,
        help="A folder of your configs laid out like conf/ (model/NAME.yaml, preset/NAME.yaml, ...), "
        "searched before the built-in ones; repeatable, accepted after any command (also: "
        "$TRAINCTL_CONFIG_PATH).",
    ),
) -> None:
    """Train models from declarative configs. Example: trainctl train conf=mlp_mnist optim.lr=3e-3"""
    if config_dir:
        from trainctl.config.compose import add_config_dirs

        add_config_dirs(config_dir)


def complete_overrides(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of overrides (conf=, group=, section.key=); reads conf/ without importing torch."""
    from trainctl.cli.completion import complete_overrides as complete

    given = ctx.find_root().params.get("config_dir")  # the line's --config-dir (no command runs)
    if given:
        from trainctl.config.compose import add_config_dirs

        add_config_dirs(given)
    return complete(list(ctx.params.get("overrides") or []), incomplete)


def complete_run(incomplete: str) -> list[str]:
    """Shell completion of a run: `latest` and the run directories under the runs root."""
    from trainctl.cli.completion import complete_runs

    return complete_runs(incomplete)


def complete_format(incomplete: str) -> list[str]:
    from trainctl.cli.completion import complete_formats

    return complete_formats(incomplete)


OVERRIDES = typer.Argument(
    None,
    help="Hydra overrides: conf=PRESET, group=option, key=value.",
    show_default=False,
    autocompletion=complete_overrides,
)


def user_errors(command: F) -> F:
    """Print a TrainctlError (or a full or read-only disk) on one screen, no traceback; exit with its code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (TrainctlError, OSError) as caught:
            from rich.console import Console

            from trainctl.runs.disk import disk_error

            exc = caught if isinstance(caught, TrainctlError) else disk_error(caught)
            if exc is None:  # not about the disk: a bug, with its traceback
                raise
            from rich.markup import escape

            console = Console(stderr=True, soft_wrap=True)
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
    resume: str | None = typer.Option(
        None, "--resume", help="Continue a run: RUN_DIR or 'latest'.", autocompletion=complete_run
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and stop; nothing is written."),
    estimate: bool = typer.Option(
        False, "--estimate", help="With --dry-run: measure a few steps and predict time and memory (as plan)."
    ),
    reproduce: str | None = typer.Option(
        None,
        "--reproduce",
        help="Train RUN's saved config again as a new run and compare: exit 0 when the metrics are "
        "identical (or within --tolerance), 1 otherwise.",
        autocompletion=complete_run,
    ),
    tolerance: float = typer.Option(
        0.0, "--tolerance", min=0.0, help="--reproduce: the relative difference still counted as reproduced."
    ),
) -> None:
    """Train a model. Example: trainctl train conf=mlp_mnist model.hidden=[512,256] trainer.epochs=5"""
    from trainctl.cli.train import train as run_train

    if reproduce is not None:
        from trainctl.cli.train import reproduce_run

        other = config or resume or dry_run or estimate
        raise typer.Exit(reproduce_run(reproduce, overrides or [], tolerance, other))
    if estimate:
        from trainctl.cli.estimate import estimate_command

        if not dry_run or resume is not None:
            raise TrainctlError(
                "--estimate measures a new job without training it", fix="use train --dry-run --estimate"
            )
        estimate_command(overrides or [], config_file=config)
        return
    run_train(overrides or [], config_file=config, resume=resume, dry_run=dry_run)


@app.command("eval")
@user_errors
def eval_command(
    target: str = typer.Argument(
        ..., help="RUN_DIR, 'latest', or a checkpoint file (.pt).", autocompletion=complete_run
    ),
    overrides: list[str] | None = OVERRIDES,
    best: bool = typer.Option(False, "--best", help="Use checkpoints/best.pt instead of last.pt."),
    cv: int | None = typer.Option(
        None,
        "--cv",
        help="Rating runs: K-fold cross-validation of the rating predictors (trains mf K times).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Evaluate a trained model on its test split (rating runs: top-10 figures of every recommender beside
    popularity, RMSE/MAE, --cv K). Example: trainctl eval latest"""
    import json

    from rich.console import Console

    from trainctl.cli.evaluate import evaluate_checkpoint
    from trainctl.cli.evaluate_ratings import rating_eval
    from trainctl.observe.files import format_metrics

    if rating_eval(target, overrides or [], tag="best" if best else "last", cv=cv, as_json=as_json):
        return  # a run trained on ratings: top-N figures of every method, RMSE/MAE, --cv folds
    result = evaluate_checkpoint(target, overrides or [], tag="best" if best else "last")
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    metrics = {k: v for k, v in result.items() if k not in ("checkpoint", "samples")}
    Console(soft_wrap=True).print(
        f"{result['checkpoint']}: test ({result['samples']} samples) {format_metrics(metrics)}"
    )


@app.command()
@user_errors
def predict(
    target: str = typer.Argument(
        ...,
        help="RUN_DIR of a text or image model, 'latest', or a checkpoint file (.pt).",
        autocompletion=complete_run,
    ),
    text: list[str] | None = typer.Option(None, "--text", "-t", help="A text to label (repeatable)."),
    file: Path | None = typer.Option(
        None, "--file", "-f", help="A file with one text per line, or an image (JPEG, PNG, WebP)."
    ),
    best: bool = typer.Option(False, "--best", help="Use checkpoints/best.pt instead of last.pt."),
) -> None:
    """Label texts (text models) or an image (image models). Example: trainctl predict latest -t 'witty'"""
    from trainctl.cli.predict import predict as run_predict
    from trainctl.cli.predict import read_inputs

    texts, images = read_inputs(text or [], file)
    many = len(texts) + len(images) > 1
    for p in run_predict(target, texts, images=images, tag="best" if best else "last"):
        typer.echo(f"{p.label}\t{p.probability:.4f}" + (f"\t{p.text}" if many else ""))


@app.command()
@user_errors
def plan(
    overrides: list[str] | None = OVERRIDES,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="A preset-style YAML file to start from."
    ),
    estimate: bool = typer.Option(
        False, "--estimate", help="Run a few measured steps (nothing kept): time, memory, checkpoint size."
    ),
    as_json: bool = typer.Option(False, "--json", help="--estimate: print the estimate as JSON."),
    compare: bool = typer.Option(
        False,
        "--compare",
        help="--estimate each variant of sweep overrides (parallel=ddp,fsdp launcher.nproc=1,2).",
    ),
    world: list[int] | None = typer.Option(None, "--world", help="--estimate: predict the step at N ranks."),
    bandwidth: float | None = typer.Option(None, "--bandwidth", help="--world: link speed in Gbit/s (10)."),
    latency: float | None = typer.Option(None, "--latency", help="--world: microseconds per message (20)."),
    memory_budget: str | None = typer.Option(
        None, "--memory-budget", help="--compare: memory the job may use (e.g. 8G) instead of what is free."
    ),
) -> None:
    """Show what a train command would do, without launching; --estimate measures how long it takes.
    Example: trainctl plan conf=mlp_mnist --estimate"""
    from trainctl.cli.train import train as run_train

    extras = as_json or compare or world or bandwidth is not None or latency is not None or memory_budget
    if extras and not estimate:
        raise TrainctlError(
            "--json, --compare, --world, --bandwidth, --latency and --memory-budget go with --estimate",
            fix="add --estimate",
        )
    if estimate:
        from trainctl.cli.estimate import estimate_command

        estimate_command(
            overrides or [],
            config_file=config,
            as_json=as_json,
            compare_variants=compare,
            world=world,
            bandwidth=bandwidth,
            latency=latency,
            memory_budget=memory_budget,
        )
        return
    run_train(overrides or [], config_file=config, dry_run=True)


@app.command()
@user_errors
def recommend(
    user: str = typer.Option(..., "--user", "-u", help="The user's id, as in the ratings file."),
    n: int = typer.Option(10, "--n", "-n", help="How many items to recommend (at least 1)."),
    method: str | None = typer.Option(
        None,
        "--method",
        "-m",
        help="ease, item-knn, implicit-mf, mf, user-cf, item-cf or popular (default: the run's ranker, else "
        "EASE: beside an mf run and with --data).",
    ),
    run: str | None = typer.Option(
        None, "--run", help="A run trained on ratings: RUN_DIR or 'latest' (default: the newest rating run)."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Use a MovieLens folder, or a CSV with userId,movieId,rating columns, instead of a run.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    k: int | None = typer.Option(
        None, "--k", help="Neighbours: per item for item-knn (200), per prediction for user-cf/item-cf (40)."
    ),
    similarity: str = typer.Option("pearson", "--similarity", help="user-cf/item-cf: pearson or cosine."),
    shrinkage: float = typer.Option(100.0, "--shrinkage", help="user-cf/item-cf: similarity shrinkage."),
) -> None:
    """Recommend the top N items a user has not rated. Example: trainctl recommend --user 1 --n 5"""
    from trainctl.cli.recommend import render
    from trainctl.recommend.answer import recommend as run_recommend

    try:
        answer = run_recommend(
            user, n=n, method=method, run=run, data=data, k=k, similarity=similarity, shrinkage=shrinkage
        )
    except TrainctlError as exc:
        if as_json:  # a script reading stdout gets the error as JSON too (and exit 2)
            import json

            print(json.dumps({"error": exc.what, "where": exc.where, "fix": exc.fix}))
        raise
    render(answer, as_json)


# ---------------------------------------------------------------- compression
@app.command()
@user_errors
def compress(
    target: str = typer.Argument(
        ..., help="The run to compress: RUN_DIR or 'latest'. It is only read.", autocompletion=complete_run
    ),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        "-q",
        help="int8 (dynamic for Linear/BERT models, static for conv nets), int8-dynamic, int8-static, "
        "bf16 or fp16.",
    ),
    prune: float | None = typer.Option(
        None, "--prune", "-p", help="Fraction of weights/channels to remove, in (0, 1)."
    ),
    prune_method: str | None = typer.Option(
        None,
        "--prune-method",
        help="global-l1 (default: zeroes weights) or structured-channels (removes units).",
    ),
    finetune_epochs: int | None = typer.Option(
        None, "--finetune-epochs", help="Epochs of training after pruning."
    ),
    calib_batches: int | None = typer.Option(
        None, "--calib-batches", help="Static int8: training batches to calibrate on (default 32)."
    ),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for the latency figures."),
    best: bool = typer.Option(False, "--best", help="Start from checkpoints/best.pt instead of last.pt."),
) -> None:
    """Compress a run into a new run and print its report card (size, latency, accuracy).
    Example: trainctl compress latest --prune 0.5 --finetune-epochs 1 --quantize int8"""
    from trainctl.cli.compress import compress as run_compress

    run_compress(
        target,
        quantize=quantize,
        prune=prune,
        prune_method=prune_method,
        finetune_epochs=finetune_epochs,
        calib_batches=calib_batches,
        threads=threads,
        best=best,
    )


@app.command()
@user_errors
def compare(
    first: str = typer.Argument(..., help="A run: RUN_DIR or 'latest'.", autocompletion=complete_run),
    second: str = typer.Argument(
        ..., help="Another run trained on the same data.", autocompletion=complete_run
    ),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for the latency figures."),
) -> None:
    """Print the report card of two runs side by side.
    Example: trainctl compare runs/mlp_mnist/20260101-120000 latest"""
    from trainctl.cli.compress import compare as run_compare

    run_compare(first, second, threads=threads)


@app.command("export")
@user_errors
def export(
    target: str = typer.Argument(
        ..., help="The run to export: RUN_DIR or 'latest'. It is only read.", autocompletion=complete_run
    ),
    fmt: str = typer.Option(
        ...,
        "--format",
        "-f",
        help="safetensors, hf (text models), onnx or torch-export.",
        autocompletion=complete_format,
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder to write (default: <runs root>/exports/<preset>/<run>/<format>)."
    ),
    best: bool = typer.Option(False, "--best", help="Export checkpoints/best.pt instead of last.pt."),
) -> None:
    """Write a run's model for other tools, checked against the run, with a README of how to load it.
    Example: trainctl export latest --format onnx"""
    from trainctl.cli.export import export_command

    export_command(target, fmt, out, "best" if best else "last")


# ---------------------------------------------------------------- end compression
@configs_app.command("list")
@user_errors
def configs_list(
    group: str | None = typer.Argument(None, help="Only this group (e.g. model, conf)."),
) -> None:
    """List config groups and their options. Example: trainctl configs list optim"""
    from rich.console import Console

    from trainctl.cli.configs import list_configs

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
    from trainctl.cli.configs import show_config

    typer.echo(show_config(overrides or [], config), nl=False)


@configs_app.command("cp")
@user_errors
def configs_cp(
    name: str = typer.Argument(
        ..., help="A preset (`trainctl configs list conf`), or GROUP/OPTION (model/mlp) for a config folder."
    ),
    dest: Path = typer.Argument(..., help="Where to write the copy (for GROUP/OPTION: your config folder)."),
    force: bool = typer.Option(False, "--force", help="Overwrite DEST."),
) -> None:
    """Copy a preset to edit, then train it with --config; or copy GROUP/OPTION into your config folder.
    Example: trainctl configs cp mlp_mnist my.yaml; trainctl configs cp model/mlp conf"""
    from trainctl.cli.configs import copy_preset

    written, usage = copy_preset(name, dest, force)
    typer.echo(f"wrote {written}; use it with: {usage}")


# ---------------------------------------------------------------- runs, reports, sweeps, smoke
runs_app = typer.Typer(
    help="List, compare and sync runs. Example: trainctl runs ls --preset mlp_mnist", no_args_is_help=True
)
app.add_typer(runs_app, name="runs")


@runs_app.command("ls")
@user_errors
def runs_ls(
    preset: str | None = typer.Option(None, "--preset", "-p", help="Only runs of this preset."),
    root: Path | None = typer.Option(
        None, "--root", help="Runs root (default $TRAINCTL_RUNS_DIR or ./runs)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON list (id, path, status, metric, value, seconds, ...) for scripts."
    ),
) -> None:
    """Runs, newest first: status, main metric, duration, parent run.
    Example: trainctl runs ls --preset mlp_mnist"""
    from rich.console import Console

    from trainctl.cli.runs_list import list_runs
    from trainctl.runs.run_dir import default_runs_root

    list_runs(root or default_runs_root(), preset, Console(), as_json=as_json)


@runs_app.command("diff")
@user_errors
def runs_diff(
    first: str = typer.Argument(..., help="Run A: RUN_DIR, 'latest' or an id.", autocompletion=complete_run),
    second: str = typer.Argument(..., help="Run B: RUN_DIR, 'latest' or an id.", autocompletion=complete_run),
    as_json: bool = typer.Option(False, "--json", help="Print every difference as JSON."),
    plot: Path | None = typer.Option(None, "--plot", help="Draw both runs' loss curves into this PNG."),
) -> None:
    """What differs between two runs: config, code, environment, hardware, data and results.
    Example: trainctl runs diff runs/mlp_digits/A latest"""
    from trainctl.cli.runs_diff import runs_diff as diff_runs

    print(diff_runs(first, second, as_json=as_json, plot_file=plot))


@runs_app.command("sync")
@user_errors
def runs_sync(
    run: str = typer.Argument(..., help="RUN_DIR, 'latest' or an id.", autocompletion=complete_run),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="The MLflow store (default: the run's own, else its config's)."
    ),
) -> None:
    """Upload a run to MLflow: params, metrics it lacks, artifacts. Example: trainctl runs sync latest"""
    from trainctl.observe.mlflow_sink import sync_run
    from trainctl.runs.run_dir import default_runs_root, resolve_run

    entry = sync_run(resolve_run(run, default_runs_root()), tracking_uri)
    sent = entry["metrics_sent"]
    print(f"synced to {entry['tracking_uri']}: MLflow run {entry['run_id']} ({sent} metric values sent)")


@app.command()
@user_errors
def report(
    runs: list[str] = typer.Argument(
        ..., help="Run directories, 'latest', or a sweep directory.", autocompletion=complete_run
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for the PNGs and report.md (default: <run>/report, or runs/reports/).",
    ),
) -> None:
    """Plot runs on shared axes (PNG) with a markdown summary. Example: trainctl report runs/mlp_mnist/*"""
    from trainctl.cli.report import report as write_report

    typer.echo(f"wrote {write_report(runs, out)}")


@app.command("lr-find")
@user_errors
def lr_find(
    overrides: list[str] | None = OVERRIDES,
    steps: int = typer.Option(200, "--steps", help="Steps of the range test (fewer if the loss diverges)."),
    start_lr: float = typer.Option(1e-7, "--start-lr", help="Learning rate of the first step."),
    end_lr: float = typer.Option(10.0, "--end-lr", help="Learning rate of the last step."),
) -> None:
    """Learning-rate range test: plot loss against an exponentially rising rate and suggest one.
    Example: trainctl lr-find conf=mlp_mnist data.root=../shared/data"""
    from trainctl.workflows.lr_find import lr_find as run_lr_find

    result = run_lr_find(overrides or [], steps=steps, start=start_lr, end=end_lr)
    typer.echo(
        f"{len(result.rates)} steps, {result.stopped}\n"
        f"suggested optim.lr={result.suggested:.3g} (steepest fall of the smoothed loss); "
        f"min/10 gives {result.min_over_10:.3g}\nplot: {result.folder}/lr_find.png"
    )


@app.command()
@user_errors
def sweep(
    overrides: list[str] | None = OVERRIDES,
    parallel: int = typer.Option(1, "--parallel", "-j", min=1, help="Jobs at a time."),
    metric: str | None = typer.Option(None, "--metric", help="Rank by this metric (default: the main one)."),
    name: str | None = typer.Option(None, "--name", help="Sweep folder name under runs/sweeps/."),
) -> None:
    """Run every combination of the sweep's values, rank the jobs; re-running skips finished ones.
    Example: trainctl sweep optim.lr=1e-3,3e-3 model=mlp,linear launcher.nproc=1 parallel=none"""
    from trainctl.cli.sweep import sweep as run_sweep

    run_sweep(overrides or [], parallel=parallel, metric=metric, name=name)


@app.command()
@user_errors
def smoke(
    overrides: list[str] | None = OVERRIDES,
    steps: int = typer.Option(20, "--steps", help="Optimizer steps per run."),
    check_resume: bool = typer.Option(
        False, "--check-resume", help="N steps straight must equal N/2 + resume + N/2, bit for bit."
    ),
    check_determinism: bool = typer.Option(
        False, "--check-determinism", help="Two runs with one seed must give bit-identical weights."
    ),
    keep: Path | None = typer.Option(None, "--keep", help="Keep the smoke runs in this folder."),
) -> None:
    """Train a few steps of each preset (conf=NAME ..., default all); fail on a non-finite or flat loss.
    Example: trainctl smoke --check-resume --check-determinism data.root=../shared/data"""
    from trainctl.cli.smoke import smoke_command

    raise typer.Exit(smoke_command(overrides or [], steps, check_resume, check_determinism, keep))


def main() -> None:
    from trainctl.cli.completion_script import install_bash_script
    from trainctl.interrupts import handle_ctrl_c
    from trainctl.runtime.threads import apply_wait_policy, wait_policy

    handle_ctrl_c()
    apply_wait_policy(wait_policy())  # before torch loads OpenMP in this process (a one-process job's)
    install_bash_script()
    app()


def hoist_config_dirs(args: list[str]) -> list[str]:
    """Move `--config-dir DIR` / `-cd DIR` (and `--config-dir=DIR`) from after a command to the front,
    where the root option reads it for every command alike (`trainctl train -cd conf model=mynet`)."""
    end = args.index("--") if "--" in args else len(args)
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < end:
        if args[i] in CONFIG_DIR_OPTIONS and i + 1 < end:
            front += args[i : i + 2]
            i += 2
            continue
        (front if args[i].startswith(tuple(f"{o}=" for o in CONFIG_DIR_OPTIONS)) else rest).append(args[i])
        i += 1
    return [*front, *rest, *args[end:]]
