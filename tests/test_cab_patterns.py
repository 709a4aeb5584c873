"""CAB's four attention patterns (Zhang et al., ICML 2023; digest lra_cab.md B.1) over every registry entry.

CAB's checks (``scripts/attention_pattern/test_available_pattern_for_attention.py``), at its sizes (d 512, 8 heads,
batch 4, 100 memory tokens, 50 decoder tokens), through the multi-head layer:

- NS / NC (noncausal self / cross): the layer runs and gives (B, L, E).
- CS (causal self): for every step i in [L/2, L), output i equals the run on the prefix <= i.
- CC (causal cross): the same with a fixed key/value memory (the decoder's queries processed causally).
- CS incremental: decoding token by token with the layer's state cache equals the causal pass.

"Equals" is CAB's tolerance, sum |delta| <= 1e-4 over (batch, d) at one step, here in float64 so that it measures
the algorithm and not fp32 rounding. An entry that does not declare a pattern (``registry.patterns``) must refuse
it with CapabilityError, through the layer and through ``require``. Tensor entries (HOT) run as one-axis tensors.
"""

from __future__ import annotations

import pytest
import torch

from attnbench import attention
from attnbench.attention.registry import PATTERNS, CapabilityError, accepted_options, patterns, require
from attnbench.layers.attention import MultiAxisAttention

NAMES = attention.available()
B, E, NH, SRC, TGT = 4, 512, 8, 100, 50  # CAB's test sizes
TOL = 1e-4  # CAB: sum |delta| over (batch, d) at one step

# Constructor options by parameter name (never by entry): CAB's library defaults where they exist (window 15,
# 16 landmarks / features), small buckets, clusters and trees so the approximations are exercised at 50 tokens.
# shared_qk: separate q/k projections (cross patterns need them); SELF_CASES adds the shared one where declared.
OPTIONS = {"max_len": SRC, "k": 16, "n_landmarks": 16, "window": 15, "n_features": 16, "shared_qk": False,
           "height": 2, "n_buckets": 8, "chunk_size": 8, "cluster_size": 8}
SELF_CASES = [pytest.param(n, {}, id=n) for n in NAMES] + [
    pytest.param(n, {"shared_qk": True}, id=f"{n}-shared_qk") for n in NAMES if attention.get(n).caps.shared_qk]


def layer(name: str, **over) -> MultiAxisAttention:
    """The multi-head layer around entry ``name`` (float64, eval), options from OPTIONS and ``over``."""
    opts = {p: OPTIONS[p] for p in accepted_options(attention.get(name)) if p in OPTIONS} | over
    torch.manual_seed(0)
    return MultiAxisAttention(E, NH, 1, {"name": name, **opts}).double().eval()


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder tokens (B, TGT, E) and a memory (B, SRC, E)."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(B, TGT, E, generator=g, dtype=torch.float64),
            torch.randn(B, SRC, E, generator=g, dtype=torch.float64))


def prefix_gaps(m: MultiAxisAttention, x: torch.Tensor, causal: bool = True, **kw) -> list[float]:
    """sum |out_i - out_i(prefix <= i)| for i in [TGT/2, TGT): CAB's causal checks."""
    with torch.no_grad():
        out = m(x, causal=causal, **kw)
        return [(out[:, i] - m(x[:, :i + 1], causal=causal, **kw)[:, i]).abs().sum().item()
                for i in range(TGT // 2, TGT)]


def refuses(m: MultiAxisAttention, cap: str, **kw) -> None:
    """The layer raises CapabilityError naming the capability and the entry."""
    with pytest.raises(CapabilityError, match=f"attention {m.attn.name!r} does not support {cap}=True"):
        m(inputs()[0], **kw)


@pytest.mark.parametrize(("name", "over"), SELF_CASES)
def test_noncausal_self(name, over):
    m = layer(name, **over)
    if "NS" not in patterns(type(m.attn)):
        return refuses(m, "self_attention")
    x, _ = inputs()
    y = m(x)
    assert y.shape == (B, TGT, E) and torch.isfinite(y).all()


@pytest.mark.parametrize(("name", "over"), SELF_CASES)
def test_causal_self_step_i_equals_the_prefix_run(name, over):
    m = layer(name, **over)
    if "CS" not in patterns(type(m.attn)):
        return refuses(m, "causal", causal=True)
    gaps = prefix_gaps(m, inputs()[0])
    assert max(gaps) <= TOL, f"{name} claims CS; sum |delta| per step: {gaps}"


@pytest.mark.parametrize("name", NAMES)
def test_causal_self_incremental_equals_the_full_pass(name):
    """CAB's "self-causal-incremental": token by token through the layer's state cache (``MultiAxisAttention.step``)
    equals the causal pass at every step; entries without ``caps.incremental`` refuse."""
    m = layer(name)
    x, _ = inputs()
    if not attention.get(name).caps.incremental:
        with pytest.raises(CapabilityError, match=f"attention {name!r} does not support incremental=True"):
            m.step(x[:, :1])
        return
    with torch.no_grad():
        out, cache = m(x, causal=True), None
        for i in range(TGT):
            y, cache = m.step(x[:, i:i + 1], cache)
            gap = (y[:, 0] - out[:, i]).abs().sum().item()
            assert gap <= TOL, f"{name} step {i}: sum |delta| = {gap}"


@pytest.mark.parametrize("name", NAMES)
def test_noncausal_cross(name):
    m = layer(name)
    x, mem = inputs()
    if "NC" not in patterns(type(m.attn)):
        return refuses(m, "cross_attention", context=mem)
    y = m(x, context=mem)
    assert y.shape == (B, TGT, E) and torch.isfinite(y).all()
    assert not torch.allclose(m(x, context=mem.flip(1) * 2), y), "the memory matters"


@pytest.mark.parametrize("name", NAMES)
def test_causal_cross_step_i_equals_the_query_prefix_run(name):
    m = layer(name)
    x, mem = inputs()
    if "CC" not in patterns(type(m.attn)):
        cap = "cross_attention" if "NC" not in patterns(type(m.attn)) else "causal_cross"
        return refuses(m, cap, context=mem, causal=True)
    # CC leaves the memory fully visible: the same output as the noncausal cross pattern
    torch.testing.assert_close(m(x, context=mem, causal=True), m(x, context=mem))
    gaps = prefix_gaps(m, x, context=mem)
    assert max(gaps) <= TOL, f"{name} claims CC; sum |delta| per step: {gaps}"


@pytest.mark.parametrize("name", NAMES)
def test_require_refuses_each_undeclared_pattern(name):
    cls = attention.get(name)
    for pattern, flags in PATTERNS.items():
        if pattern in patterns(cls):
            require(cls, **dict.fromkeys(flags, True))
        else:
            with pytest.raises(CapabilityError, match=f"attention {name!r} does not support"):
                require(cls, **dict.fromkeys(flags, True))


def test_pattern_declarations_are_consistent():
    """CC needs cross attention (Caps refuses otherwise); full and linear attention support all four patterns,
    as in CAB's library (vanilla and ABC/Performer-style kernels); Nystrom's query landmarks rule out CC."""
    with pytest.raises(ValueError, match="causal_cross=True needs cross_attention=True"):
        attention.Caps(cross_attention=False)
    assert patterns(attention.get("full")) == patterns(attention.get("linear")) == {"NS", "CS", "NC", "CC"}
    assert patterns(attention.get("local")) == {"NS", "CS"}  # CAB's library: local NS/CS
    assert patterns(attention.get("nystrom")) == {"NS", "NC"}


def test_a_query_mixing_entry_fails_the_causal_cross_check():
    """The CC check can fail: Nystrom's landmarks are means over all queries, so output i depends on later
    queries (why nystrom declares causal_cross=False)."""
    x, mem = inputs()
    assert max(prefix_gaps(layer("nystrom"), x, causal=False, context=mem)) > 1e-2  # the noncausal cross pass


def test_treeformer_capacity_fails_the_causal_check_and_is_refused():
    """Found by the CS check: with capacity_factor the slots per leaf grow with the length, so output i of the full
    pass differs from the prefix run (sum |delta| ~ 2e2 at capacity 1); causal=True now refuses it."""
    m = layer("treeformer_tf", capacity_factor=1.0)
    x, mem = inputs()
    with pytest.raises(ValueError, match="causal=True with capacity_factor=1.0 is refused"):
        m(x, causal=True)
    for memory in (mem, mem[:, :30]):  # CC holds (query slots depend on the memory), also with fewer keys than queries
        assert max(prefix_gaps(m, x, causal=False, context=memory)) <= TOL
