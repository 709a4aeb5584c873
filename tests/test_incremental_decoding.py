"""Incremental decoding with a state cache (CAB's "self-causal-incremental" check; digest lra_cab.md B.1): stepping
token by token equals the full causal pass, for every entry declaring ``caps.incremental``, at the entry, the
multi-head layer and the sequence layers; causal cross steps against a fixed memory equal the full cross pass.
Entries without the capability refuse with CapabilityError."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from attnbench import attention
from attnbench.attention.registry import AttentionBase, CapabilityError, Caps, accepted_options, register
from attnbench.layers.attention import MultiAxisAttention
from attnbench.layers.seqblock import SeqDecoderLayer, SeqEncoderLayer

NAMES = attention.available()
INCREMENTAL = [n for n in NAMES if attention.get(n).caps.incremental]
B, H, T, S, D, DV, E, NH = 2, 2, 20, 9, 8, 6, 16, 2
# Constructor options by parameter name: a window narrower than T so local's cache rolls; no padding-free
# sequence entry needs more (shared_qk: separate projections).
OPTIONS = {"head_dim": D, "n_heads": H, "max_len": 32, "k": 4, "n_landmarks": 4, "window": 3, "n_features": 16,
           "shared_qk": False, "height": 2}


def opts(name: str, drop: tuple[str, ...] = ()) -> dict:
    return {p: OPTIONS[p] for p in accepted_options(attention.get(name)) if p in OPTIONS and p not in drop}


def entry(name: str) -> AttentionBase:
    torch.manual_seed(0)
    return attention.build(name, **opts(name)).double().eval()


def steps(att, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Decode q, k, v (B, H, T, D) one token at a time -> (B, H, T, Dv)."""
    state, ys = None, []
    for t in range(q.shape[2]):
        y, state = att.step(q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], state)
        ys.append(y)
    return torch.cat(ys, dim=2)


def rand(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_some_entries_are_incremental():
    assert {"full", "linear", "local", "performer", "super"} <= set(INCREMENTAL)


@pytest.mark.parametrize("name", INCREMENTAL)
def test_entry_steps_equal_the_causal_pass(name):
    att = entry(name)
    q, k, v = rand(B, H, T, D, seed=1), rand(B, H, T, D, seed=2), rand(B, H, T, DV, seed=3)
    k = k * torch.linspace(0.3, 3.0, T, dtype=torch.float64)[:, None]  # growing keys: Performer's running max moves
    torch.testing.assert_close(steps(att, q, k, v), att(q, k, v, causal=True))


@pytest.mark.parametrize("name", INCREMENTAL)
def test_entry_step_under_autocast_returns_the_input_dtype(name):
    att = attention.build(name, **opts(name)).eval()
    q, k, v = (rand(B, H, 1, d, seed=s).to(torch.bfloat16) for s, d in ((1, D), (2, D), (3, DV)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = att.step(q, k, v)
    assert y.dtype == torch.bfloat16 and y.shape == (B, H, 1, DV)
    if attention.get(name).caps.fp32:  # running sums kept in fp32
        assert all(s.dtype == torch.float32 for s in state.values())


@pytest.mark.parametrize("name", [n for n in NAMES if n not in INCREMENTAL])
def test_entries_without_the_capability_refuse_to_step(name):
    q = torch.randn(B, H, 1, D)
    with pytest.raises(CapabilityError, match=f"attention {name!r} has no incremental decoding "
                                              r"\(caps.incremental=False\); entries that do: .*full"):
        attention.build(name, **opts(name)).step(q, q, q[..., :DV])


def layer(name: str) -> MultiAxisAttention:
    torch.manual_seed(0)
    return MultiAxisAttention(E, NH, 1, {"name": name, **opts(name, ("head_dim", "n_heads"))}).double().eval()


def layer_steps(m, x: Tensor, **kw) -> Tensor:
    """x (B, T, E) through m.step one token at a time -> (B, T, E)."""
    cache, ys = None, []
    for t in range(x.shape[1]):
        y, cache = m.step(x[:, t:t + 1], cache, **kw)
        ys.append(y)
    return torch.cat(ys, dim=1)


@pytest.mark.parametrize("name", NAMES)
def test_layer_self_and_cross_steps_equal_the_full_pass(name):
    caps = attention.get(name).caps
    m = layer(name)
    x, mem = rand(B, T, E, seed=4), rand(B, S, E, seed=5)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[0, 6:] = False
    if caps.incremental:
        torch.testing.assert_close(layer_steps(m, x), m(x, causal=True))
    else:
        with pytest.raises(CapabilityError, match=f"{name!r} does not support incremental=True"):
            m.step(x[:, :1])
    cross = {"context": mem, "key_padding_mask": mask}
    if caps.causal_cross:
        torch.testing.assert_close(layer_steps(m, x, **cross), m(x, **cross))
    else:
        with pytest.raises(CapabilityError, match=f"{name!r} does not support (cross_attention|causal_cross)=True"):
            m.step(x[:, :1], **cross)


def test_layer_step_refusals():
    m = layer("full")
    with pytest.raises(ValueError, match=r"one token x_t \(B, 1, E\)"):
        m.step(torch.zeros(B, 2, E, dtype=torch.float64))
    with pytest.raises(ValueError, match="key_padding_mask is the memory's"):
        m.step(torch.zeros(B, 1, E, dtype=torch.float64), key_padding_mask=torch.ones(B, 1, dtype=torch.bool))
    rope = MultiAxisAttention(E, NH, 1, {"name": "full"}, rope_axes=(0,))
    with pytest.raises(ValueError, match="no rope_axes"):
        rope.step(torch.zeros(B, 1, E))


@pytest.mark.parametrize("name", INCREMENTAL)
def test_sequence_layers_step_equal_the_causal_pass(name):
    cross = name if attention.get(name).caps.causal_cross else "full"
    torch.manual_seed(0)
    enc = SeqEncoderLayer(E, NH, 32, {"name": name, **opts(name, ("head_dim", "n_heads"))}).double().eval()
    dec = SeqDecoderLayer(E, NH, 32, {"name": name, **opts(name, ("head_dim", "n_heads"))},
                          {"name": cross, **opts(cross, ("head_dim", "n_heads"))}, norm="post").double().eval()
    x, mem = rand(B, T, E, seed=6), rand(B, S, E, seed=7)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, 4:] = False
    torch.testing.assert_close(layer_steps(enc, x), enc(x, causal=True))
    ys, cache = [], None
    for t in range(T):
        y, cache = dec.step(x[:, t:t + 1], mem, cache, memory_padding_mask=mask)
        ys.append(y)
    full = dec(x, mem, memory_padding_mask=mask, causal=True, causal_cross=True)
    torch.testing.assert_close(torch.cat(ys, dim=1), full)


def test_declarations_must_match_the_step_method():
    with pytest.raises(ValueError, match="incremental=True needs causal=True"):
        Caps(causal=False, incremental=True)

    class NoStep(AttentionBase):
        caps = Caps(incremental=True)

    class Undeclared(AttentionBase):
        def step(self, q, k, v, state=None):
            return v, {}

    with pytest.raises(TypeError, match="caps.incremental=True but it does not define a step method"):
        register("no_step_test")(NoStep)
    with pytest.raises(TypeError, match="caps.incremental=False but it defines a step method"):
        register("undeclared_step_test")(Undeclared)
    assert "no_step_test" not in NAMES and "no_step_test" not in attention.available()
