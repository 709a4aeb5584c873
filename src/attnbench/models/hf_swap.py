"""Swap the self-attention of a pretrained HuggingFace encoder for a registry entry, keeping every weight.

The SMYRF paper's drop-in experiment (Daras et al., 2020, sec. "pretrained BERT"): the pretrained query/key/value/
output projections stay; only softmax(QK^T/sqrt(d))V inside each self-attention is replaced. We plug into
transformers' own dispatch (``AttentionInterface`` + ``AttentionMaskInterface``) instead of patching module code,
so any model family that routes through ``ALL_ATTENTION_FUNCTIONS`` (BERT, RoBERTa, ELECTRA, ...) works::

    model = AutoModel.from_pretrained(path)
    swap_self_attention(model, "smyrf", n_hashes=2, cluster_size=32)

Self-attention modules get their own registry instance (attribute ``attnbench_attention``); every other attention
call of the model (e.g. a decoder's cross-attention) stays dense SDPA, as in the official patch.

Differences from the official SMYRF patch, on purpose: its padding mask is tiled over the heads with ``repeat``
instead of ``repeat_interleave`` (wrong rows whenever batch > 1 and lengths differ; paper digest sec. 6-1), and it
draws fresh hash projections on every call. Here the mask is per batch row, and each layer's projections are a
fixed buffer drawn from ``seed + layer index`` (deterministic evaluation; a new ``seed`` gives new hashes). Entries
declaring ``caps.query_padding_mask`` (SMYRF) get the padding mask for queries too: a row's clusters then hold real
tokens only, whatever the padded length (the official code's effect of sorting padding last).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnbench.attention.registry import CapabilityError, accepted_options, available, build, get, require

IMPLEMENTATION = "attnbench"  # the name registered with transformers' attention dispatch
ATTR = "attnbench_attention"  # the submodule holding the registry entry on each swapped self-attention
# why an entry with learned parameters is refused, and how to admit it (attention_spec.drop_in_problem says the same)
TRAINABLE_HINT = (" (it has learned parameters of its own: fine-tune them with allow_trainable=True, config "
                  "model.net.trainable_attention=true)")


def _hf_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                  dropout: float = 0.0, scaling: float | None = None, **kwargs) -> tuple[Tensor, None]:
    """transformers' attention-function contract: q/k/v (B, H, L|S, D) -> ((B, L, H, Dv), no weights)."""
    attn = getattr(module, ATTR, None)
    if attn is None:  # not swapped (e.g. cross-attention): dense, exactly as the model would run it
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    D = query.shape[-1]
    if scaling is not None and not math.isclose(scaling, D**-0.5):
        query = query * (scaling * math.sqrt(D))  # registry entries scale logits by 1/sqrt(D)
    kpm = key_padding_mask(attention_mask)
    causal = bool(getattr(module, "is_causal", False))
    # self-attention: the padded positions are padded queries too (SMYRF then clusters real tokens only)
    extra = {"query_padding_mask": kpm} if kpm is not None and type(attn).caps.query_padding_mask else {}
    out = attn(query, key, value, key_padding_mask=kpm, causal=causal, **extra)  # (B, H, L, Dv)
    return out.transpose(1, 2).contiguous(), None


def key_padding_mask(mask: Tensor | None) -> Tensor | None:
    """(B, 1|H, L, S) bool (True = attend) or additive float mask of a bidirectional encoder -> (B, S) keep-mask.

    A mask that is not the same for every query (a causal or custom 4-D mask) cannot be a key padding mask: error.
    """
    if mask is None:
        return None
    keep = mask if mask.dtype == torch.bool else mask == 0  # additive masks: 0 where attended
    if keep.ndim != 4:
        raise ValueError(f"expected a 4-D attention mask (B, 1, L, S), got shape {tuple(mask.shape)}")
    kpm = keep[:, 0, 0, :]  # (B, S)
    if not torch.equal(keep, kpm[:, None, None, :].expand_as(keep)):
        raise ValueError("the attention mask varies across queries or heads (causal or custom mask); swapped "
                         "self-attention supports key padding masks only")
    return kpm


def _register_with_transformers() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, _hf_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, sdpa_mask)  # bool masks, None when nothing is padded


def self_attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The self-attention modules of a HF encoder: ``query``/``key``/``value`` projections, not cross-attention."""
    found = []
    for name, m in model.named_modules():
        is_qkv = all(isinstance(getattr(m, p, None), nn.Linear) for p in ("query", "key", "value"))
        if is_qkv and not getattr(m, "is_cross_attention", False) and "crossattention" not in name:
            found.append((name, m))
    return found


def check_drop_in(name: str, allow_trainable: bool = False) -> type:
    """The registry class ``name`` if it can replace a pretrained dense self-attention, else ValueError/KeyError
    naming the entries that can. ``allow_trainable``: also entries with learned parameters of their own
    (``caps.learned_params``, e.g. Treeformer's trees), which then need fine-tuning."""
    cls = get(name)
    require(cls, self_attention=True, key_padding_mask=True)
    if not cls.caps.pretrained_drop_in and not (allow_trainable and cls.caps.learned_params):
        able = [n for n in available() if get(n).caps.pretrained_drop_in]
        hint = TRAINABLE_HINT if cls.caps.learned_params else ""
        raise CapabilityError(f"attention {name!r} does not support pretrained_drop_in=True{hint}; entries that do: "
                              f"{', '.join(able)}")
    if cls.caps.tensor or cls.caps.per_axis_qk or cls.caps.projections != "qkv":
        raise ValueError(f"attention {name!r} needs tensor / per-axis inputs or its own projections; a pretrained "
                         "encoder supplies (B, H, L, D) q, k, v from its q/k/v projections")
    return cls


def swap_self_attention(model: nn.Module, name: str, allow_trainable: bool = False, **options) -> list[str]:
    """Replace the attention kernel of every self-attention of ``model`` by registry entry ``name``.

    ``options`` go to the entry's constructor (``head_dim`` and ``dropout`` are filled in from the model's config
    when the entry takes them; ``seed`` is offset by the layer index). Returns the swapped modules' names.
    Entries that cannot replace a pretrained dense layer (learned parameters of their own, per-axis or tensor
    inputs, fewer than three projections, no padding mask) are refused with the entries that can;
    ``allow_trainable=True`` admits entries with learned parameters (Treeformer): their parameters are new (e.g.
    ``data_init=True`` places the trees' splits at the keys' medians at the first training step) and the model
    must be fine-tuned, it is not a drop-in without retraining.
    """
    cls = check_drop_in(name, allow_trainable)
    mods = self_attention_modules(model)
    if not mods:
        raise ValueError(f"{type(model).__name__} has no self-attention with query/key/value projections to swap")
    config = getattr(model, "config", None)
    accepted = accepted_options(cls)
    base_seed = options.pop("seed", 0)
    for i, (_, m) in enumerate(mods):
        kwargs = dict(options)
        if "dropout" in accepted and config is not None:
            kwargs.setdefault("dropout", config.attention_probs_dropout_prob)
        if "seed" in accepted:
            kwargs["seed"] = base_seed + i
        # a new module is in training mode: follow the model's
        sizes = {"head_dim": m.attention_head_size, "n_heads": m.num_attention_heads}
        attn = build(name, sizes, **kwargs).train(m.training)
        setattr(m, ATTR, attn.to(device=next(m.parameters()).device))
    _register_with_transformers()
    if config is not None and config._attn_implementation != IMPLEMENTATION:
        model._attnbench_previous_implementation = config._attn_implementation  # for restore_dense
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(IMPLEMENTATION)
    else:
        config._attn_implementation = IMPLEMENTATION
    return [n for n, _ in mods]


def restore_dense(model: nn.Module, implementation: str | None = None) -> None:
    """Undo :func:`swap_self_attention`: drop the registry modules and go back to dense attention
    (``implementation``, default the one the model had before the swap, else ``sdpa``)."""
    for _, m in self_attention_modules(model):
        if hasattr(m, ATTR):
            delattr(m, ATTR)
    model.set_attn_implementation(implementation or getattr(model, "_attnbench_previous_implementation", "sdpa"))
