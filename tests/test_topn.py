"""Top-N recommendation: the ranking metrics by hand, the per-user split, sparse top-k neighbours and EASE
against dense formulas, the minimum-evidence rule, the memory formula, and the ranker presets under DDP."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, SINGLE, trainctl
from tests.ratings_fixtures import latest_small_like, synthetic_rows, write_ml_100k, write_ml_latest
from trainctl.data.ratings import RatingsConfig, per_user_held_out, ranking_split
from trainctl.models.ranker_settings import KNNRankerSettings
from trainctl.recommend import interactions
from trainctl.recommend.ease import ease_weights
from trainctl.recommend.item_knn import knn_neighbours, query_memory_bytes
from trainctl.recommend.item_scores import ItemItemRecommender
from trainctl.recommend.knn import KNNRecommender, KNNSettings
from trainctl.recommend.matrix import Compressed, RatingMatrix
from trainctl.recommend.methods import MethodSettings, fit_method
from trainctl.recommend.metrics import popularity_tiebreak, ranking_metrics, top_n
from trainctl.recommend.similarity import shrink_by_support
from trainctl.training.checkpoint import load_checkpoint


class FixedScores:
    name = "fixed"

    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def scores(self, users: np.ndarray) -> np.ndarray:
        return self.table[users]


def test_ranking_metrics_on_a_hand_computed_example() -> None:
    # training ratings: user 0 rated items 0 and 2, user 1 items 1 and 2, user 2 items 0, 3, 4
    train = RatingMatrix.build(
        np.array([0, 0, 1, 1, 2, 2, 2]), np.array([0, 2, 1, 2, 0, 3, 4]), np.full(7, 3.0), (3, 5)
    )
    # held out: user 0 liked items 1 and 3; user 1 rated item 3 with a 3 (not liked: not scored);
    # user 2 liked item 1
    test = RatingMatrix.build(
        np.array([0, 0, 1, 2]), np.array([1, 3, 3, 1]), np.array([5.0, 4, 3, 4]), (3, 5)
    )
    scores = np.array([[9.0, 8, 7, 1, 10], [0, 0, 0, 0, 0], [5, 3, 3, 9, 9]])
    got = ranking_metrics(FixedScores(scores), train.by_user, test.by_user, n=2)
    # user 0 ranks the unrated items 1, 3, 4: list [4, 1], one hit at rank 2 of two liked items.
    # user 2 ranks items 1 and 2, tied at 3: item 2 has two training ratings, item 1 one, so the list
    # is [2, 1] (popularity breaks the tie), one hit at rank 2 of one liked item.
    d2 = 1 / np.log2(3)
    assert got["users"] == 2
    assert got["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert got["recall@2"] == pytest.approx((1 / 2 + 1 / 1) / 2)
    assert got["ndcg@2"] == pytest.approx((d2 / (1 + d2) + d2 / 1) / 2)
    assert got["hit_rate@2"] == pytest.approx(1.0)
    assert got["coverage"] == pytest.approx(3 / 5)  # items 4, 1 and 2 were listed


def test_items_without_training_ratings_are_never_candidates() -> None:
    train = RatingMatrix.build(np.array([0, 1]), np.array([0, 1]), np.array([5.0, 5.0]), (2, 3))
    test = RatingMatrix.build(np.array([0, 0]), np.array([2, 1]), np.array([5.0, 5.0]), (2, 3))
    got = ranking_metrics(FixedScores(np.array([[0.0, 1, 99], [0, 0, 0]])), train.by_user, test.by_user, n=1)
    assert got["coverage"] == pytest.approx(1 / 3)  # item 1, never item 2 despite its score
    assert got["precision@1"] == 1.0 and got["items_excluded"] == 1  # item 2 is not one to find


def test_unscorable_users_and_items_are_left_out_of_the_means_and_counted() -> None:
    # training: user 0 rated item 0, user 1 item 1, user 2 items 0 and 1; items 2 and 3 have none
    train = RatingMatrix.build(np.array([0, 1, 2, 2]), np.array([0, 1, 0, 1]), np.full(4, 5.0), (3, 4))
    # held out: user 0 liked only item 2 (no training rating: nothing any method could list);
    # user 1 liked item 0 (a candidate) and item 3 (no training rating); user 2 has nothing held out
    test = RatingMatrix.build(np.array([0, 1, 1]), np.array([2, 0, 3]), np.array([5.0, 4.0, 5.0]), (3, 4))
    got = ranking_metrics(FixedScores(np.zeros((3, 4))), train.by_user, test.by_user, n=1)
    # user 1's list is [0] (the one candidate): a hit of their one findable liked item
    assert (got["users"], got["users_excluded"], got["items_excluded"]) == (1, 1, 2)
    assert got["precision@1"] == got["recall@1"] == got["ndcg@1"] == got["hit_rate@1"] == 1.0


def test_top_n_breaks_ties_by_popularity_then_index() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 3.0]])
    exclude = np.zeros_like(scores, dtype=bool)
    assert top_n(scores, exclude, 3).tolist() == [[1, 2, 3]]
    assert top_n(scores, exclude, 3, popularity_tiebreak(np.array([9, 1, 5, 5]))).tolist() == [[2, 3, 1]]
    close = np.array([[3.0, 3.0 + 1e-6]])  # a real difference is never overridden by popularity
    assert top_n(close, np.zeros((1, 2), bool), 1, popularity_tiebreak(np.array([100, 1]))).tolist() == [[1]]


def test_per_user_holdout_keeps_a_fifth_of_each_user_and_at_least_one() -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(6), [1, 2, 5, 10, 23, 50])
    users = users[rng.permutation(len(users))]
    held = per_user_held_out(users, 0.2, seed=0)
    per_user = np.bincount(users[held], minlength=6)
    assert per_user.tolist() == [1, 1, 1, 2, 5, 10]
    assert np.array_equal(held, per_user_held_out(users, 0.2, seed=0))
    assert not np.array_equal(held, per_user_held_out(users, 0.2, seed=1))
    cfg = RatingsConfig(name="ratings")  # the mf preset's random split: ranking uses each user's 20%
    assert ranking_split(cfg).split == "per_user" and ranking_split(cfg).test_fraction == 0.2
    same = RatingsConfig(name="ratings", split="per_user", test_fraction=0.3)
    assert ranking_split(same) is same


def weighted_matrix(
    users: int = 40, items: int = 30, seed: int = 0
) -> tuple[np.ndarray, Compressed, Compressed]:
    """A dense matrix of random positive weights (no ties), and the same as Compressed by user and by item."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((users, items)) < 0.3, rng.uniform(0.1, 1.0, (users, items)), 0.0)
    u, i = np.nonzero(dense)
    return (
        dense,
        Compressed.build(u, i, dense[u, i], dense.shape),
        Compressed.build(i, u, dense[u, i], (items, users)),
    )


def dense_top_k(dense: np.ndarray, k: int, alpha: float, shrinkage: float = 0.0) -> np.ndarray:
    """The k-nearest-neighbour similarity rows written out densely: the whole similarity, shrunk by
    (n - 1) / (n - 1 + shrinkage) for n users who rated both items, then each row's k largest positive
    entries."""
    gram = dense.T @ dense
    norms = np.diag(gram).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = np.nan_to_num(gram / (norms[:, None] ** alpha * norms[None, :] ** (1 - alpha)))
    rated = (dense > 0).astype(np.float64)
    support = np.maximum(rated.T @ rated - 1, 0)
    sim *= support / (support + shrinkage) if shrinkage else 1.0
    np.fill_diagonal(sim, 0.0)
    out = np.zeros_like(sim)
    for row in range(len(sim)):
        best = [j for j in np.argsort(-sim[row])[:k] if sim[row, j] > 0]
        out[row, best] = sim[row, best]
    return out


def as_dense(rows: Compressed) -> np.ndarray:
    out = np.zeros(rows.shape)
    owner = np.repeat(np.arange(rows.shape[0]), rows.counts())
    out[owner, rows.index] = rows.data
    return out


@pytest.mark.parametrize("gathered", [True, False], ids=["gathered pairs", "dense product"])
@pytest.mark.parametrize(
    ("k", "alpha", "shrinkage"), [(5, 0.5, 0.0), (8, 0.7, 0.0), (100, 0.5, 0.0), (8, 0.5, 10.0)]
)
def test_sparse_top_k_neighbours_equal_the_dense_similarity(
    k: int, alpha: float, shrinkage: float, gathered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    dense, by_user, by_item = weighted_matrix()
    monkeypatch.setattr(interactions, "BLOCK_ELEMENTS", 70)  # blocks of 2 rows
    monkeypatch.setattr(interactions, "PAIR_BUDGET", 50)  # and several gathers per block
    monkeypatch.setattr(interactions, "DENSE_LIMIT", 0 if gathered else 40 * 30)
    settings = KNNRankerSettings(k=k, alpha=alpha, shrinkage=shrinkage)
    got = knn_neighbours(by_item, by_user, settings)
    want = dense_top_k(dense, k, alpha, shrinkage)
    np.testing.assert_allclose(as_dense(got), want, rtol=1e-5, atol=1e-7)
    assert got.counts().max() <= k  # memory O(items x k)
    rows = np.array([3, 17, 4])
    partial = as_dense(knn_neighbours(by_item, by_user, settings, rows=rows))
    np.testing.assert_allclose(partial[rows], want[rows], rtol=1e-5, atol=1e-7)
    assert not partial[np.setdiff1d(np.arange(30), rows)].any()


def test_item_scores_sum_the_rated_items_votes_and_name_the_largest() -> None:
    dense, by_user, by_item = weighted_matrix()
    neighbours = knn_neighbours(by_item, by_user, KNNRankerSettings(k=6))
    ranker = ItemItemRecommender("item-knn", neighbours, by_user)
    np.testing.assert_allclose(ranker.scores(np.arange(40)), dense @ as_dense(neighbours), rtol=1e-5)
    user, items = 7, np.array([0, 5, 9])
    contributions = dense[user][:, None] * as_dense(neighbours)[:, items]
    for item, because in zip(range(3), ranker.because(user, items), strict=True):
        best = [
            j for j in np.argsort(-contributions[:, item], kind="stable")[:2] if contributions[j, item] > 0
        ]
        assert because == best


def test_item_knn_keeps_an_item_with_one_rating_out_of_the_top_as_k_nn_cf_does() -> None:
    # item 0 (A): 20 raters; item 1 (B): 40 raters, 6 of them A's; item 2 (R): one rating, by a rater of A.
    # Unshrunk, R's cosine with A (1 / sqrt(20) = .224) beats B's (6 / sqrt(20 x 40) = .212) on one rating.
    pairs = [(u, 0) for u in range(20)] + [(u, 1) for u in range(14, 54)] + [(0, 2)]
    users, items = np.array(pairs).T
    matrix = RatingMatrix.build(users, items, np.full(len(pairs), 5.0), (54, 3))
    asker = np.array([1])  # rated A only

    def scores(shrinkage: float) -> np.ndarray:
        settings = MethodSettings()
        settings.item_knn = KNNRankerSettings(shrinkage=shrinkage)
        return fit_method("item-knn", matrix, settings).scores(asker)[0]

    unshrunk, default = scores(0.0), scores(KNNRankerSettings().shrinkage)
    assert unshrunk[2] > unshrunk[1]  # without the rule, the one-rating item ranks first
    assert default[1] > default[2] == 0.0  # with it (one common rater: no support), it never does
    # the same rule as user-cf / item-cf's similarity (n common raters, shrinkage s: (n - 1) / (n - 1 + s))
    halves = np.full((1, 3), 0.5, dtype=np.float32)
    np.testing.assert_allclose(shrink_by_support(halves, np.array([[1, 11, 21]]), 10.0), [[0, 0.25, 1 / 3]])


def test_ease_is_the_closed_form_with_a_zero_diagonal() -> None:
    dense, by_user, by_item = weighted_matrix(seed=3)
    weights = ease_weights(by_item, by_user, lam=2.0)
    p = np.linalg.inv(dense.T @ dense + 2.0 * np.eye(30))
    want = np.eye(30) - p / np.diag(p)[None, :]
    np.testing.assert_allclose(weights, want, atol=1e-5)
    assert not np.diag(weights).any()
    ranker = ItemItemRecommender("ease", weights, by_user)
    np.testing.assert_allclose(ranker.scores(np.array([2, 5])), dense[[2, 5]] @ want, atol=1e-4)


def test_a_fallback_never_outranks_real_evidence_and_ties_go_to_popular_items() -> None:
    # item-cf: the user rated item 0 (5 stars); item 1 is similar to item 0, item 2 is not similar to
    # anything and has a single 5-star rating (its mean: the fallback), items 3 and 4 are similar to
    # item 0 as well and were rated 5 by everyone who rated them (a tie at the top of the scale)
    users = np.array([0, 1, 1, 2, 3, 4, 5, 1, 3, 4, 1, 3])
    items = np.array([0, 0, 1, 2, 0, 1, 0, 3, 3, 4, 4, 4])
    values = np.array([5.0, 4, 3, 5, 4, 2, 5, 5, 5, 5, 5, 5])
    matrix = RatingMatrix.build(users, items, values, (6, 5))
    sim = np.zeros((5, 5), dtype=np.float32)
    sim[0, 1] = sim[1, 0] = 0.9
    sim[0, 3] = sim[3, 0] = sim[0, 4] = sim[4, 0] = 0.5
    model = KNNRecommender(matrix, user_based=False, settings=KNNSettings(k=5), sim=sim)
    scores = model.scores(np.array([0]))[0]
    assert model.predict(np.array([0]), np.array([2]))[0] == 5.0  # the fallback predicts 5 stars ...
    assert model.is_fallback(scores)[2] and not model.is_fallback(scores)[[1, 3, 4]].any()
    assert scores[1] > scores[2]  # ... yet ranks below item 1's real 3.0-star estimate
    counts = matrix.by_item.counts()  # item 4 has three ratings, item 3 two
    rated = matrix.by_user.dense_mask(np.array([0]))
    assert top_n(scores[None, :], rated, 4, popularity_tiebreak(counts)).tolist() == [[4, 3, 1, 2]]


@pytest.mark.parametrize("dense_limit", [0, 1 << 24], ids=["gathered pairs", "dense product"])
def test_the_memory_formula_bounds_a_query_and_puts_25m_ratings_in_a_few_gb(
    dense_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(interactions, "DENSE_LIMIT", dense_limit)
    users, items, values = latest_small_like(users=150, items=2_000, ratings=20_000)
    heavy = int(np.bincount(users).argmax())
    tracemalloc.start()
    matrix = RatingMatrix.build(users, items, values, (150, 2_000))
    rows = matrix.by_user.index[matrix.by_user.ptr[heavy] : matrix.by_user.ptr[heavy + 1]]
    ranker = fit_method("item-knn", matrix, MethodSettings(), rows)
    ranker.scores(np.array([heavy]))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    formula = query_memory_bytes(150, 2_000, len(users), len(rows), KNNRankerSettings().k)
    assert peak <= formula
    assert query_memory_bytes(162_541, 62_423, 25_000_095, 3_000, 200) < 3 * 2**30


def test_bench_topn_takes_any_movielens_layout_and_stops_on_what_trainctl_cannot_read(tmp_path: Path) -> None:
    from bench.topn import protocol
    from trainctl.data.ratings import load_ratings, split_ratings

    rows = synthetic_rows()
    folders = write_ml_100k(tmp_path / "ml-100k", rows), write_ml_latest(tmp_path / "small", rows)
    (train_a, test_a), (train_b, test_b) = (
        split_ratings(load_ratings(protocol(f)), protocol(f)) for f in folders
    )
    for a, b in ((train_a, train_b), (test_a, test_b)):
        assert np.array_equal(a.user_ids[a.users], b.user_ids[b.users]) and np.array_equal(a.values, b.values)
        assert np.array_equal(a.item_ids[a.items], b.item_ids[b.items])
    missing = bench("topn", "--data", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "bench topn: ratings file not found" in missing.stderr, missing.stderr
    other = bench("help", "--data", str(folders[0]))
    assert other.returncode == 1 and "benchmark 'help' takes no options" in other.stderr


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=REPO)


# ---------------------------------------------------------------- the presets under DDP


@pytest.fixture(scope="module")
def ratings_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_ml_100k(root / "ml-100k", synthetic_rows())
    return root


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["ease_movielens", "item_knn_movielens"])
def test_closed_form_presets_fit_the_same_model_on_two_ranks(
    preset: str, ratings_root: Path, tmp_path: Path
) -> None:
    runs = []
    for name, launch in (("one", SINGLE), ("two", ["launcher.nproc=2", "parallel=ddp", "trainer.threads=1"])):
        result = trainctl(
            "train", f"conf={preset}", f"data.root={ratings_root}", *launch, runs=tmp_path / name
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        runs.append((tmp_path / name / "latest").resolve())
    one, two = (load_checkpoint(run / "checkpoints" / "last.pt") for run in runs)
    assert two["world_size"] == 2
    for key, value in one["model"].items():
        if key != "_extra_state":
            np.testing.assert_allclose(value.numpy(), two["model"][key].numpy(), rtol=1e-5, atol=1e-6)
    records = [json.loads(line) for line in (runs[1] / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "eval" and "ndcg@10" in r for r in records)


@pytest.mark.slow
def test_implicit_mf_trains_on_two_ranks(ratings_root: Path, tmp_path: Path) -> None:
    args = [
        "conf=implicit_mf_movielens",
        f"data.root={ratings_root}",
        "trainer.batch_size=64",
        "trainer.epochs=2",
    ]
    result = trainctl(
        "train",
        *args,
        "launcher.nproc=2",
        "parallel=ddp",
        "trainer.threads=1",
        "trainer.log_every=1",
        runs=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = (tmp_path / "latest").resolve()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert losses and all(np.isfinite(losses)) and losses[-1] < losses[0]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and state["model"]["item_factors.weight"].shape == (40, 32)
