"""`trainctl predict`: label texts (text classifiers) or image files (image classifiers), with probability."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trainctl.errors import TrainctlError

BATCH = 256


@dataclass
class Prediction:
    text: str
    label: str
    probability: float


def read_texts(texts: Sequence[str], file: Path | None) -> list[str]:
    """The --text values, then the non-empty lines of --file; at least one text."""
    found = list(texts)
    if file is not None:
        if not file.is_file():
            raise TrainctlError(f"file not found: {file}", fix="give a text file with one text per line")
        found += [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not found or any(not t.strip() for t in found):
        raise TrainctlError(
            "nothing to predict: give non-empty texts", fix='use --text "some text" or --file texts.txt'
        )
    return found


def read_inputs(texts: Sequence[str], file: Path | None) -> tuple[list[str], list[Path]]:
    """(texts, image files): --file is an image when its suffix says so, else a file of texts."""
    from trainctl.data.images import is_image

    if file is not None and is_image(file):
        return list(texts), [file]
    return read_texts(texts, file), []


def predict(
    target: str, texts: Sequence[str], *, images: Sequence[Path] = (), tag: str = "last"
) -> list[Prediction]:
    """The most likely class of each text or image under the checkpoint's model (averaged weights if any)."""
    import torch

    from trainctl.api import open_run
    from trainctl.cli.notes import note

    run = open_run(target, tag=tag, note=note)
    data = run.data  # the tokenizer and class names, from the run's own data config
    if images:
        if data.read_files is None:
            raise TrainctlError(
                f"predict --file IMAGE takes an image model; this run trained on '{run.cfg.data.name}'",
                where=str(run.checkpoint),
                fix="use a run of dataset=image_folder",
            )
        inputs, labels = data.read_files(list(images)), [str(p) for p in images]
    elif data.encode is None:
        raise TrainctlError(
            f"predict takes texts, but this run trained on data set '{run.cfg.data.name}'",
            where=str(run.checkpoint),
            fix="use a run of a text model (e.g. conf=bert_sst2); evaluate others with `trainctl eval`",
        )
    else:
        inputs, labels = None, list(texts)
    model, device = run.inference_model()
    names = data.class_names or [str(i) for i in range(data.spec.num_outputs)]
    predictions = []
    with torch.no_grad(), run.autocast(device):
        for start in range(0, len(labels), BATCH):
            chunk = labels[start : start + BATCH]
            batch = inputs[start : start + BATCH] if inputs is not None else data.encode(chunk)
            probabilities = model(batch.to(device)).float().softmax(dim=1)
            best, index = probabilities.max(dim=1)
            predictions += [
                Prediction(text, names[i], p)
                for text, i, p in zip(chunk, index.tolist(), best.tolist(), strict=True)
            ]
    return predictions
