"""`trainctl predict`: label raw texts with a trained text classifier, each with its probability."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from trainctl.cli.evaluate import locate_checkpoint
from trainctl.config.compose import compose
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


def predict(target: str, texts: Sequence[str], *, tag: str = "last") -> list[Prediction]:
    """The most likely class of each text under the checkpoint's model (its averaged weights if any)."""
    import torch

    from trainctl.compress.stored import inference_model, inference_precision
    from trainctl.data import load_dataset
    from trainctl.plan import resolve_device
    from trainctl.runtime.precision import MixedPrecision
    from trainctl.training.checkpoint import load_checkpoint

    checkpoint = locate_checkpoint(target, tag)
    state = load_checkpoint(checkpoint)
    cfg = compose([], base=OmegaConf.create(state["config"])).config
    data = load_dataset(cfg.data)  # the tokenizer and class names, from the run's own data config
    if data.encode is None:
        raise TrainctlError(
            f"predict takes texts, but this run trained on data set '{cfg.data.name}'",
            where=str(checkpoint),
            fix="use a run of a text model (e.g. conf=bert_sst2); evaluate others with `trainctl eval`",
        )
    model, device = inference_model(cfg, data, state, torch.device(resolve_device(cfg.trainer.device)))
    names = data.class_names or [str(i) for i in range(data.spec.num_outputs)]
    predictions = []
    with torch.no_grad(), MixedPrecision(inference_precision(cfg, state), device).autocast():
        for start in range(0, len(texts), BATCH):
            chunk = list(texts[start : start + BATCH])
            probabilities = model(data.encode(chunk).to(device)).float().softmax(dim=1)
            best, index = probabilities.max(dim=1)
            predictions += [
                Prediction(text, names[i], p)
                for text, i, p in zip(chunk, index.tolist(), best.tolist(), strict=True)
            ]
    return predictions
