"""Ratings files (MovieLens 100K, MovieLens "latest", any CSV) read into dense-indexed numpy arrays.

Only numpy (and the config schema) is imported at module load, so `trainctl recommend` can resolve a
data source quickly; the data set that trains on these ratings is trainctl/data/sets/ratings.py.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.config.ranges import ranged
from trainctl.config.schema import FileDataConfig
from trainctl.data.movielens import MIRRORS, ensure_movielens, is_archive_folder
from trainctl.errors import TrainctlError


class RatingsFormat(str, Enum):
    auto = "auto"  # ml-100k when the folder holds u.data, ml-latest when it holds ratings.csv, else csv
    ml_100k = "ml_100k"  # u.data (tab-separated user item rating timestamp) + u.item titles (latin-1)
    ml_latest = "ml_latest"  # ratings.csv (userId,movieId,rating,timestamp) + movies.csv titles
    csv = "csv"  # any delimited file; columns named by data.user_column / item_column / rating_column


class RatingsSplit(str, Enum):
    random = "random"  # data.test_fraction of all ratings, or fold data.fold of data.folds
    per_user = "per_user"  # data.test_fraction of each user's ratings, at least one (top-N evaluation)


class RatingsTarget(str, Enum):
    rating = "rating"  # a sample is a (user, item) pair and its target the rating (regression)
    item = "item"  # a sample is a user and its target an item they rated (classification over items)


RANKING_TEST_FRACTION = 0.2  # top-N evaluation holds out each user's random 20% (at least one rating)


# MovieLens folder names (as their archives unpack) and the layout of each
MOVIELENS_FORMATS = {
    "ml-100k": RatingsFormat.ml_100k,
    "ml-latest-small": RatingsFormat.ml_latest,
    "ml-latest": RatingsFormat.ml_latest,
}


@dataclass
class RatingsConfig(FileDataConfig):
    path: str = "ml-100k"  # a folder or a ratings file; relative to data.root; MovieLens folders download
    format: RatingsFormat = RatingsFormat.auto
    user_column: str = "userId"  # csv format: column names (or 0-based positions with header=false)
    item_column: str = "movieId"
    rating_column: str = "rating"
    delimiter: str = ","
    header: bool = True
    titles_path: str | None = None  # csv format: a file with item_column and title_column (relative: beside)
    title_column: str = "title"
    split: RatingsSplit = RatingsSplit.random
    # of all ratings (split=random, folds=0) or of each user's (per_user)
    test_fraction: float = ranged(0.25, "(0, 1)")
    # k > 1: k random folds (as Surprise's KFold); fold `fold` is the test split
    folds: int = ranged(0, "[0, inf)")
    fold: int = ranged(0, "[0, inf)")
    split_seed: int = ranged(0, "[0, inf)")  # the split is fixed by this seed, not by trainer.seed
    liked_at: float = 4.0  # ratings at or above it are liked: relevant in top-N metrics, full rank weight
    target: RatingsTarget = RatingsTarget.rating
    mirrors: list[str] = field(default_factory=lambda: list(MIRRORS))


@dataclass(frozen=True)
class Columns:
    """Which columns of a delimited ratings file hold the user, item and rating (names, or 0-based
    positions when the file has no header), and where item titles come from."""

    user: str = "userId"
    item: str = "movieId"
    rating: str = "rating"
    delimiter: str = ","
    header: bool = True
    titles_file: str | None = None  # a delimited file with a header naming `item` and `title`
    title: str = "title"


@dataclass(frozen=True)
class Source:
    """A resolved ratings source: the files to read and how."""

    format: RatingsFormat
    ratings_file: Path
    titles_file: Path | None
    columns: Columns

    def files(self) -> list[Path]:
        """Every file the ratings and titles come from (their sizes and times key caches)."""
        return [p for p in (self.ratings_file, self.titles_file) if p is not None]

    def fingerprint(self) -> list[list[Any]]:
        """(path, size, mtime) of each file: changes when a file is replaced or edited."""
        out = []
        for path in self.files():
            stat = path.stat() if path.is_file() else None
            out.append([str(path), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1])
        return out


@dataclass
class Ratings:
    """Ratings as parallel arrays of dense user and item indices; `user_ids[u]` is user u's id in the file."""

    users: np.ndarray  # int64, one per rating
    items: np.ndarray  # int64
    values: np.ndarray  # float32
    user_ids: np.ndarray  # original ids (int64, or str when the file's ids are not all integers)
    item_ids: np.ndarray
    titles: np.ndarray | None = None  # one title per item index ("" when unknown)
    source: str = ""
    notes: list[str] = field(default_factory=list)
    untitled: np.ndarray | None = None  # item indices the titles file does not list (None: no such file)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def subset(self, index: np.ndarray) -> Ratings:
        """The ratings at `index`, keeping every user and item (and their indices)."""
        return replace(self, users=self.users[index], items=self.items[index], values=self.values[index])

    def remap(self, user_ids: np.ndarray, item_ids: np.ndarray) -> Ratings:
        """The same ratings indexed by another id mapping (a saved model's); unknown ids are dropped."""
        if np.array_equal(user_ids, self.user_ids) and np.array_equal(item_ids, self.item_ids):
            return self
        users = lookup(user_ids, self.user_ids[self.users])
        items = lookup(item_ids, self.item_ids[self.items])
        keep = (users >= 0) & (items >= 0)
        titles = None
        if self.titles is not None:
            titles = np.full(len(item_ids), "", dtype=object)
            known = lookup(self.item_ids, item_ids)
            titles[known >= 0] = self.titles[known[known >= 0]]
        return Ratings(
            users[keep], items[keep], self.values[keep], user_ids, item_ids, titles, self.source, self.notes
        )

    def counts(self) -> np.ndarray:
        """How many ratings each item has."""
        return np.bincount(self.items, minlength=self.num_items)


def lookup(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index of each of `wanted` in the sorted array `ids`, or -1 where it is absent."""
    if len(ids) == 0:
        return np.full(len(wanted), -1, dtype=np.int64)
    if ids.dtype.kind != np.asarray(wanted).dtype.kind:  # ints against strings: compare as text
        ids, wanted = ids.astype(str), np.asarray(wanted).astype(str)
        order = np.argsort(ids)
        pos = np.searchsorted(ids, wanted, sorter=order).clip(0, len(ids) - 1)
        found = ids[order[pos]] == wanted
        return np.where(found, order[pos], -1).astype(np.int64)
    pos = np.searchsorted(ids, wanted).clip(0, len(ids) - 1)
    return np.where(ids[pos] == wanted, pos, -1).astype(np.int64)


def config_source(cfg: RatingsConfig) -> Source:
    """The files a ratings config points at (whether they exist or not)."""
    columns = Columns(
        cfg.user_column,
        cfg.item_column,
        cfg.rating_column,
        cfg.delimiter,
        cfg.header,
        cfg.titles_path,
        cfg.title_column,
    )
    return resolve_source(cfg.root, cfg.path, cfg.format, columns)


def held_out_index(n: int, cfg: RatingsConfig, users: np.ndarray | None = None) -> np.ndarray:
    """Positions of the test ratings: a seeded random fraction, fold `cfg.fold` of `cfg.folds`, or
    (split=per_user, which needs each rating's `users`) a seeded random fraction of each user's."""
    check_split(cfg)
    if RatingsSplit(cfg.split) is RatingsSplit.per_user:
        if users is None or len(users) != n:
            raise ValueError("a per-user split needs the user of every rating")
        return per_user_held_out(users, cfg.test_fraction, cfg.split_seed)
    order = np.random.default_rng(cfg.split_seed).permutation(n)
    if cfg.folds:
        return np.sort(np.array_split(order, cfg.folds)[cfg.fold])
    return np.sort(order[: max(1, round(n * cfg.test_fraction))])


def per_user_held_out(users: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Positions of each user's random `fraction` of ratings (rounded, at least one), numpy seed `seed`.

    Every rating draws a uniform key from default_rng(seed); a user's ratings with the smallest keys
    are held out, so the split does not depend on the order of the users.
    """
    users = np.asarray(users, dtype=np.int64)
    keys = np.random.default_rng(seed).random(len(users))
    order = np.lexsort((keys, users))
    counts = np.bincount(users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - starts[users[order]]
    held = np.maximum(1, np.round(fraction * counts)).astype(np.int64)
    return np.flatnonzero(rank < held[users])


def ranking_split(cfg: RatingsConfig) -> RatingsConfig:
    """The split that top-N figures are measured on: the config's own when it holds out part of every
    user's ratings, else each user's random 20% with the config's seed."""
    if RatingsSplit(cfg.split) is RatingsSplit.per_user and not cfg.folds:
        return cfg
    return replace(cfg, split=RatingsSplit.per_user, test_fraction=RANKING_TEST_FRACTION, folds=0, fold=0)


def check_split(cfg: RatingsConfig) -> None:
    if cfg.folds and RatingsSplit(cfg.split) is RatingsSplit.per_user:
        raise TrainctlError(
            "data.split=per_user holds out part of each user's ratings; it has no folds",
            fix="use data.folds=0 with data.split=per_user, or data.split=random with folds",
        )
    if cfg.folds == 1 or cfg.folds < 0:
        raise TrainctlError(f"data.folds={cfg.folds}: use 0 (a test_fraction split) or 2 and more")
    if cfg.folds and not 0 <= cfg.fold < cfg.folds:
        raise TrainctlError(f"data.fold={cfg.fold} is not one of the {cfg.folds} folds 0..{cfg.folds - 1}")
    if not cfg.folds and not 0.0 < cfg.test_fraction < 1.0:
        raise TrainctlError(f"data.test_fraction must be in (0, 1), got {cfg.test_fraction}")


def split_ratings(ratings: Ratings, cfg: RatingsConfig) -> tuple[Ratings, Ratings]:
    """(train, test) ratings, both indexed by the whole file's mapping."""
    test = held_out_index(len(ratings), cfg, ratings.users)
    train = np.setdiff1d(np.arange(len(ratings)), test, assume_unique=True)
    return ratings.subset(train), ratings.subset(test)


def resolve_source(root: str | Path, path: str, fmt: RatingsFormat | str, columns: Columns) -> Source:
    """Which files to read for `path` (a folder or a file; relative paths live under `root`)."""
    fmt = RatingsFormat(fmt)
    where = Path(os.path.expanduser(path))
    where = Path(os.path.normpath(where if where.is_absolute() else Path(root) / where))
    if fmt is RatingsFormat.auto:
        fmt = detect_format(where)
    if fmt is RatingsFormat.ml_100k:
        folder = where.parent if where.name == "u.data" else where
        return Source(fmt, folder / "u.data", folder / "u.item", Columns("0", "1", "2", "\t", header=False))
    if fmt is RatingsFormat.ml_latest:
        folder = where.parent if where.suffix == ".csv" else where
        return Source(fmt, folder / "ratings.csv", folder / "movies.csv", Columns())
    titles = None
    if columns.titles_file:
        titles = Path(os.path.expanduser(columns.titles_file))
        titles = titles if titles.is_absolute() else where.parent / titles
    return Source(fmt, where, titles, columns)


def detect_format(where: Path) -> RatingsFormat:
    """The layout of a ratings folder or file, from the files it holds or its MovieLens name."""
    if where.name == "u.data" or (where / "u.data").is_file():
        return RatingsFormat.ml_100k
    if where.name == "ratings.csv" or (where / "ratings.csv").is_file():
        return RatingsFormat.ml_latest
    if where.name in MOVIELENS_FORMATS:
        return MOVIELENS_FORMATS[where.name]
    if where.is_dir():
        raise TrainctlError(
            f"{where} holds neither u.data (MovieLens 100K) nor ratings.csv (MovieLens latest)",
            fix="point data.path at a MovieLens folder or at a ratings CSV file (see data.format)",
        )
    return RatingsFormat.csv


def load_ratings(cfg: RatingsConfig) -> Ratings:
    """Every rating `cfg` points at, downloading a missing MovieLens folder first."""
    source = config_source(cfg)
    folder = source.ratings_file.parent
    if not source.ratings_file.is_file() and is_archive_folder(folder):
        ensure_movielens(folder, cfg.mirrors, cfg.download)
    return read_ratings(source)


def read_ratings(source: Source) -> Ratings:
    """Read a source into dense-indexed arrays; ids are mapped to indices in sorted id order."""
    if not source.ratings_file.is_file():
        raise TrainctlError(
            f"ratings file not found: {source.ratings_file}",
            fix="point data.path at a MovieLens folder (u.data, or ratings.csv) or a ratings CSV file",
        )
    raw_users, raw_items, values = read_columns(source.ratings_file, source.columns)
    if not np.isfinite(values).all():
        raise bad_rating(source.ratings_file, source.columns)
    user_ids, users = np.unique(raw_users, return_inverse=True)
    item_ids, items = np.unique(raw_items, return_inverse=True)
    users, items = users.astype(np.int64).ravel(), items.astype(np.int64).ravel()
    notes = []
    keep = last_of_duplicates(users, items, len(item_ids))
    if len(keep) < len(values):
        notes.append(f"{len(values) - len(keep)} repeated (user, item) ratings: the last one of each is kept")
        users, items, values = users[keep], items[keep], values[keep]
    titles, untitled = None, None
    if source.titles_file is not None:
        titles, listed = read_titles(source, item_ids)
        untitled = None if listed is None else np.flatnonzero(~listed)
    return Ratings(
        users, items, values, user_ids, item_ids, titles, str(source.ratings_file), notes, untitled
    )


def ratings_notes(ratings: Ratings, titles_file: Path | None) -> list[str]:
    """What a command that reads `ratings` tells the user about them (train, eval and recommend say the
    same): repeated ratings dropped, and rated items that the titles file does not list, named (they are
    shown by id). A titles file that lists under half of the rated items is an error: it belongs to
    other ratings."""
    notes = list(ratings.notes)
    if ratings.untitled is None or len(ratings.untitled) == 0:
        return notes
    untitled, rated = len(ratings.untitled), len(ratings.item_ids)
    shown = ", ".join(str(x) for x in ratings.item_ids[ratings.untitled[:5]])
    more = f" and {untitled - 5:,} more" if untitled > 5 else ""
    what = f"{untitled:,} of {rated:,} rated item ids are not in the titles file"
    if 2 * untitled > rated:
        raise TrainctlError(
            f"{what}: {shown}{more}",
            where=str(titles_file or ratings.source),
            fix="give the titles file that belongs to these ratings (u.item or movies.csv)",
        )
    notes.append(f"{what} ({shown}{more}): they are shown by id ({titles_file})")
    return notes


def read_columns(path: Path, columns: Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The user, item and rating columns of a delimited file (ids as int64 when they all are integers).

    Numeric files are parsed as numbers in one pass (several times faster than as text); a file with
    text ids is read as text.
    """
    positions = column_positions(path, columns)
    numeric = load_table(path, columns, positions, np.float64, quiet=True)
    if numeric is not None:
        ids = numeric[:, :2]
        if np.all(ids == np.round(ids)) and np.abs(ids).max(initial=0) < 2**53:
            return ids[:, 0].astype(np.int64), ids[:, 1].astype(np.int64), numeric[:, 2].astype(np.float32)
    table = load_table(path, columns, positions, np.str_)
    assert table is not None
    try:
        values = table[:, 2].astype(np.float32)
    except ValueError:
        raise bad_rating(path, columns) from None
    return as_ids(table[:, 0]), as_ids(table[:, 1]), values


def load_table(
    path: Path, columns: Columns, positions: tuple[int, int, int], dtype: Any, *, quiet: bool = False
) -> np.ndarray | None:
    """The three columns as a (rows x 3) array of `dtype`; None when `quiet` and they do not parse."""
    try:
        return np.loadtxt(
            path,
            delimiter=columns.delimiter,
            skiprows=1 if columns.header else 0,
            usecols=positions,
            dtype=dtype,
            comments=None,
            quotechar='"',
            ndmin=2,
            encoding="utf-8",
        )
    except (ValueError, IndexError) as exc:
        if quiet:
            return None
        raise TrainctlError(
            f"cannot read the ratings: {str(exc).splitlines()[0]}",
            where=str(path),
            fix=f"every row needs user, item and rating columns separated by {columns.delimiter!r}",
        ) from None


def bad_rating(path: Path, columns: Columns) -> TrainctlError:
    """The error for the first rating of the file that is not a finite number, naming its line."""
    position = column_positions(path, columns)[2]
    with path.open(encoding="utf-8", newline="") as f:
        for number, row in enumerate(csv.reader(f, delimiter=columns.delimiter), start=1):
            if (columns.header and number == 1) or not row or len(row) <= position:
                continue
            try:
                ok = np.isfinite(float(row[position]))
            except ValueError:
                ok = False
            if not ok:
                return TrainctlError(
                    f"line {number}: the rating {row[position].strip()!r} is not a number",
                    where=f"{path}:{number}",
                    fix="fix or delete that line",
                )
    return TrainctlError("a rating is not a number", where=str(path), fix="fix the file")


def column_positions(path: Path, columns: Columns) -> tuple[int, int, int]:
    """0-based positions of the user, item and rating columns, from the header when there is one."""
    wanted = (columns.user, columns.item, columns.rating)
    if not columns.header:
        try:
            return tuple(int(name) for name in wanted)  # type: ignore[return-value]
        except ValueError:
            raise TrainctlError(
                f"a file without a header needs column positions, got {', '.join(wanted)}",
                where=str(path),
                fix="set data.user_column=0 data.item_column=1 data.rating_column=2 (or data.header=true)",
            ) from None
    with path.open(encoding="utf-8", newline="") as f:
        header = next(csv.reader(f, delimiter=columns.delimiter), [])
    header = [name.strip() for name in header]
    missing = [name for name in wanted if name not in header]
    if missing:
        raise TrainctlError(
            f"column(s) {', '.join(missing)} not in the header of the ratings file",
            where=str(path),
            fix=f"the header has: {', '.join(header)}; map them with data.user_column, data.item_column, "
            "data.rating_column (and data.delimiter)",
        )
    return tuple(header.index(name) for name in wanted)  # type: ignore[return-value]


def as_ids(column: np.ndarray) -> np.ndarray:
    """Integer ids when every value is an integer, else the stripped strings."""
    column = np.char.strip(column)
    try:
        return column.astype(np.int64)
    except ValueError:
        return column.astype(object).astype(str)


def last_of_duplicates(users: np.ndarray, items: np.ndarray, num_items: int) -> np.ndarray:
    """Positions to keep so that each (user, item) pair appears once: its last occurrence."""
    key = users * num_items + items
    _, first_from_end = np.unique(key[::-1], return_index=True)
    return np.sort(len(key) - 1 - first_from_end)


def read_titles(source: Source, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """One title per item index from u.item (pipe-separated, latin-1) or a CSV ("" where unknown), and
    whether the file lists each item (None when there is no titles file)."""
    path = source.titles_file
    assert path is not None
    titles = np.full(len(item_ids), "", dtype=object)
    if not path.is_file():
        return titles, None
    by_id: dict[str, str] = {}
    if source.format is RatingsFormat.ml_100k:
        for line in path.read_text(encoding="latin-1").splitlines():
            parts = line.split("|", 2)
            if len(parts) >= 2:
                by_id[parts[0].strip()] = parts[1].strip()
    else:  # movies.csv of MovieLens latest (whose Columns are the defaults), or the configured file
        columns = source.columns
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter=columns.delimiter):
                item, title = row.get(columns.item), row.get(columns.title)
                if item is not None and title is not None:
                    by_id[item.strip()] = title.strip()
    listed = np.zeros(len(item_ids), dtype=bool)
    for index, item in enumerate(item_ids.tolist()):
        title = by_id.get(str(item))
        listed[index] = title is not None
        titles[index] = title or ""
    return titles, listed
