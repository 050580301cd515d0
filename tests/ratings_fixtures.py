"""Small ratings files in the MovieLens 100K, MovieLens latest and plain-CSV layouts, all from one table."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np

Row = tuple[int, int, float, int]  # user id, item id, rating, timestamp


def item_id(index: int) -> int:
    """Item ids with gaps, as MovieLens latest has: 1, 4, 7, ..."""
    return 3 * index + 1


def title(index: int) -> str:
    special = {0: "Toy Story (1995)", 1: "Good, the Bad and the Ugly, The (1966)", 2: "Café Society (1995)"}
    return special.get(index, f"Movie {index} ({1980 + index % 20})")


def synthetic_rows(users: int = 30, items: int = 40, seed: int = 0, density: float = 0.5) -> list[Row]:
    """Ratings 1..5 from two latent tastes plus noise; each user rates about `density` of the items."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(users, 2))
    kind = rng.normal(size=(items, 2))
    bias = rng.normal(scale=0.5, size=items)
    rows = []
    for u in range(users):
        for i in range(items):
            if rng.random() < density or i == 0:
                value = 3.2 + bias[i] + taste[u] @ kind[i] + rng.normal(scale=0.3)
                rows.append(
                    (u + 1, item_id(i), float(np.clip(np.round(value), 1, 5)), 880_000_000 + len(rows))
                )
    return rows


def write_ml_100k(folder: Path, rows: list[Row], items: int = 40) -> Path:
    """u.data (tab-separated, one line with a trailing tab as in the shared copy) and u.item (latin-1)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}\t{i}\t{int(r)}\t{t}" for u, i, r, t in rows]
    lines[1] += "\t"
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    items_text = "".join(
        f"{item_id(k)}|{title(k)}|01-Jan-1995||http://example.org|0|1|0\n" for k in range(items)
    )
    (folder / "u.item").write_bytes(items_text.encode("latin-1"))
    return folder


def write_ml_latest(folder: Path, rows: list[Row], items: int = 40) -> Path:
    """ratings.csv (userId,movieId,rating,timestamp) and movies.csv (quoted titles, UTF-8)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r:.1f},{t}" for u, i, r, t in rows]
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["movieId", "title", "genres"])
    for k in range(items):
        writer.writerow([item_id(k), title(k), "Comedy|Drama"])
    (folder / "movies.csv").write_text(out.getvalue(), encoding="utf-8")
    return folder


def write_plain_csv(folder: Path, rows: list[Row], items: int = 40) -> Path:
    """scores.csv with its own column names (semicolon-separated) and names.csv with titles."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["when;stars;uid;iid"] + [f"{t};{r};u{u};{i}" for u, i, r, t in rows]
    (folder / "scores.csv").write_text("\n".join(lines) + "\n")
    names = ["iid;name"] + [f"{item_id(k)};{title(k)}" for k in range(items)]
    (folder / "names.csv").write_text("\n".join(names) + "\n", encoding="utf-8")
    return folder / "scores.csv"


def zip_folder(folder: Path, archive: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A zip holding <folder.name>/<file> for every file of `folder` (as GroupLens archives are laid out)."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"{folder.name}/{path.name}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return archive


def latest_small_like(
    users: int = 610, items: int = 9_742, ratings: int = 100_836, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user index, item index, rating) arrays shaped like MovieLens latest-small: long-tailed activity
    (at least 20 ratings a user) and item popularity (Zipf-like: many items with a single rating)."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.2, users)
    counts = np.minimum(20 + np.round(activity / activity.sum() * (ratings - 20 * users)).astype(int), items)
    popularity = rng.permutation(1.0 / np.arange(1, items + 1) ** 0.9)
    log_popularity = np.log(popularity / popularity.sum())
    user_rows, item_rows = [], []
    for user, count in enumerate(counts):  # without replacement, by popularity (Gumbel top-k)
        keys = log_popularity + rng.gumbel(size=items)
        user_rows.append(np.full(count, user))
        item_rows.append(np.argpartition(-keys, count - 1)[:count])
    user_index, item_index = np.concatenate(user_rows), np.concatenate(item_rows)
    values = rng.integers(1, 11, len(user_index)) / 2.0  # 0.5 .. 5 in half stars
    return user_index, item_index, values


def write_latest_small_like(folder: Path, seed: int = 0) -> Path:
    """A ratings.csv + movies.csv folder with latest-small's shape (see latest_small_like)."""
    users, items, values = latest_small_like(seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = zip(users, items, values, strict=True)
    body = "\n".join(f"{u + 1},{item_id(i)},{r:.1f},964982703" for u, i, r in rows)
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + body + "\n")
    movies = "\n".join(f'{item_id(k)},"{title(k)}",Drama' for k in range(int(items.max()) + 1))
    (folder / "movies.csv").write_text("movieId,title,genres\n" + movies + "\n", encoding="utf-8")
    return folder
