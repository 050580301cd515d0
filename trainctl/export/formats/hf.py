"""`--format hf`: a text model as a Hugging Face folder (config with id2label/label2id, tokenizer, weights).

pooling=pooler on a BERT encoder is what BertForSequenceClassification computes, so the folder loads with
AutoModelForSequenceClassification. Mean and [CLS] pooling have no transformers class: the folder holds
the encoder (AutoModel loads it) and the head in head.safetensors, applied as the README shows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainctl.errors import TrainctlError
from trainctl.export import FORMATS
from trainctl.export.base import Artefact, Exporter, ExportSettings, plain_model, save_tokenizer
from trainctl.models.bert import BertClassifier, Pooling

if TYPE_CHECKING:
    from trainctl.api import OpenedRun

HEAD = "head.safetensors"


@dataclass
class HFSettings(ExportSettings):
    pass


class HFExporter(Exporter):
    name = "hf"

    def refuse(self, source: OpenedRun) -> None:
        if not isinstance(source.model, BertClassifier):
            raise TrainctlError(
                "--format hf exports text models (model=bert); "
                f"this run's model is '{source.cfg.model.name}'",
                where=str(source.run.path),
                fix="use --format safetensors, onnx or torch-export",
            )
        super().refuse(source)

    def write(self, source: OpenedRun, folder: Path, example: torch.Tensor) -> Artefact:
        model: BertClassifier = source.model
        names = source.data.class_names or [str(i) for i in range(source.data.spec.num_outputs)]
        config = copy.deepcopy(model.encoder.config)
        config.id2label = dict(enumerate(names))
        config.label2id = {name: i for i, name in enumerate(names)}
        if model.pooling is Pooling.pooler and config.model_type == "bert":
            write_sequence_classifier(model, config, folder)
            loaded, loading = load_sequence_classifier(folder, model.pad_token_id)
        else:
            write_encoder_and_head(model, config, folder)
            loaded, loading = load_encoder_and_head(folder, model.pooling, model.pad_token_id)
        files = sorted(p.name for p in folder.iterdir())
        return Artefact(files=[*files, *save_tokenizer(source, folder)], loaded=loaded, loading=loading)


def write_sequence_classifier(model: BertClassifier, config: object, folder: Path) -> None:
    from transformers import BertForSequenceClassification

    config.architectures = ["BertForSequenceClassification"]
    classifier = BertForSequenceClassification(config)
    classifier.bert.load_state_dict(model.encoder.state_dict())
    classifier.classifier.load_state_dict(model.head.state_dict())
    classifier.save_pretrained(str(folder))


def load_sequence_classifier(
    folder: Path, pad_token_id: int
) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    from transformers import AutoModelForSequenceClassification

    classifier = plain_model(AutoModelForSequenceClassification.from_pretrained(str(folder)))

    def run(input_ids: torch.Tensor) -> torch.Tensor:
        return classifier(input_ids=input_ids, attention_mask=input_ids.ne(pad_token_id).long()).logits

    loading = (
        "```python\nimport torch\n"
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        'folder = "."  # this folder\n'
        "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
        "model = AutoModelForSequenceClassification.from_pretrained(folder).eval()\n"
        'batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")\n'
        "with torch.no_grad():\n    probabilities = model(**batch).logits.softmax(-1)\n"
        "labels = [model.config.id2label[i] for i in probabilities.argmax(-1).tolist()]\n```\n\n"
        "The run pools with the encoder's pooler (`model.pooling=pooler`), which is what "
        "BertForSequenceClassification computes; a pipeline works too, truncating as above (without "
        "`truncation=True` a text longer than the model's positions fails, and one longer than the run's "
        "max_length scores differently from `trainctl predict`):\n\n"
        "```python\nfrom transformers import pipeline\n\n"
        'classify = pipeline("text-classification", model=folder)\n'
        "results = classify(texts, truncation=True)\n```"
    )
    return run, loading


def write_encoder_and_head(model: BertClassifier, config: object, folder: Path) -> None:
    from safetensors.torch import save_file

    encoder = copy.deepcopy(model.encoder)
    config.architectures = [type(encoder).__name__]
    encoder.config = config
    encoder.save_pretrained(str(folder))
    head = {k: v.detach().contiguous() for k, v in model.head.state_dict().items()}
    save_file(head, str(folder / HEAD), metadata={"pooling": model.pooling.value})


POOLING_CODE = {
    Pooling.mean: (
        '    mask = batch["attention_mask"].unsqueeze(-1).float()\n'
        "    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # mean over the real tokens\n"
    ),
    Pooling.cls: "    pooled = hidden[:, 0]  # the [CLS] token's state\n",
    Pooling.pooler: "    pooled = encoder(**batch).pooler_output  # the encoder's dense + tanh pooler\n",
}


def load_encoder_and_head(
    folder: Path, pooling: Pooling, pad_token_id: int
) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    from safetensors.torch import load_file
    from transformers import AutoModel

    encoder = plain_model(AutoModel.from_pretrained(str(folder), add_pooling_layer=pooling is Pooling.pooler))
    head = load_file(str(folder / HEAD))
    code = POOLING_CODE[pooling]

    def run(input_ids: torch.Tensor) -> torch.Tensor:  # the README's recipe, on token ids
        batch = {"input_ids": input_ids, "attention_mask": input_ids.ne(pad_token_id).long()}
        hidden = encoder(**batch).last_hidden_state
        if pooling is Pooling.mean:
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        elif pooling is Pooling.cls:
            pooled = hidden[:, 0]
        else:
            pooled = encoder(**batch).pooler_output
        return pooled @ head["weight"].T + head["bias"]

    loading = (
        f"The run pools the encoder's token states by `{pooling.value}` (`model.pooling={pooling.value}`), "
        "for which transformers has no sequence-classification class: `AutoModel` loads the encoder "
        f"(config.json with id2label/label2id, model.safetensors) and `{HEAD}` holds the linear head "
        "(`weight`, `bias`), applied to the pooled vector:\n\n"
        "```python\nimport torch\nfrom safetensors.torch import load_file\n"
        "from transformers import AutoModel, AutoTokenizer\n\n"
        'folder = "."  # this folder\n'
        "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
        f"encoder = AutoModel.from_pretrained(folder, add_pooling_layer={pooling is Pooling.pooler}).eval()\n"
        f'head = load_file(f"{{folder}}/{HEAD}")\n'
        'batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")\n'
        "with torch.no_grad():\n"
        "    hidden = encoder(**batch).last_hidden_state\n"
        f"{code}"
        '    logits = pooled @ head["weight"].T + head["bias"]\n'
        "probabilities = logits.softmax(-1)\n"
        "labels = [encoder.config.id2label[i] for i in probabilities.argmax(-1).tolist()]\n```"
    )
    return run, loading


@FORMATS.register("hf", HFSettings)
def build_hf(settings: HFSettings) -> HFExporter:
    return HFExporter(settings)
