"""The FLOP formula of every registry entry against FlopCounterMode's matmul count, and its scaling."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from attnbench.attention import available, build, get
from attnbench.attention.flops import FORMULAS, Flops, attention_flops, formula_for, occupancy
from attnbench.attention.registry import SIZES

B, H, D = 2, 2, 8


def required_options(name: str) -> dict:
    """Small values for constructor options without a default (not the sizes the caller fills), by type."""
    out = {}
    for p in inspect.signature(get(name).__init__).parameters.values():
        if p.name == "self" or p.name in SIZES or p.default is not inspect.Parameter.empty:
            continue
        out[p.name] = {"bool": True, "int": 8}[str(p.annotation)]
    return out


def cases(name: str) -> list[tuple[tuple[int, ...], tuple[int, ...], bool]]:
    """(q axes, k axes, causal) the entry supports: self, cross (S != L), causal self and cross. Lengths not
    multiples of the entries' chunks / clusters / landmarks (100 > Reformer's 64-chunk, SMYRF's 32-cluster,
    Nyström's 64)."""
    caps = get(name).caps
    if caps.tensor:
        out = [((6, 5), (6, 5), False)]
        return out + ([((6, 5), (4, 7), False)] if caps.cross_attention else [])
    out = [((100,), (100,), False)]
    if caps.cross_attention:
        out.append(((100,), (60,), False))
    if caps.causal:
        out.append(((100,), (100,), True))
    if caps.causal and caps.cross_attention:  # causal cross: full attention's alignment, both ways round
        out += [((100,), (60,), True), ((60,), (100,), True)]
    return out


def counted(module, q, k, v, causal: bool) -> int:
    """Matmul FLOPs of one forward call as FlopCounterMode counts them (SDPA through its MATH backend)."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        module(q, q if module.shared_qk else k, v, causal=causal)
    return fc.get_total_flops()


def test_every_entry_has_a_formula():
    assert set(available()) <= set(FORMULAS)
    with pytest.raises(KeyError, match="no FLOP formula"):
        formula_for("not_an_entry")


@pytest.mark.parametrize("name", available())
def test_matmul_flops_equal_flop_counter(name):
    torch.manual_seed(0)
    for q_axes, k_axes, causal in cases(name):
        S = math.prod(k_axes)
        module = build(name, {"head_dim": D, "n_heads": H, "max_len": S}, **required_options(name)).eval()
        q = torch.randn(B, H, *q_axes, D)
        k, v = torch.randn(B, H, *k_axes, D), torch.randn(B, H, *k_axes, D)
        occ = occupancy(module, q, q if module.shared_qk else k, causal=causal)
        f = attention_flops(module, B=B, H=H, q_axes=q_axes, k_axes=k_axes, D=D, causal=causal, **occ)
        assert f.matmul == counted(module, q, k, v, causal), (name, q_axes, k_axes, causal, occ)
        assert f.matmul > 0 and f.other > 0


def test_measured_occupancy_is_used_and_balanced_is_the_default():
    """A data-dependent entry counted at balanced leaves differs from its measured count on skewed routing, and
    equals it where the routing is balanced (one leaf: every token)."""
    m = build("treeformer_tf", {"head_dim": D, "n_heads": 1}, height=2).eval()
    q = torch.randn(1, 1, 64, D)
    with torch.no_grad():
        m.bias.fill_(100.0)  # every token goes left at every node: one leaf of 4 holds all 64
    occ = occupancy(m, q, q)
    assert occ == {"pairs": 4, "rows": 1}  # 2 x 2 tiles of 32 in one leaf
    balanced = attention_flops(m, B=1, H=1, q_axes=64, D=D)  # 4 leaves of 16: a tile holds 2 leaves, 2 pairs
    skewed = attention_flops(m, B=1, H=1, q_axes=64, D=D, **occ)
    assert skewed.matmul - balanced.matmul == 2 * (4 - 2) * 32 * 32 * 2 * D
    assert skewed.matmul == counted(m, q, q, q, False)


@pytest.mark.parametrize("name", available())
def test_scaling_with_length(name):
    """Doubling every axis multiplies the total by about 2^power (full ~ L^2, linear ~ L, HOT on n x n ~ n^3)."""
    caps, power = get(name).caps, FORMULAS[name].power
    n, axes = (64, 2) if caps.tensor else (4096, 1)
    totals = []
    for side in (n, 2 * n):
        module = build(name, {"head_dim": 64, "n_heads": 8, "max_len": side**axes}, **required_options(name))
        totals.append(attention_flops(module, B=1, H=8, q_axes=(side,) * axes, D=64).total)
    assert math.log2(totals[1] / totals[0]) == pytest.approx(power, abs=0.2)


def test_full_attention_numbers():
    """4 L S D matmul FLOPs (q k^T and A v), 6 L S other (scale, softmax) per head at B 1."""
    f = attention_flops(build("full"), B=1, H=1, q_axes=512, D=64)
    assert (f.matmul, f.other) == (4 * 512 * 512 * 64, 6 * 512 * 512)


def test_recorder_sums_the_largest_call_of_each_layer_per_example():
    """A model's attention FLOPs per example: every entry's largest call (padding-free length 40 here, not the
    later shorter batch), at batch 1, summed over layers; tensor entries with their axes."""
    from attnbench.attention.flops import FlopRecorder
    from attnbench.layers.attention import MultiAxisAttention
    from attnbench.layers.seqblock import SeqEncoderLayer

    torch.manual_seed(0)
    layers = [SeqEncoderLayer(32, 4, 64, {"name": n, **({"height": 2} if n == "treeformer_tf" else {})})
              for n in ("full", "treeformer_tf")]
    model = torch.nn.Sequential(*layers).eval()
    rec = FlopRecorder(model)
    with torch.no_grad():
        model(torch.randn(3, 40, 32))
        model(torch.randn(2, 20, 32))
    want = sum((attention_flops(lay.attn.attn, B=1, H=4, q_axes=40, D=8) for lay in layers), start=Flops(0, 0))
    got = rec.summary()
    assert got["attention_gflops"] == pytest.approx(want.total / 1e9)
    assert got["attention_gflops_matmul"] == pytest.approx(want.matmul / 1e9)
    assert got["attention_gflops_measured"] > 0  # treeformer_tf measured its leaves on the eval calls
    rec.remove()
    model(torch.randn(1, 80, 32))
    assert rec.summary()["attention_gflops"] == got["attention_gflops"]  # hooks removed: nothing recorded

    hot = MultiAxisAttention(32, 4, 2, {"name": "hot"}, per_axis_qk=True)
    rec = FlopRecorder(hot)
    hot(torch.randn(2, 6, 5, 32))
    f = attention_flops(hot.attn, B=1, H=4, q_axes=(6, 5), D=8)
    assert rec.summary()["attention_gflops"] == pytest.approx(f.total / 1e9)
    assert FlopRecorder(torch.nn.Linear(2, 2)).summary() == {}


def test_recorder_counts_the_latest_state_and_names_entries_without_a_formula(monkeypatch, caplog):
    """Bootstrapping changes Treeformer's active height: the latest call counts. An entry without a formula is
    left out with a warning, never a crash of the run."""
    from attnbench.attention.flops import FlopRecorder
    from attnbench.layers.seqblock import SeqEncoderLayer

    tree = SeqEncoderLayer(32, 4, 64, {"name": "treeformer_tc", "height": 3})
    full = SeqEncoderLayer(32, 4, 64, {"name": "full"})
    rec = FlopRecorder(torch.nn.Sequential(tree, full))
    monkeypatch.delitem(FORMULAS, "full")
    x = torch.randn(1, 48, 32)
    for h in (1, 3):
        tree.attn.attn.set_active_height(h)
        tree(x)
        full(x)
    got = rec.summary()
    assert got["attention_gflops"] == pytest.approx(attention_flops(tree.attn.attn, B=1, H=4, q_axes=48, D=8).total
                                                    / 1e9)
    tree.attn.attn.set_active_height(1)
    assert got["attention_gflops"] > attention_flops(tree.attn.attn, B=1, H=4, q_axes=48, D=8).total / 1e9
    assert got["attention_flops_missing"] == 1 and "no formula for full" in caplog.text
