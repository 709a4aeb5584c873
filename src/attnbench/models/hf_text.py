"""Pretrained HuggingFace text encoders with a classification head, optionally with swapped self-attention."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from attnbench.models.hf_swap import ATTR, swap_self_attention
from attnbench.pretrained import MINILM, load_tokenizer, offline_hint, resolve_pretrained

__all__ = ["MINILM", "load_tokenizer", "pretrained_classifier", "pretrained_masked_lm", "resolve_pretrained"]
log = logging.getLogger(__name__)


def _load(auto_cls: Any, pretrained: str, attention: dict[str, Any] | None, dropout: float | None,
          trainable_attention: bool, **kwargs: Any) -> tuple[nn.Module, dict]:
    """``auto_cls.from_pretrained(pretrained)`` (+ its loading info) with the dropout override and every
    self-attention swapped for ``attention`` (``pretrained_classifier``'s arguments)."""
    if dropout is not None:
        kwargs.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    try:
        model, info = auto_cls.from_pretrained(resolve_pretrained(pretrained), output_loading_info=True, **kwargs)
    except (OSError, ValueError) as e:
        raise offline_hint(pretrained, e) from e
    model.attnbench_model_state = (ATTR,)  # swapped-in attention buffers follow the model, not a checkpoint
    if attention:
        opts = dict(attention)
        swap_self_attention(model, opts.pop("name"), allow_trainable=trainable_attention, **opts)
    return model, info


def pretrained_classifier(pretrained: str, n_labels: int, attention: dict[str, Any] | None = None,
                          dropout: float | None = None, trainable_attention: bool = False) -> nn.Module:
    """``AutoModelForSequenceClassification`` (new head, ``n_labels``; 1 = regression) from ``pretrained``, with
    every self-attention swapped for the registry entry ``attention['name']`` (options: the rest) when given.

    ``trainable_attention``: admit entries with learned parameters of their own (Treeformer), to fine-tune them
    (``hf_swap.swap_self_attention(allow_trainable=True)``). ``attention=None`` keeps the model's own attention
    (SDPA); ``{'name': 'full'}`` is the same function through the registry. ``dropout`` overrides the hidden and
    attention dropout of the config. The model satisfies ``models.interfaces.PretrainedNet``:
    ``attnbench_trained_head`` says whether every weight, the classifier included, came from the checkpoint;
    ``attnbench_model_state`` names the state of the swapped-in attentions.
    """
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"num_labels": n_labels}
    if n_labels == 1:
        kwargs["problem_type"] = "regression"
    model, info = _load(AutoModelForSequenceClassification, pretrained, attention, dropout, trainable_attention,
                        **kwargs)
    # a checkpoint fine-tuned for the task brings its classifier: then it can be evaluated as it is (train=false,
    # no ckpt_path), e.g. with SMYRF swapped in, which is the paper's "no retraining" experiment
    model.attnbench_trained_head = not info.get("missing_keys") and not info.get("mismatched_keys")
    return model


def pretrained_masked_lm(pretrained: str, attention: dict[str, Any] | None = None, dropout: float | None = None,
                         trainable_attention: bool = False) -> nn.Module:
    """``AutoModelForMaskedLM`` (``BertForMaskedLM`` for a BERT) from ``pretrained``, self-attention swapped as in
    ``pretrained_classifier``, for MLM continued pre-training.

    A checkpoint without an MLM head (the sentence-transformers all-MiniLM-L6-v2 behind ``minilm`` is a bare
    ``BertModel``) gets the head's decoder tied to the word embeddings (pretrained), while the head's transform
    (dense + LayerNorm) and the output bias start fresh (BERT's init): logged as a warning naming them. The
    checkpoint's pooler is unused (an MLM has none). Satisfies ``models.interfaces.PretrainedNet``.
    """
    from transformers import AutoModelForMaskedLM

    model, info = _load(AutoModelForMaskedLM, pretrained, attention, dropout, trainable_attention)
    fresh = sorted(set(info.get("missing_keys") or ()) | set(info.get("mismatched_keys") or ()))
    model.attnbench_trained_head = not fresh
    if fresh:
        log.warning("pretrained_masked_lm: %s has no (complete) MLM head; the decoder is tied to the pretrained "
                    "word embeddings, these start fresh: %s", pretrained, ", ".join(fresh))
    return model
