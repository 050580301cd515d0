"""Rating runs as a user meets them: train, eval and recommend print the same note about rated items a
titles file lacks (a mismatched titles file: exit 2, nothing written), eval says whom its means leave out,
and ranker runs show their P@10 as the main metric in their summary and in `runs ls`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SINGLE
from tests.ratings_fixtures import synthetic_rows, write_ml_100k, write_ml_latest
from tests.test_fault_cases import folder_hashes
from trainctl.cli.app import app

runner = CliRunner()
ROWS = synthetic_rows()
UNTITLED = "2 of 40 rated item ids are not in the titles file (115, 118): they are shown by id"


def test_train_eval_and_recommend_say_the_same_note_about_untitled_items(
    tmp_path: Path, runs_root: Path
) -> None:
    folder = write_ml_latest(tmp_path / "small", ROWS, items=38)  # movies.csv lacks 2 of the 40 rated items
    trained = runner.invoke(app, ["train", "conf=ease_movielens", f"data.path={folder}", *SINGLE])
    assert trained.exit_code == 0, trained.output
    evaluated = runner.invoke(app, ["eval", "latest", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    recommended = runner.invoke(app, ["recommend", "--user", "2", "--run", "latest", "--json"])
    assert recommended.exit_code == 0, recommended.output
    for result in (trained, evaluated, recommended):
        assert f"note: {UNTITLED} ({folder / 'movies.csv'})" in result.output
    assert json.loads(evaluated.stdout)["notes"] == json.loads(recommended.stdout)["data_notes"]


def test_a_titles_file_of_other_ratings_stops_train_with_nothing_written(tmp_path: Path) -> None:
    folder = write_ml_latest(tmp_path / "small", ROWS, items=15)
    before = folder_hashes(tmp_path)
    result = runner.invoke(app, ["train", "conf=ease_movielens", f"data.path={folder}", *SINGLE])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(
        "error: 25 of 40 rated item ids are not in the titles file: 46, 49, 52, 55, 58 and 20 more"
    )
    assert f"where: {folder / 'movies.csv'}" in result.output
    assert "fix: give the titles file that belongs to these ratings" in result.output
    assert folder_hashes(tmp_path) == before


@pytest.fixture(scope="module")
def ratings_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_ml_100k(root / "ml-100k", ROWS)
    return root


@pytest.mark.parametrize(
    ("preset", "extra"),
    [
        ("implicit_mf_movielens", ["trainer.epochs=1", "trainer.batch_size=64"]),
        ("ease_movielens", []),
        ("item_knn_movielens", ["model.k=10"]),
    ],
)
def test_a_ranker_runs_main_metric_is_its_precision_at_10(
    preset: str, extra: list[str], ratings_root: Path, runs_root: Path
) -> None:
    trained = runner.invoke(app, ["train", f"conf={preset}", f"data.root={ratings_root}", *SINGLE, *extra])
    assert trained.exit_code == 0, trained.output
    summary_rows = [line for line in trained.output.splitlines() if line.startswith("│ test ")]
    assert summary_rows and summary_rows[0].split()[2] == "precision@10", trained.output  # the first figure
    listed = runner.invoke(app, ["runs", "ls"], env={"COLUMNS": "160"})
    assert listed.exit_code == 0 and "precision@10 0." in listed.output, listed.output
    records = [json.loads(line) for line in (runs_root / "latest" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals and 0.0 <= evals[-1]["precision@10"] <= 1.0 and "users" not in evals[-1]


def test_eval_says_how_many_users_and_items_its_means_leave_out(ratings_root: Path) -> None:
    trained = runner.invoke(app, ["train", "conf=ease_movielens", f"data.root={ratings_root}", *SINGLE])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["eval", "latest", "--json"])
    assert result.exit_code == 0, result.output
    protocol = json.loads(result.stdout)["protocol"]
    assert {"users_excluded", "items_excluded"} <= set(protocol)
    table = runner.invoke(app, ["eval", "latest"])
    said = " ".join(table.output.split())  # the caption wraps at the table's width
    assert f"left out: {protocol['items_excluded']} liked held-out items with no training rating" in said
    assert f"and {protocol['users_excluded']} users whose liked held-out items are all such items" in said
