"""Attention registry with capability flags (after xformers / fast-transformers).

Every mechanism is a subclass of :class:`AttentionBase` registered by name where it is defined::

    @register("hot")
    class HOTAttention(AttentionBase):
        caps = Caps(tensor=True, causal=False)

Capabilities are class attributes, readable before construction, so callers check them with
:func:`require` and never branch on names. What the declarations promise is applied here, once:
``fp32=True`` wraps the entry's ``forward`` (:class:`AttentionBase`), and :func:`build` fills the sizes an
entry declares (``needs_head_dim``: ``head_dim``; ``needs_n_heads``: ``n_heads``; ``fixed_len``: ``max_len``)
from the caller's ``sizes``.
:func:`register` checks the declarations against the constructor and ``forward`` signatures.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from attnbench.attention_spec import PATTERNS, SIZES, patterns_of
from attnbench.errors import CapabilityError

# The state an incremental entry carries between decoding steps (``AttentionBase.step``): named tensors.
State = dict[str, Tensor]


@dataclass(frozen=True)
class Caps:
    """What an attention supports. Defaults describe plain softmax attention."""

    self_attention: bool = True
    cross_attention: bool = True
    causal: bool = True
    # Takes a key padding mask, True = real key: (B, S) for sequences; tensor entries take (B, *axes') (HOT: a
    # product of per-axis masks, i.e. padding along axes).
    key_padding_mask: bool = True
    # Takes (B, H, *axes, D) tensors with any number of axes instead of (B, H, L, D) sequences.
    tensor: bool = False
    # Wants one query/key projection per tensor axis (q, k given as a tuple, one per axis).
    per_axis_qk: bool = False
    # q and k enter only through per-axis pooling, so the layer may pass each as the tokens and the projection's
    # weights (HOT's ``ProjectedTokens``: pooled, then projected, as many rows fewer to project). Needs tensor.
    projected_tokens: bool = False
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
    # The constructor takes the per-head size ``head_dim`` (:func:`build` fills it from ``sizes``).
    needs_head_dim: bool = False
    # The constructor takes the number of heads ``n_heads`` (:func:`build` fills it from ``sizes``): parameters
    # held per head (Treeformer's per-head trees).
    needs_n_heads: bool = False
    # Can be built with ``shared_qk=True`` (Reformer): one query/key projection, k must be the very tensor q
    # (self-attention only). The built module's ``shared_qk`` says whether this instance shares them.
    shared_qk: bool = False
    # ``forward`` takes a ``query_padding_mask`` (B, L) (tensor entries: (B, *axes)), True = real query: padded
    # queries take no slot (SMYRF's clusters; HOT's pooling) and give zeros. Self-attention callers (the layer,
    # ``models.hf_swap``) pass their padding mask as it.
    query_padding_mask: bool = False
    # Computes in (at least) fp32 under autocast: q, k, v are cast up to promote(v.dtype, fp32), autocast is
    # off inside ``forward``, and the output comes back in v's dtype (exponentials, prefix sums, pinv, hashes).
    fp32: bool = False
    # CAB's causal cross (CC): with a fixed key/value memory, query i's output depends on query i and the memory
    # only (no query mixes with the others: no query landmarks, clusters or pooling), so a decoder may process its
    # queries causally: running on the query prefix <= i, or one query at a time, equals the full pass. Needs
    # cross_attention. The memory itself is never masked (see :func:`patterns`).
    causal_cross: bool = True
    # Incremental causal self-attention decoding with a state cache: the entry defines ``step`` (one new token's
    # q, k, v and the state of the previous steps -> its output and the new state), equal to the causal pass.
    incremental: bool = False

    def __post_init__(self) -> None:
        if self.projections not in ("qkv", "qk", "q"):
            raise ValueError(f"Caps.projections={self.projections!r}; allowed: 'qkv', 'qk', 'q'")
        if self.causal_cross and not self.cross_attention:
            raise ValueError("Caps.causal_cross=True needs cross_attention=True; declare causal_cross=False")
        if self.projected_tokens and not self.tensor:
            raise ValueError("Caps.projected_tokens=True needs tensor=True; declare projected_tokens=False")
        if self.incremental and not (self.causal and self.self_attention):
            raise ValueError("Caps.incremental=True needs causal=True and self_attention=True")


def _upcast(x: Any, dtype: torch.dtype) -> Any:
    """A tensor (or anything with ``.to(dtype)``: HOT's ``ProjectedTokens``), or a tuple/list of them (per-axis q,
    k), in ``dtype``; anything else unchanged."""
    if isinstance(x, (tuple, list)):
        return type(x)(_upcast(t, dtype) for t in x)
    return x.to(dtype) if hasattr(x, "to") else x


def _step_in_fp32(step: Callable[..., tuple[Tensor, State]]) -> Callable[..., tuple[Tensor, State]]:
    """``step(q, k, v, state)`` as :func:`_in_fp32`: the output in v's dtype, the state kept in fp32 (or wider)."""

    @functools.wraps(step)
    def wrapped(self, q: Tensor, k: Tensor, v: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        dt = torch.promote_types(v.dtype, torch.float32)
        with torch.autocast(device_type=v.device.type, enabled=False):
            y, new = step(self, q.to(dt), k.to(dt), v.to(dt), state)
        return y.to(v.dtype), new

    wrapped.fp32_region = True
    return wrapped


def _in_fp32(forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``forward(q, k, v, **kw)`` run with autocast off on q, k, v in promote(v.dtype, fp32); output in v's dtype."""

    @functools.wraps(forward)
    def wrapped(self, q, k, v: Tensor, *args, **kwargs) -> Tensor:
        dt = torch.promote_types(v.dtype, torch.float32)
        with torch.autocast(device_type=v.device.type, enabled=False):
            out = forward(self, _upcast(q, dt), _upcast(k, dt), v.to(dt), *args, **kwargs)
        return out.to(v.dtype)

    wrapped.fp32_region = True
    return wrapped


class AttentionBase(nn.Module):
    """Base class: ``forward(q, k, v, *, key_padding_mask=None, causal=False)``.

    A subclass declaring ``Caps(fp32=True)`` gets its ``forward`` run in (at least) fp32 here (``_in_fp32``);
    ``shared_qk`` is True on an instance whose keys must be its queries (entries with ``caps.shared_qk``).
    """

    caps: Caps = Caps()
    name: str = ""
    shared_qk: bool = False

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One token of incremental causal self-attention: q, k (B, H, 1, D), v (B, H, 1, Dv) of the new token and
        ``state`` returned by the previous step (None at the first token) -> (y (B, H, 1, Dv), new state), where y
        equals the last row of ``forward(q_1..t, k_1..t, v_1..t, causal=True)``. No padding: every step is a real
        token. Entries declaring ``caps.incremental`` define it (full: a key/value cache; linear: running sums;
        local: a rolling window)."""
        raise CapabilityError(f"attention {self.name!r} has no incremental decoding (caps.incremental=False); "
                              f"entries that do: {', '.join(n for n, c in _REGISTRY.items() if c.caps.incremental)}")

    @classmethod
    def key_slots(cls, options: Mapping[str, Any], length: int, real: int | None = None) -> float:
        """Key slots of a query's attention row when built with ``options``, at (padded) length ``length``; with
        ``real`` (the non-padding tokens), how many hold a real key, mean over the real queries. Default: every
        (real) key, as dense attention; entries that attend to fewer keys override it."""
        return length if real is None else real

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        wrapped = getattr(cls.forward, "fp32_region", False)
        if cls.caps.fp32 and not wrapped:
            cls.forward = _in_fp32(cls.forward)
        elif wrapped and not cls.caps.fp32:
            raise TypeError(f"{cls.__qualname__} declares fp32=False but inherits an fp32 forward; "
                            "declare fp32=True or define its own forward")
        if cls.caps.fp32 and cls.caps.incremental and not getattr(cls.step, "fp32_region", False):
            cls.step = _step_in_fp32(cls.step)


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
        _check_declarations(name, cls)
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _check_declarations(name: str, cls: type[AttentionBase]) -> None:
    """The Caps flags that mirror a signature agree with it (the one place signatures are read for them)."""
    init = accepted_options(cls)
    takes = {"needs_head_dim": "head_dim" in init, "needs_n_heads": "n_heads" in init, "fixed_len": "max_len" in init,
             "shared_qk": "shared_qk" in init,
             "query_padding_mask": "query_padding_mask" in inspect.signature(cls.forward).parameters,
             "incremental": cls.step is not AttentionBase.step}
    for cap, has in takes.items():
        if getattr(cls.caps, cap) != has:
            if cap == "incremental":
                found = f"it {'defines' if has else 'does not define'} a step method"
            else:
                where = "forward" if cap == "query_padding_mask" else "constructor"
                found = f"its {where} {'takes' if has else 'does not take'} the matching argument"
            raise TypeError(f"attention {name!r}: caps.{cap}={getattr(cls.caps, cap)} but {found}; declare {cap}={has}")


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


def patterns(cls: type[AttentionBase]) -> set[str]:
    """CAB's attention patterns ``cls`` supports (Zhang et al., 2023), derived from its Caps: "NS" noncausal self
    (self_attention), "CS" causal self (+ causal: output i equals the run on the prefix <= i), "NC" noncausal cross
    (cross_attention), "CC" causal cross (+ causal_cross: the memory is fixed and fully visible, the queries are
    processed causally). tests/test_cab_patterns.py checks every entry against its claim."""
    return patterns_of(asdict(cls.caps))


def with_sizes(name: str, sizes: Mapping[str, int] | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` plus the sizes entry ``name`` declares (``SIZES``), taken from ``sizes``; an option set to a
    value wins, one set to None (a yaml ``???``) is filled in place. A declared size found nowhere raises."""
    unknown = set(sizes or {}) - set(SIZES)
    if unknown:
        raise KeyError(f"unknown size {sorted(unknown)[0]!r}; known: {', '.join(SIZES)}")
    out = dict(options)
    for size, cap in SIZES.items():
        if getattr(get(name).caps, cap) and out.get(size) is None:
            if not sizes or size not in sizes:
                raise TypeError(f"attention {name!r} needs {size} at build time ({cap}); pass it in sizes")
            out[size] = sizes[size]
    return out


def build(name: str, sizes: Mapping[str, int] | None = None, **options) -> AttentionBase:
    """Build attention ``name`` from ``options`` and the sizes it declares (:func:`with_sizes`: ``sizes`` holds
    what the caller knows, e.g. ``{"head_dim": 64, "n_heads": 8, "max_len": 1024}``; sizes the entry does not
    need are ignored); unknown options raise with the accepted ones listed."""
    kwargs = with_sizes(name, sizes, options)
    check_kwargs(name, kwargs)
    return get(name)(**kwargs)


def accepted_options(cls: type[AttentionBase]) -> list[str]:
    """The constructor parameters of an attention class (what ``build`` accepts)."""
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def check_kwargs(name: str, kwargs: dict) -> None:
    """Raise if ``kwargs`` holds a key the constructor of attention ``name`` does not accept."""
    accepted = accepted_options(get(name))
    for key in kwargs:
        if key not in accepted:
            raise TypeError(
                f"attention {name!r} got unknown option {key!r}; accepted: {', '.join(accepted) or 'none'}"
            )


def caps_table() -> str:
    """Markdown table of every entry's capabilities and CAB patterns (README's registry table is this output)."""
    cols = [f.name for f in fields(Caps)]
    lines = ["| entry | " + " | ".join(cols) + " | patterns |", "|---|" + "---|" * (len(cols) + 1)]
    for name in available():
        caps = _REGISTRY[name].caps
        cells = [("yes" if v else "-") if isinstance(v, bool) else str(v) for v in (getattr(caps, c) for c in cols)]
        cells.append(" ".join(p for p in PATTERNS if p in patterns(_REGISTRY[name])))
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
