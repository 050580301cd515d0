"""What differs between two runs, read from their files: config, code, environment, hardware, data (from
their records) and results (final and best metrics, and the first step where their curves part)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from trainctl.config.resume import flatten
from trainctl.runs.metrics import higher_is_better
from trainctl.runs.record import read_packages, read_record
from trainctl.runs.run_dir import RunDir
from trainctl.runs.summaries import read_metrics

SECTIONS = ("config", "code", "environment", "hardware", "data")
# Top-level fields of a record section that time the run or follow from others compared on their own
NOT_COMPARED = {"created", "sha256", "packages", "packages_sha256", "executable"}
CURVE_FIELDS = ("loss", "lr")  # the train records' fields that must match for curves to be the same


@dataclass
class Change:
    """One difference: a key and its value in run A and run B (None: absent there)."""

    key: str
    a: Any
    b: Any

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "a": self.a, "b": self.b}


@dataclass
class Parting:
    """Where two runs' metrics first differ: the step, the record kind and field, both values."""

    step: int
    kind: str
    field: str
    a: float | None
    b: float | None

    @property
    def size(self) -> float | None:
        if self.a is None or self.b is None:
            return None
        return abs(self.a - self.b)

    @property
    def relative(self) -> float | None:
        size, scale = self.size, max(abs(self.a or 0.0), abs(self.b or 0.0))
        return None if size is None or scale == 0 else size / scale


@dataclass
class RunsDiff:
    """Every section's changes, and the results side by side."""

    a: RunDir
    b: RunDir
    sections: dict[str, list[Change]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    parting: Parting | None = None  # the first difference of any metric
    loss_parting: Parting | None = None  # the first step where the loss curves part
    compared_records: int = 0  # metric records compared before the first difference (or all of them)
    missing_record: list[str] = field(default_factory=list)  # runs without a record

    def as_dict(self) -> dict[str, Any]:
        def plain(part: Parting | None) -> dict[str, Any] | None:
            return None if part is None else {**part.__dict__, "size": part.size, "relative": part.relative}

        return {
            "a": str(self.a.path),
            "b": str(self.b.path),
            **{name: [c.as_dict() for c in changes] for name, changes in self.sections.items()},
            "results": {
                **self.results,
                "parting": plain(self.parting),
                "loss_parting": plain(self.loss_parting),
                "compared_records": self.compared_records,
            },
            "missing_record": self.missing_record,
        }


def is_location(key: str) -> bool:
    """trainctl's folder variables (TRAINCTL_RUNS_DIR, TRAINCTL_RUN_DIR, ...): where files go, not what the
    run computes (the data's own fingerprints say whether its files are the same)."""
    return key.startswith("env.TRAINCTL_") and key.endswith("_DIR")


def changes(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[Change]:
    """The flattened keys whose values differ, sorted."""
    flat_a, flat_b = flatten(a, prefix), flatten(b, prefix)
    return [
        Change(key, flat_a.get(key), flat_b.get(key))
        for key in sorted(set(flat_a) | set(flat_b))
        if key not in NOT_COMPARED and not is_location(key) and flat_a.get(key) != flat_b.get(key)
    ]


def package_changes(a: RunDir, b: RunDir, env_a: dict[str, Any], env_b: dict[str, Any]) -> list[Change]:
    """Installed distributions that differ (`package NAME`: version in A and B; None: not installed)."""
    listed_a, listed_b = read_packages(a), read_packages(b)
    if not listed_a or not listed_b:  # no list to compare: the hashes say whether they differ
        same = env_a.get("packages_sha256") == env_b.get("packages_sha256")
        return (
            []
            if same
            else [Change("packages_sha256", env_a.get("packages_sha256"), env_b.get("packages_sha256"))]
        )

    def versions(lines: list[str]) -> dict[str, str]:
        return dict(line.partition("==")[::2] for line in lines if "==" in line)

    va, vb = versions(listed_a), versions(listed_b)
    return [
        Change(f"package {name}", va.get(name), vb.get(name))
        for name in sorted(set(va) | set(vb), key=str.lower)
        if va.get(name) != vb.get(name)
    ]


def data_changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """Files (and files inside folders) whose size or content differ, by path."""
    files_a = {f["path"]: f for f in a.get("files", [])}
    files_b = {f["path"]: f for f in b.get("files", [])}
    found = [Change("data.name", a.get("name"), b.get("name"))] if a.get("name") != b.get("name") else []
    for path in sorted(set(files_a) | set(files_b)):
        fa, fb = files_a.get(path, {}), files_b.get(path, {})
        if fa.get("kind") == fb.get("kind") == "folder":
            entries_a, entries_b = fa.get("entries", {}), fb.get("entries", {})
            for rel in sorted(set(entries_a) | set(entries_b)):
                if entries_a.get(rel) != entries_b.get(rel):
                    found.append(Change(f"{path}/{rel}", entries_a.get(rel), entries_b.get(rel)))
            if fa.get("listing_sha256") != fb.get("listing_sha256") and not found:
                found.append(Change(f"{path} (names and sizes)", fa.get("files"), fb.get("files")))
            continue
        ident_a = {k: fa.get(k) for k in ("kind", "size", "sha256")} if fa else None
        ident_b = {k: fb.get(k) for k in ("kind", "size", "sha256")} if fb else None
        if ident_a != ident_b:
            found.append(Change(path, ident_a, ident_b))
    return found


def evaluation_summary(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The final value and the best value of each test metric."""
    evals = [r for r in records if r.get("kind") == "eval" and r.get("split", "test") == "test"]
    if not evals:
        return {}
    metrics = [
        k
        for k, v in evals[-1].items()
        if isinstance(v, int | float) and k not in ("step", "epoch", "seconds", "rank", "time")
    ]
    summary = {}
    for name in metrics:
        values = [float(r[name]) for r in evals if isinstance(r.get(name), int | float)]
        best = max(values) if higher_is_better(name) else min(values)
        summary[name] = {"final": float(evals[-1][name]), "best": best}
    return summary


def metric_stream(records: list[dict[str, Any]]) -> list[tuple[int, str, dict[str, float]]]:
    """The records that a deterministic run repeats exactly: train curves and evaluations, by step."""
    stream = []
    for r in records:
        if r.get("kind") == "train":
            stream.append((int(r["step"]), "train", {k: r[k] for k in CURVE_FIELDS if k in r}))
        elif r.get("kind") == "eval":
            values = {
                k: v
                for k, v in r.items()
                if isinstance(v, int | float) and k not in ("step", "epoch", "seconds", "rank", "time")
            }
            stream.append((int(r["step"]), f"eval {r.get('split', 'test')}", values))
    return stream


def first_parting(
    a: list[dict[str, Any]], b: list[dict[str, Any]], tolerance: float = 0.0, only: str | None = None
) -> tuple[Parting | None, int]:
    """The first record where the two runs' metrics (`only` that one) differ by more than `tolerance`
    (relative), and how many records were compared; a run that logged fewer records parts where it ends."""
    stream_a, stream_b = metric_stream(a), metric_stream(b)
    if only is not None:
        stream_a = [(s, k, {only: v[only]}) for s, k, v in stream_a if only in v]
        stream_b = [(s, k, {only: v[only]}) for s, k, v in stream_b if only in v]
    for index, ((step_a, kind_a, va), (step_b, kind_b, vb)) in enumerate(
        zip(stream_a, stream_b, strict=False)
    ):
        if (step_a, kind_a) != (step_b, kind_b):
            return Parting(min(step_a, step_b), f"{kind_a} / {kind_b}", "step", step_a, step_b), index
        for name in sorted(set(va) | set(vb)):
            x, y = va.get(name), vb.get(name)
            if x == y or (x is not None and y is not None and math.isnan(x) and math.isnan(y)):
                continue
            if x is not None and y is not None and abs(x - y) <= tolerance * max(abs(x), abs(y)):
                continue
            return Parting(step_a, kind_a, name, x, y), index
    shorter = min(len(stream_a), len(stream_b))
    if len(stream_a) != len(stream_b):
        longer = stream_a if len(stream_a) > shorter else stream_b
        step, kind, _ = longer[shorter]
        return Parting(step, kind, "records", len(stream_a), len(stream_b)), shorter
    return None, shorter


def compare(a: RunDir, b: RunDir, tolerance: float = 0.0) -> RunsDiff:
    """Everything that differs between runs `a` and `b`."""
    diff = RunsDiff(a, b)
    config_a = yaml.safe_load(a.config_file.read_text()) or {}
    config_b = yaml.safe_load(b.config_file.read_text()) or {}
    diff.sections["config"] = changes(config_a, config_b)
    rec_a, rec_b = read_record(a), read_record(b)
    diff.missing_record = [str(run.path) for run, rec in ((a, rec_a), (b, rec_b)) if not rec]
    env_a, env_b = rec_a.get("environment", {}), rec_b.get("environment", {})
    diff.sections["code"] = changes(rec_a.get("code", {}), rec_b.get("code", {}))
    diff.sections["environment"] = changes(env_a, env_b) + package_changes(a, b, env_a, env_b)
    diff.sections["hardware"] = changes(rec_a.get("hardware", {}), rec_b.get("hardware", {}))
    diff.sections["data"] = data_changes(rec_a.get("data", {}), rec_b.get("data", {}))
    metrics_a, metrics_b = read_metrics(a.metrics_file), read_metrics(b.metrics_file)
    diff.results = {"a": evaluation_summary(metrics_a), "b": evaluation_summary(metrics_b)}
    diff.parting, diff.compared_records = first_parting(metrics_a, metrics_b, tolerance)
    diff.loss_parting = first_parting(metrics_a, metrics_b, tolerance, only="loss")[0]
    return diff


def explaining(diff: RunsDiff) -> list[str]:
    """The record's differences that may explain why two runs' numbers differ, one line each."""
    return [
        f"{section}: {change.key}: {change.a} -> {change.b}"
        for section in SECTIONS
        for change in diff.sections.get(section, [])
    ]
