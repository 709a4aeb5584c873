"""Attention registry with capability flags (after xformers / fast-transformers).

Every mechanism is a subclass of :class:`AttentionBase` registered by name where it is defined::

    @register("hot")
    class HOTAttention(AttentionBase):
        caps = Caps(tensor=True, causal=False)

Capabilities are class attributes, readable before construction, so callers check them with
:func:`require` and never branch on names.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, fields

from torch import nn


@dataclass(frozen=True)
class Caps:
    """What an attention supports. Defaults describe plain softmax attention."""

    self_attention: bool = True
    cross_attention: bool = True
    causal: bool = True
    key_padding_mask: bool = True
    # Takes (B, H, *axes, D) tensors with any number of axes instead of (B, H, L, D) sequences.
    tensor: bool = False
    # Wants one query/key projection per tensor axis (q, k given as a tuple, one per axis).
    per_axis_qk: bool = False
    # Holds learned parameters of its own (beyond the q/k/v/o projections of the layer).
    learned_params: bool = False
    # Can replace the attention of a pretrained dense layer without retraining.
    pretrained_drop_in: bool = True
    # Needs a fixed maximum sequence length at build time.
    fixed_len: bool = False
    # Without causal masking, permuting the tokens permutes the outputs (a joint permutation of keys and
    # values changes nothing). False for position-dependent methods (windows, segments, length projections,
    # position-ordered chunks); tensor attentions: along each axis.
    permutation_equivariant: bool = True
    # Which projections of the input the multi-head layer learns ("qkv": all three; "qk": values are the
    # input's per-head slices; "q": keys and values are). "You need to pay better attention" drops W^V / W^K.
    projections: str = "qkv"

    def __post_init__(self) -> None:
        if self.projections not in ("qkv", "qk", "q"):
            raise ValueError(f"Caps.projections={self.projections!r}; allowed: 'qkv', 'qk', 'q'")


class CapabilityError(ValueError):
    """An attention was asked for a capability it lacks (``require``); the message names the entries that have it."""


class AttentionBase(nn.Module):
    """Base class: ``forward(q, k, v, *, key_padding_mask=None, causal=False)``."""

    caps: Caps = Caps()
    name: str = ""


_REGISTRY: dict[str, type[AttentionBase]] = {}


def register(name: str):
    """Class decorator adding an attention under ``name``; duplicates and non-subclasses raise."""

    def deco(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, AttentionBase)):
            raise TypeError(f"@register({name!r}): {cls!r} is not a subclass of AttentionBase")
        if name in _REGISTRY:
            raise ValueError(f"attention {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        if cls in _REGISTRY.values():
            raise ValueError(f"{cls.__qualname__} is already registered under another name")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Names of all registered attentions, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type[AttentionBase]:
    """The class registered as ``name``; an unknown name lists the keys and the closest match."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown attention {name!r}; available: {', '.join(available())}.{hint}")
    return _REGISTRY[name]


def require(cls: type[AttentionBase], **wanted: bool) -> None:
    """Raise if ``cls`` lacks a capability asked for (e.g. ``require(cls, causal=True)``)."""
    names = {f.name for f in fields(Caps)}
    for cap, value in wanted.items():
        if cap not in names:
            raise KeyError(f"unknown capability {cap!r}; known: {', '.join(sorted(names))}")
        if value and not getattr(cls.caps, cap):
            able = [n for n, c in _REGISTRY.items() if getattr(c.caps, cap)]
            raise CapabilityError(
                f"attention {cls.name!r} does not support {cap}=True; entries that do: {', '.join(able)}"
            )


def build(name: str, **kwargs) -> AttentionBase:
    """Build attention ``name``; unknown keyword arguments raise with the accepted ones listed."""
    cls = get(name)
    check_kwargs(name, kwargs)
    return cls(**kwargs)


def check_kwargs(name: str, kwargs: dict) -> None:
    """Raise if ``kwargs`` holds a key the constructor of attention ``name`` does not accept."""
    params = inspect.signature(get(name).__init__).parameters
    accepted = [p for p in params if p != "self"]
    for key in kwargs:
        if key not in accepted:
            raise TypeError(
                f"attention {name!r} got unknown option {key!r}; accepted: {', '.join(accepted) or 'none'}"
            )


def caps_table() -> str:
    """Markdown table of every entry's capabilities (README's registry table is this output)."""
    cols = [f.name for f in fields(Caps)]
    lines = ["| entry | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name in available():
        caps = _REGISTRY[name].caps
        cells = [("yes" if v else "-") if isinstance(v, bool) else str(v) for v in (getattr(caps, c) for c in cols)]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
