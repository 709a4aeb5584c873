"""The HOT forecaster's fast paths equal their slow references: pooling before projecting (ProjectedTokens), and
the whole model's loss and gradients against the reference paths on a fixed batch."""

from __future__ import annotations

import json

import pytest
import torch

from attnbench.attention.hot import HOTAttention, HOTLinearAttention, ProjectedTokens, axis_pool
from attnbench.layers.attention import MultiAxisAttention, set_fast_paths
from attnbench.layers.rope import apply_rope, rope_angles, rope_angles_reference
from attnbench.models.forecaster import PatchForecaster


def grid_mask(B: int, sizes: tuple[int, ...], real: tuple[int, ...]) -> torch.Tensor:
    """(B, *sizes) bool: the first real[i] positions of axis i are real (a product of per-axis masks)."""
    m = torch.ones(B, *sizes, dtype=torch.bool)
    for i, r in enumerate(real):
        m.narrow(1 + i, r, sizes[i] - r).fill_(False)
    return m


@pytest.mark.parametrize("how", ["sum", "mean"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_projected_tokens_pool_equals_pooling_the_projection(how, masked, bias):
    torch.manual_seed(0)
    B, sizes, E, H = 2, (3, 5, 4), 12, 3
    x = torch.randn(B, *sizes, E, dtype=torch.float64)
    w, b = torch.randn(E, E, dtype=torch.float64), torch.randn(E, dtype=torch.float64) if bias else None
    t = ProjectedTokens(x, w, b, H)
    full = t.full()  # (B, H, *axes, D)
    assert t.shape == full.shape == (B, H, *sizes, E // H) and t.dim() == full.dim()
    ref = (x @ w.T + (0 if b is None else b)).unflatten(-1, (H, E // H)).movedim(-2, 1)
    torch.testing.assert_close(full, ref)
    keep = grid_mask(B, sizes, (2, 5, 3)) if masked else None
    if masked:
        keep[1] = grid_mask(1, sizes, (3, 1, 4))[0]  # another per-axis pattern in the second example
    for axis in range(3):
        torch.testing.assert_close(axis_pool(t, axis, how, keep), axis_pool(full, axis, how, keep))


@pytest.mark.parametrize("attention", [{"name": "hot"}, {"name": "hot", "mode": "sum", "pool": "mean"},
                                       {"name": "hot_linear"}, {"name": "hot_linear", "feature_map": "elu"}])
def test_layer_pooling_before_projecting_equals_projecting_every_token(attention):
    torch.manual_seed(0)
    layer = MultiAxisAttention(32, 4, 2, attention, rope_axes=(1,), per_axis_qk=True).double()
    x = torch.randn(3, 5, 7, 32, dtype=torch.float64)
    mask = grid_mask(3, (5, 7), (5, 7))
    mask[1] = grid_mask(1, (5, 7), (4, 5))[0]
    assert type(layer.attn).caps.projected_tokens
    for kpm in (None, mask.flatten(1)):
        fast = layer(x, key_padding_mask=kpm)
        ref = set_fast_paths(layer, False)(x, key_padding_mask=kpm)  # the reference: project every token, then pool
        set_fast_paths(layer, True)
        torch.testing.assert_close(fast, ref)


def test_hot_accepts_projected_tokens_in_cross_attention_and_fp32_regions():
    torch.manual_seed(0)
    xq, xk = torch.randn(2, 3, 4, 8), torch.randn(2, 5, 6, 8)
    w, b = torch.randn(8, 8), torch.randn(8)
    v = torch.randn(2, 2, 5, 6, 4)
    for hot in (HOTAttention(), HOTLinearAttention(head_dim=4)):
        q, k = ProjectedTokens(xq, w, b, 2), ProjectedTokens(xk, w, b, 2)
        out = hot(q, k, v)
        assert out.shape == (2, 2, 3, 4, 4)
        torch.testing.assert_close(out, hot(q.full(), k.full(), v))


def forecaster_loss(m: PatchForecaster, x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    m.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same dropout masks
    loss = torch.nn.functional.mse_loss(m(x), y)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in m.parameters()]


@pytest.mark.parametrize("head", ["flatten", "mean"])
def test_forecaster_loss_and_gradients_equal_the_reference_paths(head):
    """The model=hot architecture (small sizes, fp32, dropout on): same loss and gradients on a fixed batch."""
    torch.manual_seed(0)
    m = PatchForecaster(seq_len=48, pred_len=24, attention={"name": "hot", "dropout": 0.1}, d_model=32, n_heads=4,
                        n_layers=2, d_mlp=64, dropout=0.1, head=head)
    x, y = torch.randn(4, 48, 7), torch.randn(4, 24, 7)
    keys = list(m.state_dict())
    loss, grads = forecaster_loss(m, x, y)
    set_fast_paths(m, False)
    ref_loss, ref_grads = forecaster_loss(m, x, y)
    assert list(m.state_dict()) == keys
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


def test_rope_tables_are_cached_and_equal_the_reference():
    for dtype in (torch.float32, torch.float64):
        ref = rope_angles_reference(24, 16, 10000.0, torch.device("cpu"), dtype)
        first = rope_angles(24, 16, 10000.0, torch.device("cpu"), dtype)
        again = rope_angles(24, 16, 10000, "cpu", dtype)
        assert again[0] is first[0] and again[1] is first[1]  # cached
        assert all(torch.equal(a, r) and a.dtype == dtype for a, r in zip(first, ref, strict=True))
    # a table first built under inference mode (validation) still serves a training step's autograd
    with torch.inference_mode():
        apply_rope(torch.randn(2, 13, 8), 1)
    x = torch.randn(2, 13, 8, requires_grad=True)
    apply_rope(x, 1).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def small_step_config(tmp_path, data_dir, *more: str):
    from attnbench.bench.harness import load_config

    small = ["model.net.d_model=16", "model.net.n_heads=2", "model.net.n_layers=1", "model.net.d_mlp=32",
             "data.batch_size=4", f"paths.data_dir={data_dir}", "data.verify=false", "data.download=false"]
    quoted = ",".join(f"'{o}'" for o in small)
    return load_config("hot_step", [f"overrides=[{quoted}]", "warmup=0", "repeats=2", f"out_dir={tmp_path}", *more])


@pytest.mark.slow  # five model variants stepped and timed, and two GEMM-rate probes: a benchmark run
def test_step_benchmark_times_both_paths_at_the_same_loss(tmp_path, synth_data_dir):
    from attnbench.bench import hot_step
    from attnbench.bench.harness import load_config

    df = hot_step.run(small_step_config(tmp_path, synth_data_dir), "test")
    assert list(df.variant) == ["reference", "fast", "fast_packed", "bf16", "bf16_packed"]
    assert (df.batch_size == 4).all()
    exact = df[df.variant.isin(["reference", "fast"])]
    assert (exact.loss_rel_diff < 1e-5).all() and (df.step_ms_median > 0).all()
    # bf16 autocast (trainer.precision=bf16-mixed) rounds the matmuls: the loss moves, but only at bfloat16's precision
    v = df.set_index("variant")
    bf16 = v.loc["bf16"]
    assert 1e-6 < bf16.loss_rel_diff < 2e-2 and bf16.gflop == pytest.approx(exact.gflop.iloc[1])
    # packed dropout draws other masks (the training loss moves by dropout noise, alike in float32 and bf16), but with
    # dropout off every variant computes the reference's loss: exactly (float32) or to bfloat16's rounding
    assert v.loc["fast_packed"].loss_rel_diff > 1e-5
    assert v.loc["fast_packed"].first_loss == pytest.approx(v.loc["bf16_packed"].first_loss, rel=2e-2)
    assert (v.loc[["fast", "fast_packed"]].eval_rel_diff < 1e-5).all()
    assert 0 < v.loc["bf16"].eval_rel_diff == v.loc["bf16_packed"].eval_rel_diff < 2e-2
    assert v.loc["fast_packed"].gflop == v.loc["fast"].gflop
    assert (df[["forward_cpu_ms", "backward_cpu_ms", "optimizer_cpu_ms"]] > 0).all().all()
    # the reference projects every token's queries and keys: more FLOPs than pooling first; the floor is their time
    # at the measured sgemm rate
    ref, fast = df.set_index("variant").loc["reference"], df.set_index("variant").loc["fast"]
    assert ref.gflop > fast.gflop > 0
    machine = json.loads((tmp_path / "machine.json").read_text())
    assert fast.floor_ms == pytest.approx(1e3 * fast.gflop / machine["sgemm_gflops"])
    assert bf16.floor_ms == pytest.approx(1e3 * bf16.gflop / machine["bf16_gemm_gflops"])
    assert machine["bf16_native"] in (True, False, None)
    assert (tmp_path / "hot_step.csv").is_file() and (tmp_path / "hot_step.md").is_file()
    with pytest.raises(Exception, match="repeats=0"):
        load_config("hot_step", ["repeats=0"])


@pytest.mark.slow
def test_step_benchmark_compiled_net_draws_the_same_dropout_masks(tmp_path, synth_data_dir):
    """compile=true: inductor's fallback_random keeps aten's dropout draws, so the compiled step's loss is the
    eager one's (without it the masks, and the loss, differ)."""
    from attnbench.bench import hot_step

    df = hot_step.run(small_step_config(tmp_path, synth_data_dir, "compile=true", "bf16=false", "packed=false"), "test")
    assert list(df.variant) == ["reference", "fast", "compiled"]
    assert (df.loss_rel_diff < 1e-5).all()
