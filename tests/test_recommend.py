"""Recommenders: similarities and k-NN against brute force, ranking metrics, mf training, the
`recommend` command (cache, JSON, errors, fallback) and `eval` of a rating run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.ratings_fixtures import synthetic_rows, title, write_ml_100k, write_ml_latest, write_plain_csv
from trainctl.cli.app import app
from trainctl.cli.train import train
from trainctl.recommend import fitting
from trainctl.recommend.knn import KNNRecommender, KNNSettings
from trainctl.recommend.matrix import RatingMatrix
from trainctl.recommend.metrics import top_n
from trainctl.recommend.similarity import similarity
from trainctl.training.checkpoint import load_checkpoint

runner = CliRunner()
ROWS = synthetic_rows()
LONELY = 99  # a user with a single rating (see `lonely_split_seed`)


def random_matrix(users: int = 25, items: int = 18, seed: int = 1) -> tuple[np.ndarray, RatingMatrix]:
    """A dense matrix with NaN for "not rated", and the same ratings as a RatingMatrix."""
    rng = np.random.default_rng(seed)
    dense = np.where(
        rng.random((users, items)) < 0.45, rng.integers(1, 6, (users, items)).astype(float), np.nan
    )
    u, i = np.nonzero(~np.isnan(dense))
    return dense, RatingMatrix.build(u, i, dense[u, i], dense.shape)


def brute_similarity(dense: np.ndarray, kind: str, shrinkage: float) -> np.ndarray:
    n = len(dense)
    out = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            both = ~np.isnan(dense[a]) & ~np.isnan(dense[b])
            if a == b or not both.any():
                continue
            x, y = dense[a, both], dense[b, both]
            if kind == "pearson":
                x, y = x - x.mean(), y - y.mean()
            norm = np.sqrt((x * x).sum() * (y * y).sum())
            value = (x * y).sum() / norm if norm > 0 else 0.0
            out[a, b] = value * (both.sum() - 1) / (both.sum() - 1 + shrinkage) if shrinkage else value
    return out


@pytest.mark.parametrize(("kind", "shrinkage"), [("cosine", 0.0), ("pearson", 0.0), ("pearson", 5.0)])
def test_similarity_matches_brute_force(kind: str, shrinkage: float) -> None:
    dense, matrix = random_matrix()
    got = similarity(matrix.by_user.to_scipy(), kind, shrinkage)
    np.testing.assert_allclose(got, brute_similarity(dense, kind, shrinkage), atol=1e-5)


def brute_knn(dense: np.ndarray, sim: np.ndarray, u: int, i: int, k: int, centered: bool) -> float:
    """Surprise's KNNWithMeans / KNNBasic estimate for one pair, written out with loops."""
    means = np.nanmean(dense, axis=1)
    raters = [v for v in range(len(dense)) if not np.isnan(dense[v, i])]
    neighbours = sorted(raters, key=lambda v: -sim[u, v])[:k]
    used = [(sim[u, v], dense[v, i] - (means[v] if centered else 0.0)) for v in neighbours if sim[u, v] > 0]
    if not used:
        return means[u] if centered else np.nanmean(dense)
    return (means[u] if centered else 0.0) + sum(s * d for s, d in used) / sum(s for s, _ in used)


@pytest.mark.parametrize("user_based", [True, False])
@pytest.mark.parametrize("centered", [True, False])
def test_knn_matches_the_neighbourhood_formula(user_based: bool, centered: bool) -> None:
    dense, matrix = random_matrix()
    rows = dense if user_based else dense.T
    rng = np.random.default_rng(3)
    sim = rng.uniform(-0.5, 1.0, (len(rows), len(rows))).astype(np.float32)  # no ties: a unique top k
    settings = KNNSettings(k=4, centered=centered)
    model = KNNRecommender(matrix, user_based=user_based, settings=settings, sim=sim)
    users, items = np.nonzero(np.isnan(dense))
    got = model.estimate(users, items)
    pairs = zip(users, items, strict=True) if user_based else zip(items, users, strict=True)
    want = [brute_knn(rows, sim, r, c, 4, centered) for r, c in pairs]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_top_n_skips_excluded_items_breaks_ties_by_index_and_pads() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0]])
    exclude = np.array([[False, False, False, True]])
    assert top_n(scores, exclude, 2).tolist() == [[1, 2]]
    assert top_n(scores, exclude, 5).tolist() == [[1, 2, 0, -1]]


# ---------------------------------------------------------------- training and the command


def lonely_split_seed(n: int) -> int:
    """A split seed that puts the last rating (the lonely user's only one) in the test split."""
    from trainctl.data.ratings import RatingsConfig, held_out_index

    for seed in range(100):
        if n - 1 in held_out_index(n, RatingsConfig(name="ratings", split_seed=seed)):
            return seed
    raise AssertionError("no seed found")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same ratings (plus a lonely user) as an ml-100k folder and a ratings.csv + movies.csv folder."""
    root = tmp_path_factory.mktemp("data")
    rows = [*ROWS, (LONELY, 1, 4.0, 0)]
    return {
        "root": root,
        "ml-100k": write_ml_100k(root / "ml-100k", rows),
        "latest": write_ml_latest(root / "small", rows),
    }


def train_mf(folders: dict[str, Path], *extra: str) -> Path:
    seed = lonely_split_seed(len(ROWS) + 1)
    summary = train(
        [
            "conf=mf_movielens",
            f"data.root={folders['root']}",
            f"data.split_seed={seed}",
            "trainer.epochs=8",
            "trainer.batch_size=64",
            "optim.lr=0.02",
            *extra,
        ]
    )
    return Path(summary["run dir"])


def test_mf_trains_through_the_recipe_and_saves_the_id_mapping(folders: dict[str, Path]) -> None:
    run = train_mf(folders)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    extra = state["model"]["_extra_state"]
    assert extra["user_ids"].tolist() == [*range(1, 31), LONELY] and extra["rating_range"] == [1.0, 5.0]
    from trainctl.recommend.factors import FactorRecommender

    model, _ = FactorRecommender.from_state_dict(state["model"])
    popular_rmse = float(np.std([r for _, _, r, _ in ROWS]))  # about what predicting the mean scores
    result = runner.invoke(app, ["eval", str(run)])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval-ratings.json").read_text())
    rmse = {row["method"]: row["rmse"] for row in report["rating"]}
    assert set(rmse) == {"mf", "user-cf", "item-cf", "popular"}
    assert rmse["mf"] < popular_rmse and model.user_factors.shape == (31, 50)
    # top-N on each user's 20%: mf was trained again on that split (its own split is a random 25%)
    assert list(report["ranking"]) == ["ease", "item-knn", "mf", "user-cf", "item-cf", "popular"]
    assert report["ranking"]["mf"]["fit_seconds"] is None and "trained again" in report["protocol"]["note"]
    assert len(list((run / "ranking").glob("*/*/checkpoints/last.pt"))) == 1
    for column in ("P@10", "R@10", "nDCG@10", "HitRate@10", "coverage", "RMSE", "MAE"):
        assert column in result.output


def test_mf_penalty_changes_training() -> None:
    from trainctl.models.mf import MatrixFactorization

    model = MatrixFactorization(3, 4, 2, reg=0.5, bias_reg=0.5, rating_range=(1.0, 5.0), global_mean=3.0)
    pairs = torch.tensor([[0, 1], [2, 3]])
    model.train()
    model(pairs)
    assert model.penalty is not None and model.penalty.item() > 0
    model.eval()
    with torch.no_grad():
        model.user_factors.weight.fill_(10.0)
        model.item_factors.weight.fill_(10.0)
    assert model(pairs).tolist() == [5.0, 5.0] and model.penalty is None  # clipped to the scale


def test_string_ids_survive_the_state_dict() -> None:
    from trainctl.models.mf import MatrixFactorization

    model = MatrixFactorization(2, 2, 1, user_ids=np.array(["a", "b"]), item_ids=np.array([7, 9]))
    copy = MatrixFactorization(2, 2, 1)
    copy.load_state_dict(model.state_dict())
    assert copy.user_ids.tolist() == ["a", "b"] and copy.item_ids.tolist() == [7, 9]


@pytest.fixture(scope="module")
def mf_run(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return train_mf(folders, f"run.root={runs}")


def recommend(*args: str) -> dict:
    result = runner.invoke(app, ["recommend", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_recommend_lists_unrated_items_with_titles_and_caches_the_model(
    mf_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = recommend("--user", "3", "--n", "5", "--run", str(mf_run), "--method", "mf")
    rated = {i for u, i, _, _ in ROWS if u == 3}
    items = [row["item"] for row in answer["items"]]
    assert answer["method"] == "mf" and answer["note"] is None and len(items) == 5
    assert not rated & set(items)
    predicted = [row["score"] for row in answer["items"]]
    assert predicted == sorted(predicted, reverse=True) and all(1.0 <= p <= 5.0 for p in predicted)
    assert answer["items"][0]["title"] == title((items[0] - 1) // 3)
    counts = {i: sum(1 for _, j, _, _ in ROWS if j == i) for i in items}
    assert [row["ratings"] for row in answer["items"]] == [counts[i] for i in items]
    assert (mf_run / "recommend" / "mf.npz").is_file()
    monkeypatch.setattr(fitting, "fit", lambda *a: pytest.fail("the cached model was not used"))
    assert recommend("--user", "3", "--n", "5", "--run", str(mf_run), "--method", "mf") == answer
    table = runner.invoke(
        app, ["recommend", "--user", "3", "--n", "5", "--run", str(mf_run), "--method", "mf"]
    )
    assert table.exit_code == 0 and "Top 5 for user 3" in table.output


def test_the_default_beside_an_mf_run_is_a_ranker_that_says_why(mf_run: Path) -> None:
    answer = recommend("--user", "3", "--run", str(mf_run))
    assert answer["method"] == "ease" and len(answer["items"]) == 10
    rated_titles = {title((i - 1) // 3) for u, i, _, _ in ROWS if u == 3}
    assert all(row["because"] and set(row["because"]) <= rated_titles for row in answer["items"])
    scores = [row["score"] for row in answer["items"]]
    assert scores == sorted(scores, reverse=True)


def test_every_method_answers_from_the_run(mf_run: Path) -> None:
    for method in ("item-knn", "user-cf", "item-cf", "popular"):
        answer = recommend("--user", "2", "--method", method, "--run", str(mf_run))
        assert answer["method"] == method and len(answer["items"]) == 10
    assert len(list((mf_run / "recommend").glob("item-cf-*.npz"))) == 1


def test_a_user_without_training_ratings_gets_popular_items_labelled(mf_run: Path) -> None:
    answer = recommend("--user", str(LONELY), "--run", str(mf_run), "--method", "mf")
    assert answer["method"] == "popular" and "has 1 rating(s), fewer than 3" in answer["note"]
    counts: dict[int, int] = {}
    for _, item, _, _ in [*ROWS, (LONELY, 1, 4.0, 0)]:
        counts[item] = counts.get(item, 0) + 1
    got = [row["item"] for row in answer["items"]]
    assert 1 not in got  # the one item the user rated
    assert [counts[i] for i in got] == sorted((c for i, c in counts.items() if i != 1), reverse=True)[:10]


def test_an_unknown_user_is_an_error_naming_the_valid_ids(mf_run: Path) -> None:
    result = runner.invoke(app, ["recommend", "--user", "1000", "--run", str(mf_run)])
    assert result.exit_code == 2
    assert "unknown user id '1000'" in result.output and "31 user ids between 1 and 99" in result.output
    result = runner.invoke(app, ["recommend", "--user", "1", "--method", "svd", "--run", str(mf_run)])
    assert result.exit_code == 2 and "unknown method 'svd'" in result.output


def test_same_commands_on_a_ratings_csv_folder(folders: dict[str, Path], tmp_path: Path) -> None:
    from_100k = recommend("--user", "5", "--method", "item-cf", "--data", str(folders["ml-100k"]))
    from_csv = recommend("--user", "5", "--method", "item-cf", "--data", str(folders["latest"]))
    assert from_csv["items"] == from_100k["items"] and from_csv["items"][0]["title"]
    run = train_mf(folders, "data.path=small", f"run.root={tmp_path}")
    assert recommend("--user", "5", "--run", str(run), "--method", "mf")["method"] == "mf"
    result = runner.invoke(
        app, ["recommend", "--user", "5", "--data", str(folders["latest"]), "--method", "mf"]
    )
    assert result.exit_code == 2 and "mf needs a trained run" in result.output


def test_a_csv_with_its_own_columns_and_string_ids(tmp_path: Path) -> None:
    path = write_plain_csv(tmp_path / "mine", ROWS)
    columns = ["data.format=csv", "data.user_column=uid", "data.item_column=iid", "data.rating_column=stars"]
    titles = ["data.delimiter=';'", "data.titles_path=names.csv", "data.title_column=name"]
    summary = train(["conf=mf_movielens", f"data.path={path}", *columns, *titles, "trainer.epochs=2"])
    answer = recommend("--user", "u7", "--n", "3", "--run", summary["run dir"])
    assert answer["user"] == "u7" and len(answer["items"]) == 3 and answer["items"][0]["title"]
    result = runner.invoke(app, ["recommend", "--user", "7", "--run", summary["run dir"]])
    assert result.exit_code == 2 and "30 users, with ids such as u1, u10, u11" in result.output


def test_cross_validation_trains_mf_once_per_fold(mf_run: Path) -> None:
    result = runner.invoke(app, ["eval", str(mf_run), "--cv", "2"])
    assert result.exit_code == 0, result.output
    cv = json.loads((mf_run / "eval-ratings.json").read_text())["cv"]
    assert cv["folds"] == 2 and {row["method"] for row in cv["methods"]} == {
        "mf",
        "user-cf",
        "item-cf",
        "popular",
    }
    assert len(list((mf_run / "cv2" / "mf_movielens").glob("*/checkpoints/last.pt"))) == 2
    assert "2-fold cross-validation" in result.output


def test_other_runs_refuse_cv_and_recommend(runs_root: Path) -> None:
    train(["conf=linreg", "trainer.epochs=1"])
    result = runner.invoke(app, ["eval", "latest", "--cv", "5"])
    assert result.exit_code == 2 and "--cv applies to runs trained on ratings" in result.output
    result = runner.invoke(app, ["recommend", "--user", "1"])
    assert result.exit_code == 2 and "no run trained on ratings" in result.output
    result = runner.invoke(app, ["recommend", "--user", "1", "--run", "latest"])
    assert result.exit_code == 2 and "the run was not trained on ratings" in result.output


def test_a_cached_query_imports_neither_torch_nor_scipy(mf_run: Path) -> None:
    recommend("--user", "1", "--run", str(mf_run))  # make sure the cache exists
    code = (
        "import sys; from trainctl.cli.app import app; "
        f"app(['recommend', '--user', '1', '--run', {str(mf_run)!r}, '--json'], standalone_mode=False); "
        "print('heavy', [m for m in ('torch', 'scipy', 'hydra') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("heavy []"), out.stdout + out.stderr


def test_a_ranker_run_is_the_default_and_its_eval_reports_a_ranking_table(
    folders: dict[str, Path], runs_root: Path
) -> None:
    summary = train(["conf=item_knn_movielens", f"data.root={folders['root']}", "model.k=10"])
    train(["conf=linreg", "trainer.epochs=1"])  # the latest run is not a rating run
    answer = recommend("--user", "4")
    assert answer["method"] == "item-knn" and answer["source"] == f"run {summary['run dir']}"
    assert all(row["because"] for row in answer["items"])
    result = runner.invoke(app, ["eval", summary["run dir"], "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert list(report["ranking"]) == ["ease", "item-knn", "user-cf", "item-cf", "popular"]
    for row in report["ranking"].values():
        assert {"precision@10", "recall@10", "ndcg@10", "hit_rate@10", "coverage"} <= set(row)
    assert report["ranking"]["item-knn"]["fit_seconds"] is None  # the run's model, not refitted
    assert report["protocol"]["split"] == "per_user" and report["protocol"]["note"] is None
    assert (
        json.loads((Path(summary["run dir"]) / "eval-ratings.json").read_text())["ranking"]
        == report["ranking"]
    )


def test_bad_input_is_a_clear_error_with_exit_2(folders: dict[str, Path], tmp_path: Path) -> None:
    data = str(folders["ml-100k"])
    rated = sum(1 for u, _, _, _ in ROWS if u == 2)
    result = runner.invoke(app, ["recommend", "--user", "2", "--n", str(41 - rated), "--data", data])
    assert result.exit_code == 2 and f"at most --n {40 - rated}" in result.output
    result = runner.invoke(app, ["recommend", "--user", "abc", "--data", data])
    assert result.exit_code == 2 and "unknown user id 'abc'" in result.output
    folder = write_ml_100k(tmp_path / "ml-100k", ROWS, items=38)  # u.item lists 38 of the 40 items
    result = runner.invoke(app, ["recommend", "--user", "2", "--data", str(folder)])
    assert (
        result.exit_code == 0
        and "2 of 40 rated item ids are not in the titles file (115, 118)" in result.output
    )
    mismatched = write_ml_100k(tmp_path / "other" / "ml-100k", ROWS, items=15)  # titles of another data set
    result = runner.invoke(app, ["recommend", "--user", "2", "--data", str(mismatched)])
    assert result.exit_code == 2 and "25 of 40 rated item ids are not in the titles file" in result.output
    result = runner.invoke(app, ["recommend", "--user", "2", "--data", str(mismatched), "--json"])
    error = json.loads(result.stdout.strip().splitlines()[0])
    assert result.exit_code == 2 and "not in the titles file" in error["error"] and error["fix"]
    result = runner.invoke(app, ["recommend", "--user", "2", "--data", str(folder), "--n", "0", "--json"])
    error = json.loads(result.stdout.strip().splitlines()[0])
    assert result.exit_code == 2 and error["where"] == "--n" and error["fix"] == "--n 10"


def test_a_user_with_few_ratings_gets_popular_items_with_a_note(folders: dict[str, Path]) -> None:
    answer = recommend("--user", str(LONELY), "--data", str(folders["ml-100k"]))
    assert answer["method"] == "popular" and "fewer than 3" in answer["note"]
    assert all(row["because"] is None for row in answer["items"])


def test_recommend_on_movielens_lists_no_film_with_fewer_than_5_ratings() -> None:
    from tests.conftest import require_data

    folder = require_data("ml-100k") / "ml-100k"  # a skip without it, a failure under TRAINCTL_REQUIRE_DATA
    answer = recommend("--user", "1", "--data", str(folder))
    assert answer["method"] == "ease" and len(answer["items"]) == 10
    assert min(row["ratings"] for row in answer["items"]) >= 5
    assert all(row["title"] and row["because"] for row in answer["items"])
