"""Ratings data: the three layouts, id mapping, splits and folds, and MovieLens download with checksums."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.ratings_fixtures import (
    synthetic_rows,
    title,
    write_ml_100k,
    write_ml_latest,
    write_plain_csv,
    zip_folder,
)
from trainctl.config.compose import compose
from trainctl.data import load_dataset, movielens
from trainctl.data.ratings import held_out_index, split_ratings
from trainctl.data.sets.ratings import RatingSpec, load_ratings
from trainctl.errors import TrainctlError

ROWS = synthetic_rows()


def ratings_config(root: Path, *extra: str):
    return compose(["conf=mf_movielens", f"data.root={root}", *extra]).config.data


def test_movielens_layouts_read_the_same_ratings_ids_and_titles(tmp_path: Path) -> None:
    write_ml_100k(tmp_path / "ml-100k", ROWS)
    write_ml_latest(tmp_path / "latest", ROWS)
    old = load_ratings(ratings_config(tmp_path))
    new = load_ratings(ratings_config(tmp_path, "data.path=latest"))
    assert len(old) == len(new) == len(ROWS)
    for a, b in ((old.users, new.users), (old.items, new.items), (old.values, new.values)):
        assert np.array_equal(a, b)
    assert old.user_ids.tolist() == list(range(1, 31)) and old.item_ids[:3].tolist() == [1, 4, 7]
    assert list(old.titles[:3]) == list(new.titles[:3]) == [title(0), title(1), title(2)]  # latin-1, quoted


def test_plain_csv_with_a_column_mapping_and_string_ids(tmp_path: Path) -> None:
    path = write_plain_csv(tmp_path / "mine", ROWS)
    cfg = ratings_config(
        tmp_path,
        f"data.path={path}",
        "data.format=csv",
        "data.user_column=uid",
        "data.item_column=iid",
        "data.rating_column=stars",
        "data.delimiter=';'",
        "data.titles_path=names.csv",
        "data.title_column=name",
    )
    ratings = load_ratings(cfg)
    assert len(ratings) == len(ROWS) and ratings.user_ids.dtype.kind == "U"
    assert "u1" in ratings.user_ids.tolist() and ratings.titles[1] == title(1)


def test_a_missing_column_names_the_header(tmp_path: Path) -> None:
    path = write_plain_csv(tmp_path / "mine", ROWS)
    cfg = ratings_config(tmp_path, f"data.path={path}", "data.delimiter=';'", "data.user_column=user")
    with pytest.raises(TrainctlError, match="column.s. user, movieId, rating not in the header") as info:
        load_ratings(cfg)
    assert "when, stars, uid, iid" in str(info.value)


def test_a_broken_row_is_a_named_error(tmp_path: Path) -> None:
    folder = write_ml_latest(tmp_path / "latest", ROWS)
    with (folder / "ratings.csv").open("a") as f:
        f.write("1,2\n")
    with pytest.raises(TrainctlError, match="cannot read the ratings"):
        load_ratings(ratings_config(tmp_path, "data.path=latest"))


def test_repeated_ratings_keep_the_last(tmp_path: Path) -> None:
    write_ml_latest(tmp_path / "latest", [*ROWS, (1, 1, 1.0, 0)])  # user 1 rates item 1 again, last
    ratings = load_ratings(ratings_config(tmp_path, "data.path=latest"))
    assert len(ratings) == len(ROWS) and "repeated" in ratings.notes[0]
    assert ratings.values[(ratings.users == 0) & (ratings.items == 0)].tolist() == [1.0]


def test_dataset_gives_pairs_ratings_and_a_rating_spec(tmp_path: Path) -> None:
    write_ml_100k(tmp_path / "ml-100k", ROWS)
    bundle = load_dataset(ratings_config(tmp_path))
    assert isinstance(bundle.spec, RatingSpec) and bundle.spec.num_users == 30 and bundle.spec.num_items == 40
    assert bundle.train.inputs.dtype == torch.int64 and bundle.train.inputs.shape[1] == 2
    assert len(bundle.train) + len(bundle.test) == len(ROWS)
    assert len(bundle.test) == round(len(ROWS) * 0.25)
    assert bundle.spec.rating_min == 1.0 and bundle.spec.rating_max == 5.0


def test_folds_partition_the_ratings(tmp_path: Path) -> None:
    write_ml_100k(tmp_path / "ml-100k", ROWS)
    cfg = ratings_config(tmp_path, "data.folds=5")
    tests = [
        held_out_index(len(ROWS), ratings_config(tmp_path, "data.folds=5", f"data.fold={k}"))
        for k in range(5)
    ]
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(ROWS)))
    ratings = load_ratings(cfg)
    train, test = split_ratings(ratings, cfg)
    assert len(train) + len(test) == len(ROWS) and train.num_users == test.num_users == 30
    with pytest.raises(TrainctlError, match="not one of the 5 folds"):
        load_dataset(ratings_config(tmp_path, "data.folds=5", "data.fold=5"))


@pytest.mark.data("ml-100k")
def test_the_shared_movielens_100k(shared_data: Path) -> None:
    ratings = load_ratings(ratings_config(shared_data))
    assert ratings.num_items == 1682 and len(ratings) >= 100_000
    assert ratings.titles[0] == "Toy Story (1995)"


# ---------------------------------------------------------------- download


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a folder (initially empty) that tests fill with archives."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    server.shutdown()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_downloads_and_unpacks_movielens_100k_with_its_checksum(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder = served
    archive = zip_folder(write_ml_100k(tmp_path / "src" / "ml-100k", ROWS), folder / "ml-100k.zip")
    monkeypatch.setitem(movielens.ARCHIVES, "ml-100k", md5(archive))
    root = tmp_path / "empty"
    ratings = load_ratings(ratings_config(root, f"data.mirrors=[http://127.0.0.1:9/,{url}]"))
    assert len(ratings) == len(ROWS) and (root / "ml-100k" / "u.item").is_file()
    assert not list(root.glob(".*"))  # no partial download or staging folder left behind


def test_a_wrong_checksum_is_refused(served: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = served
    zip_folder(write_ml_100k(tmp_path / "src" / "ml-100k", ROWS), folder / "ml-100k.zip")
    with pytest.raises(TrainctlError, match="checksum mismatch"):
        load_ratings(ratings_config(tmp_path / "empty", f"data.mirrors=[{url}]"))
    assert not (tmp_path / "empty" / "ml-100k").exists()


def test_latest_small_is_checked_against_the_published_md5(served: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = served
    archive = zip_folder(
        write_ml_latest(tmp_path / "src" / "ml-latest-small", ROWS), folder / "ml-latest-small.zip"
    )
    (folder / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {md5(archive)}\n")
    root = tmp_path / "empty"
    ratings = load_ratings(ratings_config(root, "data.path=ml-latest-small", f"data.mirrors=[{url}]"))
    assert len(ratings) == len(ROWS) and ratings.titles[1] == title(1)


def test_an_archive_escaping_its_folder_is_refused(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder = served
    archive = zip_folder(
        write_ml_100k(tmp_path / "src" / "ml-100k", ROWS), folder / "ml-100k.zip", {"../evil.txt": b"x"}
    )
    monkeypatch.setitem(movielens.ARCHIVES, "ml-100k", md5(archive))
    with pytest.raises(TrainctlError, match="unsafe path"):
        load_ratings(ratings_config(tmp_path / "root", f"data.mirrors=[{url}]"))
    assert not (tmp_path / "evil.txt").exists()


def test_offline_failure_names_the_folder_files_and_option(tmp_path: Path) -> None:
    with pytest.raises(TrainctlError) as info:
        load_ratings(ratings_config(tmp_path / "nothing", "data.mirrors=[http://127.0.0.1:9/]"))
    message = str(info.value)
    assert "could not be downloaded" in message and "ml-100k.zip" in message
    assert str(tmp_path / "nothing") in message and "data.root" in message


def test_no_download_when_disabled(tmp_path: Path) -> None:
    with pytest.raises(TrainctlError, match="files are missing"):
        load_ratings(ratings_config(tmp_path, "data.download=false"))
