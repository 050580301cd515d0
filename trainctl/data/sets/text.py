"""Text classification from TSV, CSV or JSONL files: configurable columns and labels, tokenized once."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch

from trainctl.config.ranges import ranged
from trainctl.config.schema import DataConfig
from trainctl.data import DATASETS
from trainctl.data.tokens import (
    TokenSplit,
    cached_encode,
    load_tokenizer,
    pretrained_folder,
    tokenizer_fingerprint,
)
from trainctl.data.types import DataBundle, DataSpec, Task
from trainctl.errors import TrainctlError


class TextFormat(str, Enum):
    auto = "auto"  # from the file's suffix: .tsv, .csv, .jsonl / .json
    tsv = "tsv"
    csv = "csv"
    jsonl = "jsonl"


@dataclass
class TextConfig(DataConfig):
    root: str = "${oc.env:TRAINCTL_DATA_DIR,'~/.cache/trainctl/data'}"
    folder: str = ""  # sub-folder of root holding the files
    train_file: str = "train.tsv"
    test_file: str = "dev.tsv"
    format: TextFormat = TextFormat.auto
    header: bool = True  # tsv/csv: the first row names the columns; without one, columns are 0, 1, ...
    text_column: str = "text"
    label_column: str = "label"
    # Class names in class order. A label value in a file is a name of this list or its 0-based
    # index; null: the distinct values of the train file, sorted (numerically when all are integers).
    label_names: list[str] | None = None
    tokenizer: str | None = "${oc.select:model.pretrained,null}"  # folder; null: the default MiniLM
    max_length: int = ranged("${oc.select:model.max_length,128}", "[1, inf)")  # tokens per text
    cache_dir: str = "${oc.env:TRAINCTL_CACHE_DIR,'~/.cache/trainctl/cache'}"  # tokenized ids live here


@dataclass
class Rows:
    """The texts and raw label values of one file, with the line each came from."""

    path: Path
    texts: list[str]
    labels: list[str]
    lines: list[int]
    content: bytes


def file_format(cfg: TextConfig, path: Path) -> TextFormat:
    chosen = TextFormat(cfg.format)
    if chosen is not TextFormat.auto:
        return chosen
    suffixes = {".tsv": TextFormat.tsv, ".csv": TextFormat.csv, ".jsonl": TextFormat.jsonl}
    suffixes[".json"] = TextFormat.jsonl
    if path.suffix.lower() not in suffixes:
        raise TrainctlError(
            f"cannot tell the format of {path.name} from its suffix",
            where="data.format",
            fix="set data.format=tsv, csv or jsonl",
        )
    return suffixes[path.suffix.lower()]


def read_rows(cfg: TextConfig, path: Path) -> Rows:
    """Texts and labels of a file; missing columns, empty texts and bad lines are named errors."""
    if not path.is_file():
        raise TrainctlError(
            f"text file not found: {path.name}",
            where=str(path),
            fix="point data.root / data.folder / data.train_file / data.test_file at your files",
        )
    content = path.read_bytes()
    text = content.decode("utf-8-sig", errors="replace")
    kind = file_format(cfg, path)
    if kind is TextFormat.jsonl:
        records = json_records(text, path)
    else:
        records = table_records(text, path, "\t" if kind is TextFormat.tsv else ",", cfg.header)
    texts, labels, lines = [], [], []
    for line, record in records:
        for key, column in (("data.text_column", cfg.text_column), ("data.label_column", cfg.label_column)):
            if column not in record:
                raise TrainctlError(
                    f"no column '{column}' in {path.name}",
                    where=f"{path}, line {line}",
                    fix=f"set {key}= one of: {', '.join(map(str, record))}",
                )
        value = record[cfg.text_column]
        if value is None or not str(value).strip():
            raise TrainctlError(
                f"empty text in column '{cfg.text_column}'",
                where=f"{path}, line {line}",
                fix="remove the line or fill in its text",
            )
        texts.append(str(value))
        labels.append(str(record[cfg.label_column]).strip())
        lines.append(line)
    if not texts:
        raise TrainctlError(f"{path.name} holds no rows", where=str(path))
    return Rows(path, texts, labels, lines, content)


def table_records(text: str, path: Path, delimiter: str, header: bool) -> list[tuple[int, dict]]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=quoting)
    rows = [(reader.line_num, row) for row in reader if row]
    if not rows:
        return []
    if header:
        (_, names), rows = rows[0], rows[1:]
    else:
        names = [str(i) for i in range(len(rows[0][1]))]
    records = []
    for line, row in rows:
        if len(row) != len(names):
            raise TrainctlError(
                f"{len(row)} fields where the header has {len(names)}",
                where=f"{path}, line {line}",
                fix="check the delimiter (data.format) and quoting of that line",
            )
        records.append((line, dict(zip(names, row, strict=True))))
    return records


def json_records(text: str, path: Path) -> list[tuple[int, dict]]:
    records = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TrainctlError(f"not valid JSON: {exc.msg}", where=f"{path}, line {line}") from None
        if not isinstance(record, dict):
            raise TrainctlError("each line must hold a JSON object", where=f"{path}, line {line}")
        records.append((line, record))
    return records


def class_names(cfg: TextConfig, train: Rows) -> list[str]:
    if cfg.label_names:
        return [str(n) for n in cfg.label_names]
    values = sorted(set(train.labels))
    if all(v.lstrip("-").isdigit() for v in values):
        values.sort(key=int)
    return values


def label_ids(rows: Rows, names: list[str], cfg: TextConfig) -> torch.Tensor:
    """Class indices of a file's label values: a class name, or a 0-based index of one."""
    index = {name: i for i, name in enumerate(names)}
    ids = []
    for value, line in zip(rows.labels, rows.lines, strict=True):
        if value in index:
            ids.append(index[value])
        elif value.isdigit() and int(value) < len(names) and cfg.label_names:
            ids.append(int(value))
        else:
            raise TrainctlError(
                f"unknown label value '{value}' in column '{cfg.label_column}'",
                where=f"{rows.path}, line {line}",
                fix=f"labels are: {', '.join(names)} (or their 0-based index); data.label_names sets them",
            )
    return torch.tensor(ids, dtype=torch.int64)


@DATASETS.register("text", TextConfig)
def load_text(cfg: TextConfig) -> DataBundle:
    folder = Path(cfg.root).expanduser() / cfg.folder
    train_rows = read_rows(cfg, folder / cfg.train_file)
    test_rows = read_rows(cfg, folder / cfg.test_file)
    names = class_names(cfg, train_rows)
    if len(names) < 2:
        raise TrainctlError(
            f"only one label value ({names[0]}) in the train file", where=str(train_rows.path)
        )
    train_targets, test_targets = label_ids(train_rows, names, cfg), label_ids(test_rows, names, cfg)
    tokenizer_folder = pretrained_folder(cfg.tokenizer, "data.tokenizer (model.pretrained)")
    tokenizer = load_tokenizer(tokenizer_folder, "data.tokenizer (model.pretrained)")
    fingerprint = tokenizer_fingerprint(tokenizer_folder)
    cache = Path(cfg.cache_dir).expanduser()
    splits = []
    for rows, targets in ((train_rows, train_targets), (test_rows, test_targets)):
        ids, lengths = cached_encode(
            tokenizer,
            rows.texts,
            max_length=cfg.max_length,
            cache_dir=cache,
            source=rows.content,
            fingerprint=fingerprint,
        )
        splits.append(TokenSplit(ids, targets, lengths))

    def encode_texts(texts: list[str]) -> torch.Tensor:
        ids = tokenizer(
            texts, truncation=True, max_length=cfg.max_length, padding="longest", return_tensors="pt"
        )
        return ids["input_ids"]

    return DataBundle(
        train=splits[0],
        test=splits[1],
        spec=DataSpec(
            input_shape=(cfg.max_length,),
            num_outputs=len(names),
            task=Task.classification,
            pad_token_id=tokenizer.pad_token_id,
        ),
        class_names=names,
        encode=encode_texts,
    )
