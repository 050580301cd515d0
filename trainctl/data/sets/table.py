"""Tables (CSV, Parquet) with a label column and numeric feature columns, memory-mapped.

The file is read once with pyarrow's streaming readers (CSV block by block, Parquet row group by row
group) into a float32 feature matrix and a label vector, written as numpy memory maps in the cache
folder (keyed by the file's size and time and the columns). A batch is one fancy-indexed read of the
map: no Python per row, and the pages live in the OS page cache, shared by every rank and worker, so
no process holds the table. numpy's memmap over pyarrow's readers does what HF `datasets` (Arrow
memory maps) would for a numeric table without its large dependency tree; pyarrow is the well-kept
reader of both formats.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from trainctl.config.ranges import ranged
from trainctl.config.schema import DataConfig
from trainctl.data import DATASETS, DataInfo
from trainctl.data.cache_entry import new_entry
from trainctl.data.streamed import DatasetSplit
from trainctl.data.types import DataBundle, DataSpec, Task
from trainctl.errors import TrainctlError, suggestion


class TableTask(str, Enum):
    auto = "auto"  # classification for integer or text labels, regression for fractional ones
    classification = "classification"
    regression = "regression"


@dataclass
class TableConfig(DataConfig):
    root: str = "${oc.env:TRAINCTL_DATA_DIR,'~/.cache/trainctl/data'}"
    path: str = ""  # the train table (.csv or .parquet): absolute, or relative to root
    test_path: str = ""  # the test table; empty: data.test_fraction of the rows (seeded by split_seed)
    test_fraction: float = ranged(0.2, "(0, 1)")
    split_seed: int = 0
    label: str = "label"  # the label column
    features: list[str] | None = None  # the feature columns; null: every other column
    task: TableTask = TableTask.auto
    workers: int | None = ranged(
        0, "[0, inf)"
    )  # reading processes per rank; 0: in the rank (a map read is cheap)
    cache_dir: str = "${oc.env:TRAINCTL_CACHE_DIR,'~/.cache/trainctl/cache'}"  # the memory maps live here


def table_path(cfg: TableConfig, value: str, key: str) -> Path:
    path = Path(value).expanduser()
    path = path if path.is_absolute() else Path(cfg.root).expanduser() / path
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise TrainctlError(
            f"not a CSV or Parquet file: {path.name}",
            where=f"{key}={value}",
            fix="give a .csv or .parquet file",
        )
    if not path.is_file():
        raise TrainctlError(f"file not found: {path}", where=f"{key}={value}")
    return path


def column_names(path: Path) -> list[str]:
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".csv":
            with pv.open_csv(path) as reader:
                return list(reader.schema.names)
        return list(pq.ParquetFile(path).schema_arrow.names)
    except Exception as exc:  # pyarrow.lib.ArrowInvalid, OSError
        raise TrainctlError(f"cannot read the table: {str(exc).splitlines()[0]}", where=str(path)) from None


def record_batches(path: Path, columns: list[str]) -> Iterator[Any]:
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".csv":
            with pv.open_csv(path, convert_options=pv.ConvertOptions(include_columns=columns)) as reader:
                yield from reader
        else:
            yield from pq.ParquetFile(path).iter_batches(columns=columns)
    except Exception as exc:
        raise TrainctlError(f"cannot read the table: {str(exc).splitlines()[0]}", where=str(path)) from None


@dataclass(frozen=True)
class Mapped:
    """Where one table's memory maps are, and what they hold."""

    features: Path
    labels: Path
    rows: int
    columns: list[str]
    label_names: list[str] | None  # classification by text labels: the names, sorted
    label_kind: str  # "int", "float" or "text"


def convert(path: Path, cfg: TableConfig) -> Mapped:
    """The table at `path` as memory maps in the cache (written once per file state and columns)."""
    names = column_names(path)
    if cfg.label not in names:
        raise TrainctlError(
            f"the table has no label column '{cfg.label}'",
            where=str(path),
            fix=f"data.label=COLUMN; columns: {', '.join(names)}" + suggestion(cfg.label, names),
        )
    features = list(cfg.features) if cfg.features is not None else [n for n in names if n != cfg.label]
    missing = [f for f in features if f not in names]
    if missing or not features:
        raise TrainctlError(
            f"feature columns not in the table: {', '.join(missing)}"
            if missing
            else "the table has no feature columns",
            where=str(path),
            fix=f"data.features=[...] from: {', '.join(n for n in names if n != cfg.label)}",
        )
    stat = path.stat()
    key = hashlib.sha256(
        json.dumps([str(path), stat.st_size, stat.st_mtime_ns, cfg.label, features]).encode()
    )
    folder = Path(cfg.cache_dir).expanduser() / "tables" / key.hexdigest()[:24]
    meta = folder / "meta.json"
    if meta.is_file():
        found = json.loads(meta.read_text())
        return Mapped(
            folder / "features.f32",
            folder / "labels.npy",
            found["rows"],
            features,
            found["label_names"],
            found["kind"],
        )
    shutil.rmtree(folder, ignore_errors=True)  # a damaged entry (no meta.json)
    with new_entry(folder) as entry:
        rows, label_names, kind = write_maps(path, cfg, features, entry)
    return Mapped(folder / "features.f32", folder / "labels.npy", rows, features, label_names, kind)


def write_maps(
    path: Path, cfg: TableConfig, features: list[str], folder: Path
) -> tuple[int, list[str] | None, str]:
    """The table's features.f32, labels.npy and meta.json in `folder`; (rows, label names, label kind)."""
    rows, kinds = 0, set()
    text_labels: list[np.ndarray] = []
    number_labels: list[np.ndarray] = []
    with open(folder / "features.f32", "wb") as out:
        for batch in record_batches(path, [*features, cfg.label]):
            matrix = np.empty((batch.num_rows, len(features)), dtype=np.float32)
            for j, name in enumerate(features):
                column = batch.column(batch.schema.get_field_index(name))
                try:
                    matrix[:, j] = column.to_numpy(zero_copy_only=False).astype(np.float32)
                except (ValueError, TypeError):
                    raise TrainctlError(
                        f"feature column '{name}' is not numeric ({column.type})",
                        where=str(path),
                        fix="encode it as numbers, or leave it out with data.features=[...]",
                    ) from None
            bad = np.argwhere(~np.isfinite(matrix))
            if len(bad):
                row, col = bad[0]
                raise TrainctlError(
                    f"feature '{features[col]}' is {matrix[row, col]} (missing or not finite) "
                    f"in data row {rows + row + 1}"
                    + (f" ({len(bad) - 1} more)" if len(bad) > 1 else ""),
                    where=str(path),
                    fix="fill or drop the rows with missing values",
                )
            labels = batch.column(batch.schema.get_field_index(cfg.label))
            if labels.null_count:
                raise TrainctlError(f"the label column '{cfg.label}' has empty values", where=str(path))
            values = labels.to_numpy(zero_copy_only=False)
            if values.dtype.kind in "OUS":
                kinds.add("text")
                text_labels.append(values.astype(str))
            else:
                kinds.add("int" if values.dtype.kind in "iub" else "float")
                number_labels.append(values.astype(np.float64))
            out.write(matrix.tobytes())
            rows += batch.num_rows
    kind = "text" if "text" in kinds else "float" if "float" in kinds else "int"
    label_names = None
    if kind == "text":
        texts = np.concatenate(text_labels) if text_labels else np.array([], dtype=str)
        label_names, codes = np.unique(texts, return_inverse=True)
        label_values = codes.astype(np.float64)
        label_names = label_names.tolist()
    else:
        label_values = np.concatenate(number_labels) if number_labels else np.array([], dtype=np.float64)
    np.save(folder / "labels.npy", label_values)
    (folder / "meta.json").write_text(json.dumps({"rows": rows, "label_names": label_names, "kind": kind}))
    return rows, label_names, kind


class TableRows(Dataset):
    """Rows of a memory-mapped table; a batch is one fancy-indexed read. Pickles as its file names."""

    def __init__(self, mapped: Mapped, rows: np.ndarray, classification: bool) -> None:
        self.mapped = mapped
        self.rows = rows  # which rows of the table this split holds
        self.classification = classification
        self._maps: tuple[np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}

    def maps(self) -> tuple[np.ndarray, np.ndarray]:
        if self._maps is None:
            shape = (self.mapped.rows, len(self.mapped.columns))
            features = np.memmap(self.mapped.features, dtype=np.float32, mode="r", shape=shape)
            self._maps = features, np.load(self.mapped.labels, mmap_mode="r")
        return self._maps

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.__getitems__([index])
        return inputs[0], targets[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        features, labels = self.maps()
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")  # sequential reads of the map, then back in batch order
        inputs = np.empty((len(rows), features.shape[1]), dtype=np.float32)
        targets = np.empty(len(rows), dtype=np.float64)
        inputs[order], targets[order] = features[rows[order]], labels[rows[order]]
        return torch.from_numpy(inputs), self.target_tensor(targets)

    def target_tensor(self, values: np.ndarray) -> torch.Tensor:
        return (
            torch.from_numpy(values).long()
            if self.classification
            else torch.from_numpy(values).float().view(-1, 1)
        )

    def all_labels(self) -> torch.Tensor:
        return self.target_tensor(np.asarray(self.maps()[1][self.rows]))


def as_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


@dataclass(frozen=True)
class Layout:
    """The maps of both splits, which rows each holds, and the task."""

    train: Mapped
    test: Mapped
    train_rows: np.ndarray
    test_rows: np.ndarray
    spec: DataSpec
    class_names: list[str] | None


def classes_of(mapped: Mapped) -> tuple[list[str], int]:
    if mapped.label_names is not None:
        return mapped.label_names, len(mapped.label_names)
    labels = np.load(mapped.labels, mmap_mode="r")
    top = int(labels.max()) if len(labels) else 0
    if len(labels) and labels.min() < 0:
        raise TrainctlError("class labels must be 0 or more", where=str(mapped.labels))
    return [str(i) for i in range(top + 1)], top + 1


def layout(cfg: TableConfig) -> Layout:
    if not cfg.path:
        raise TrainctlError(
            "dataset=table needs data.path", where="data.path", fix="data.path=FILE.csv or FILE.parquet"
        )
    train = convert(table_path(cfg, cfg.path, "data.path"), cfg)
    test = convert(table_path(cfg, cfg.test_path, "data.test_path"), cfg) if cfg.test_path else train
    task = cfg.task
    if task is TableTask.auto:
        task = (
            TableTask.regression
            if "float" in (train.label_kind, test.label_kind)
            else TableTask.classification
        )
    if task is TableTask.regression and "text" in (train.label_kind, test.label_kind):
        raise TrainctlError("data.task=regression needs numeric labels", where=f"data.label={cfg.label}")
    if cfg.test_path:
        train_rows, test_rows = np.arange(train.rows), np.arange(test.rows)
    else:
        order = torch.randperm(train.rows, generator=torch.Generator().manual_seed(cfg.split_seed)).numpy()
        cut = max(1, round(train.rows * cfg.test_fraction))
        test_rows, train_rows = np.sort(order[:cut]), np.sort(order[cut:])
    names: list[str] | None = None
    if task is TableTask.classification:
        names, outputs = classes_of(train)
        if (
            test is not train
            and (test.label_names or classes_of(test)[0]) != names
            and test.label_names is not None
        ):
            raise TrainctlError(
                "the test table's labels differ from the train table's", where=str(test.labels)
            )
        spec = DataSpec((len(train.columns),), outputs, Task.classification)
    else:
        spec = DataSpec((len(train.columns),), 1, Task.regression)
    return Layout(train, test, train_rows, test_rows, spec, names)


def prepare(cfg: TableConfig, download: bool) -> DataInfo:
    found = layout(cfg)
    return DataInfo(found.spec, len(found.train_rows), len(found.test_rows))


def table_split(
    mapped: Mapped, rows: np.ndarray, classification: bool, cfg: TableConfig, train: bool
) -> DatasetSplit:
    rows_set = TableRows(mapped, rows, classification)
    return DatasetSplit(
        rows_set, labels=rows_set.all_labels, collate=as_batch, workers=cfg.workers, persistent=train
    )


@DATASETS.register("table", TableConfig, prepare=prepare)
def load_table(cfg: TableConfig) -> DataBundle:
    found = layout(cfg)
    classification = found.spec.task is Task.classification
    return DataBundle(
        train=table_split(found.train, found.train_rows, classification, cfg, True),
        test=table_split(found.test, found.test_rows, classification, cfg, False),
        spec=found.spec,
        class_names=found.class_names,
    )
