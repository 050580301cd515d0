"""The console: the live view's progress (step of total, bar, ETA, reduced loss) on a terminal and in a
pipe, runs that stop early, a finished bar's count, and progress tickers for long silent phases."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.conftest import SINGLE, trainctl
from trainctl.cli.app import app
from trainctl.observe import progress as progress_module
from trainctl.observe.events import EpochRecord, EvalRecord, RunEnd, RunStart, StepRecord
from trainctl.observe.files import EventFile
from trainctl.observe.progress import TrainingProgress
from trainctl.observe.rank_view import RankView
from trainctl.observe.ticker import Ticker
from trainctl.runs.run_dir import RunDir


class Clock:
    """time.monotonic() under the test's control."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def start(epochs: int = 20, steps: int = 23, max_steps: int | None = None, rank: int = 0) -> RunStart:
    return RunStart(
        run_dir="/runs/mlp_digits/20260101-000000",
        preset="mlp_digits",
        epochs=epochs,
        steps_per_epoch=steps,
        start_epoch=0,
        start_step=0,
        world_size=2,
        parameters=19210,
        train_samples=1438,
        test_samples=359,
        max_steps=max_steps,
        rank=rank,
    )


def step(n: int, loss: float = 0.5, rank: int = 0, steps_per_epoch: int = 23) -> StepRecord:
    epoch, batch = divmod(n - 1, steps_per_epoch)
    return StepRecord(n, epoch, batch + 1, loss, 0.01, 9000.0, rank=rank)


def text_console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=80, force_terminal=terminal, color_system=None), buffer


def started_pipe_bar() -> tuple[TrainingProgress, io.StringIO]:
    """A progress bar printing plain lines (no terminal), started on `start()`."""
    console, buffer = text_console(terminal=False)
    bar = TrainingProgress(console, live=False)
    bar.start(start())
    return bar, buffer


def render(console: Console, renderable: object) -> str:
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


# ---------------------------------------------------------------- progress of a training run
def test_pipe_progress_prints_step_of_total_loss_and_eta_at_least_every_10_s(clock: Clock) -> None:
    bar, buffer = started_pipe_bar()
    clock.now += 5.0
    bar.step(step(40, 1.25))
    assert buffer.getvalue() == ""  # under 10 s since the start: nothing yet
    clock.now += 5.5
    bar.step(step(100, 0.75))  # 100 steps in 10.5 s: 360 left take 37.8 s
    clock.now += 2.0
    bar.step(step(120))
    clock.now += 9.0
    bar.step(step(230, 0.0475))
    lines = buffer.getvalue().splitlines()
    assert lines == [
        "step 100/460 (22%)  epoch 5/20  loss 0.7500  ETA 0:00:38",
        "step 230/460 (50%)  epoch 10/20  loss 0.0475  ETA 0:00:22",
    ]


def test_a_finished_bar_keeps_its_final_count_and_says_how_long(clock: Clock) -> None:
    bar, buffer = started_pipe_bar()
    clock.now += 3.0
    bar.step(step(460, 0.0286))
    bar.end(RunEnd("finished", {"steps": 460}))
    assert (
        buffer.getvalue().splitlines()[-1] == "step 460/460 (100%)  epoch 20/20  loss 0.0286  done in 0:00:03"
    )


def test_max_steps_caps_the_bar_and_early_stopping_shows_where_it_stopped(clock: Clock) -> None:
    console, _ = text_console(terminal=True)
    capped = TrainingProgress(console, live=True)
    capped.start(start(max_steps=200))
    capped.step(step(200))
    capped.end(RunEnd("finished", {"steps": 200}))
    assert "200/200" in render(console, capped.renderable())
    early = TrainingProgress(console, live=True)
    early.start(start(epochs=30))
    clock.now += 1.0
    early.step(step(92))
    early.end(RunEnd("finished", {"steps": 92}))
    shown = render(console, early.renderable())
    assert "92/690" in shown and "stopped, 0:00:01" in shown and "ETA" not in shown


def write_events(logs: Path, rank: int, events: list) -> None:
    sink = EventFile(logs / f"rank{rank}.events.jsonl")
    for event in events:
        sink.emit(event)
    sink.close()


def test_rank_view_on_a_terminal_shows_the_bar_eta_and_reduced_loss_above_the_ranks(
    tmp_path: Path, clock: Clock
) -> None:
    console, _ = text_console(terminal=True)
    view = RankView(tmp_path, [0, 1], console=console)
    for rank in (0, 1):
        write_events(tmp_path, rank, [start(rank=rank)])
    view.poll()
    clock.now += 4.0
    for rank in (0, 1):
        write_events(tmp_path, rank, [step(230, 0.0475, rank=rank)])
    view.poll()
    shown = render(console, view.display())
    bar_line = next(line for line in shown.splitlines() if line.startswith("train"))
    assert "━" in bar_line and "230/460" in bar_line and "epoch 10/20" in bar_line
    assert "loss 0.0475" in bar_line and "ETA 0:00:04" in bar_line
    assert len(bar_line) <= 80
    assert "rank" in shown and "training" in shown  # the per-rank table below it


def test_rank_view_in_a_pipe_ends_with_the_final_count_the_ranks_and_the_summary(tmp_path: Path) -> None:
    console, buffer = text_console(terminal=False)
    for rank in (0, 1):
        write_events(
            tmp_path,
            rank,
            [
                start(max_steps=100, rank=rank),
                step(100, 0.125, rank=rank),
                EvalRecord(100, 4, "test", {"loss": 0.2, "accuracy": 0.9}, 0.01, rank=rank),
                RunEnd(
                    "finished",
                    {"stopped": "at step 100 of 460 (trainer.max_steps=100)", "steps": 100},
                    rank=rank,
                ),
            ],
        )
    with RankView(tmp_path, [0, 1], console=console):
        pass
    out = buffer.getvalue()
    assert "(capped at 100 steps by trainer.max_steps)" in out
    assert "step 100/100 (100%)  epoch 5/20  loss 0.1250  done in" in out
    assert out.index("done in") < out.index("finished") < out.index("run finished")
    assert "at step 100 of 460 (trainer.max_steps=100)" in out
    assert "epochs" not in out.split("run finished")[1]  # not the 20 planned epochs


def test_epoch_lines_in_a_pipe_and_none_under_a_live_bar() -> None:
    from trainctl.observe.console import ConsoleView

    for terminal, expected in ((False, True), (True, False)):
        console, buffer = text_console(terminal)
        view = ConsoleView(console)
        view.emit(start())
        view.emit(step(23))
        view.emit(EpochRecord(0, 23, 0.1, 1438))
        view.close()
        assert ("epoch 1/20 0.10s" in buffer.getvalue()) is expected


# ---------------------------------------------------------------- whole runs
def test_the_default_two_rank_run_in_a_pipe_reports_progress_and_a_whole_summary(runs_root: Path) -> None:
    result = trainctl("train", runs=runs_root, env={"COLUMNS": "60"})
    assert result.returncode == 0, result.stderr
    assert "step 460/460 (100%)  epoch 20/20  loss " in result.stdout and "done in 0:00:" in result.stdout
    run = next((runs_root / "mlp_digits").iterdir())
    assert str(run) in squeeze(result.stdout.split("run finished")[1])  # folded, never cut
    assert "…" not in result.stdout


def squeeze(text: str) -> str:
    """Table text without borders or white space: a folded cell reads whole again."""
    return "".join(text.replace("│", " ").split())


def test_a_capped_run_says_where_it_stopped_instead_of_the_planned_epochs(runs_root: Path) -> None:
    result = trainctl("train", "trainer.max_steps=30", *SINGLE, runs=runs_root)
    assert result.returncode == 0, result.stderr
    assert "stopped at step 30 of 460 (trainer.max_steps=30)" in result.stdout
    assert "step 30/30 (100%)" in result.stdout
    summary = result.stdout.split("run finished")[1]
    assert "at step 30 of 460" in summary and "epochs" not in summary


@pytest.mark.slow
def test_on_an_80_column_terminal_the_two_rank_run_shows_the_bar_and_eta(runs_root: Path) -> None:
    """A real pseudo-terminal, 80 columns wide: what a person running `trainctl train` sees."""
    from bench.common import in_terminal

    env = {**os.environ, "TRAINCTL_RUNS_DIR": str(runs_root), "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    code, out = in_terminal([sys.executable, "-m", "trainctl", "train", "trainer.epochs=40"], env, columns=80)
    assert code == 0, out[-2000:]
    assert "━" in out and "ETA 0:0" in out  # the live bar while it ran
    assert "920/920" in out and "done in" in out  # the finished bar, with its final count


# ---------------------------------------------------------------- tickers of silent phases
def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_ticker_in_a_pipe_reports_progress_and_eta_every_interval_then_done() -> None:
    console, buffer = text_console(terminal=False)
    with Ticker("5-fold cross-validation", total=4, unit="folds", every=0.05, console=console) as ticker:
        ticker.update(2)
        wait_for(lambda: "ETA" in buffer.getvalue())
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "5-fold cross-validation ..."
    assert lines[1].startswith("5-fold cross-validation: 2 folds of 4 folds (50%), 0:00:0")
    assert "ETA 0:00:0" in lines[1]
    assert lines[-1].startswith("5-fold cross-validation: done in 0:00:0")


def test_ticker_passes_its_lines_to_a_worker_message_and_says_when_a_phase_fails() -> None:
    said: list[str] = []
    with pytest.raises(RuntimeError), Ticker("compiling the model", say=said.append, every=0.05):
        wait_for(lambda: len(said) >= 2)
        raise RuntimeError("boom")
    assert said[0] == "compiling the model ..."
    assert said[1].startswith("compiling the model: 0:00:0") and "elapsed" in said[1]
    assert said[-1].startswith("compiling the model: failed after 0:00:0")


def test_ticker_on_a_terminal_draws_a_bar_and_leaves_one_line() -> None:
    console, buffer = text_console(terminal=True)
    with Ticker("downloading x.gz", total=2_000_000, unit="bytes", console=console) as ticker:
        assert ticker.bar is not None and ticker.thread is None  # live: no timed lines
        ticker.advance(1_000_000)
        assert ticker.line().startswith("downloading x.gz: 1.0 MB of 2.0 MB (50%)")
    last = buffer.getvalue().rstrip().splitlines()[-1]
    assert "downloading x.gz: done in 0:00:0" in last  # after the codes that erase the bar


def test_compiled_models_tick_during_their_first_step_and_evaluation_only() -> None:
    from trainctl.recipes.supervised import SupervisedRecipe

    said: list[str] = []
    recipe = SupervisedRecipe.__new__(SupervisedRecipe)
    recipe.cfg = SimpleNamespace(model=SimpleNamespace(compile=True))
    recipe.ctx = SimpleNamespace(is_main=True, message=lambda text, level="info": said.append(text))
    recipe.compiled = set()
    with recipe.compiling("the first training step"):
        pass
    with recipe.compiling("the first training step"):
        pass  # compiled already: silent
    assert said == [
        "compiling the model for the first training step (model.compile=true) ...",
        said[1],
    ] and said[1].startswith("compiling the model for the first training step (model.compile=true): done")
    recipe.cfg.model.compile = False
    with recipe.compiling("the first evaluation"):
        pass
    assert len(said) == 2


def test_reporter_emits_one_event_at_a_time_from_a_ticker_thread() -> None:
    from trainctl.observe.events import Message, Reporter

    seen: list[str] = []
    inside = threading.Event()

    class Slow:
        def emit(self, event: object) -> None:
            assert not inside.is_set(), "two events at once"
            inside.set()
            time.sleep(0.001)
            seen.append(type(event).__name__)
            inside.clear()

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    reporter = Reporter([Slow()])
    threads = [
        threading.Thread(target=lambda: [reporter.emit(Message("x")) for _ in range(20)]) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 60


def test_tokenising_in_chunks_gives_the_ids_of_one_call_and_reports_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trainctl.data import tokens

    tokenizer = tokens.load_tokenizer(tokens.default_pretrained_folder(), "model.pretrained")
    texts = ["a gorgeous, witty film", "dull", "", "an overlong, tedious mess of a plot", "fine"] * 3
    whole_ids, whole_lengths = tokens.encode(tokenizer, texts, 32)
    monkeypatch.setattr(tokens, "ENCODE_CHUNK", 4)
    done: list[int] = []
    ids, lengths = tokens.encode(tokenizer, texts, 32, progress=done.append)
    assert done == [4, 4, 4, 3]
    assert ids.dtype == whole_ids.dtype and lengths.dtype == whole_lengths.dtype
    assert ids.equal(whole_ids) and lengths.equal(whole_lengths)


# ---------------------------------------------------------------- paths and run ids whole
def listed_run(root: Path, rel: str, status: str = "finished") -> Path:
    path = root / rel
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("trainer: {}\n")
    (path / "metrics.jsonl").write_text('{"kind": "eval", "step": 5, "accuracy": 0.875}\n')
    RunDir(path).update_meta(
        id=rel.removeprefix("sweeps/"),
        preset="mlp_digits",
        status=status,
        created="2026-01-02T03:04:05",
        ended="2026-01-02T03:05:15",
    )
    return path


@pytest.mark.parametrize("columns", ["40", "60", "80"])
def test_runs_ls_prints_run_ids_whole_at_any_width(runs_root: Path, columns: str) -> None:
    long_id = "sweeps/mlp_digits-model+optim.lr+trainer.seed/optim.lr=0.003_model=mlp-c291f349"
    listed_run(runs_root, long_id)
    listed_run(runs_root, "mlp_digits/20260102-030405")
    result = CliRunner().invoke(app, ["runs", "ls"], env={"COLUMNS": columns})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if "status" in line)
    width = lines[header].index("status") - 2  # the run column, folded onto as many lines as it needs
    column = "".join(line[:width].strip() for line in lines[header + 1 :])
    assert column == "mlp_digits/20260102-030405" + long_id.removeprefix("sweeps/")
    if columns == "80":
        assert "mlp_digits/20260102-030405 " in result.output  # short ids keep a line of their own


def test_runs_ls_json_is_for_scripts(runs_root: Path) -> None:
    path = listed_run(runs_root, "mlp_digits/20260102-030405")
    result = CliRunner().invoke(app, ["runs", "ls", "--json"], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)
    assert run["id"] == "mlp_digits/20260102-030405" and run["path"] == str(path.resolve())
    assert run["status"] == "finished" and run["metric"] == "accuracy" and run["value"] == 0.875
    assert run["seconds"] == 70.0 and run["created"] == "2026-01-02T03:04:05"
    empty = CliRunner().invoke(app, ["runs", "ls", "--json", "--preset", "nothing"])
    assert empty.exit_code == 0 and json.loads(empty.output) == []


def test_sweep_ranking_prints_job_folders_and_the_sweep_folder_whole(runs_root: Path) -> None:
    from trainctl.cli.sweep import JobResult, ranked_table
    from trainctl.runs.summaries import summarize
    from trainctl.workflows.sweep_grid import Job

    folder = runs_root / "sweeps" / "mlp_digits-optim.lr+model.hidden+trainer.seed"
    results = []
    for lr in ("0.001", "0.003"):
        job = Job(overrides=(f"optim.lr={lr}", "model.hidden=[512,256]"), swept=(f"optim.lr={lr}",))
        path = listed_run(runs_root, f"sweeps/{folder.name}/{job.dirname}")
        results.append(JobResult(job, path, summarize(path), ran=True))
    console, _ = text_console(terminal=False)
    console.width = 50
    shown = render(console, ranked_table(results, None))
    assert "…" not in shown
    flat = squeeze(shown)
    assert all(r.path.name in flat for r in results) and str(folder) in flat


def test_eval_cv_reports_its_folds_while_they_train(
    tmp_path: Path, runs_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.ratings_fixtures import synthetic_rows, write_plain_csv
    from trainctl.cli.train import train
    from trainctl.observe import ticker

    path = write_plain_csv(tmp_path / "ratings", synthetic_rows())
    columns = ["data.format=csv", "data.user_column=uid", "data.item_column=iid", "data.rating_column=stars"]
    columns.append("data.delimiter=';'")
    run = train(["conf=mf_movielens", f"data.path={path}", *columns, "trainer.epochs=2", *SINGLE])["run dir"]
    capsys.readouterr()
    monkeypatch.setattr(ticker, "TICK_EVERY_S", 0.01)  # a line per 10 ms instead of per 10 s
    import trainctl.api

    run_fold = trainctl.api.run_job

    def slow_fold(*args: Any, **kwargs: Any) -> dict[str, Any]:  # a fold lasts several ticks
        summary = run_fold(*args, **kwargs)
        time.sleep(0.2)
        return summary

    monkeypatch.setattr(trainctl.api, "run_job", slow_fold)
    result = CliRunner().invoke(app, ["eval", run, "--cv", "2"])
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert "2-fold cross-validation ..." in err
    assert "2-fold cross-validation: 1 folds of 2 folds (50%)" in err  # the second fold training
    assert "2-fold cross-validation: done in 0:00:" in err
