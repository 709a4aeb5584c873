"""TimesNet (``models.timesnet``) against the formulas of its paper: the period detection against a plain DFT, the
1-D -> 2-D -> 1-D fold with padding, the merged Inception kernel against the mean of its convolutions, a TimesBlock
against a loop over the paper's equations, the parameter count against a closed form (and TSLib's count), shapes
for features M and S, the normalisation's affine equivariance, and an in-process ``model=timesnet`` run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnbench.models.timesnet import (
    InceptionBlock,
    TimesBlock,
    TimesNet,
    fft_periods,
    fold,
    inception_reference,
    merged_kernel,
    unfold,
)
from tests.conftest import QUICK, train_run


def naive_periods(x: np.ndarray, k: int) -> tuple[list[int], np.ndarray]:
    """The paper's eq. 1 by a plain DFT: A_f = |sum_t x_t e^{-2 pi i f t / T}| for f = 0..T//2, averaged over the
    channels (and the batch, for the pick), A_0 = 0; the top-k f give periods T // f; weights A_f per sample."""
    B, T, E = x.shape
    f = np.arange(T // 2 + 1)[:, None]
    t = np.arange(T)[None, :]
    basis = np.exp(-2j * np.pi * f * t / T)  # (T//2 + 1, T)
    amp = np.abs(np.einsum("ft,bte->bfe", basis, x))  # (B, T//2 + 1, E)
    score = amp.mean(axis=(0, 2))
    score[0] = 0
    top = np.argsort(-score, kind="stable")[:k]
    return [T // int(i) for i in top], amp.mean(-1)[:, top]


@pytest.mark.parametrize("T", [192, 60, 37])
def test_period_detection_equals_a_plain_dft(T):
    g = torch.Generator().manual_seed(T)
    t = torch.arange(T, dtype=torch.float64)[None, :, None]
    x = (torch.sin(2 * math.pi * t / 24) + 0.6 * torch.cos(2 * math.pi * t / 5)
         + 0.3 * torch.randn(3, T, 4, generator=g, dtype=torch.float64))
    periods, weights = fft_periods(x, 4)
    want_p, want_w = naive_periods(x.numpy(), 4)
    assert periods == want_p
    np.testing.assert_allclose(weights.numpy(), want_w, rtol=1e-10, atol=1e-10)
    if T == 192:
        assert periods[0] == 24  # the planted daily cycle comes first


def test_period_detection_refuses_more_periods_than_frequencies():
    with pytest.raises(ValueError, match="fewer than k=4 of the 4 frequencies"):
        fft_periods(torch.zeros(1, 8, 2), 4)  # all amplitudes 0: topk reaches the zeroed DC
    with pytest.raises(ValueError, match="top_k=49 must lie in"):
        TimesNet(48, 24, 48, 3, 4, top_k=49)


@pytest.mark.parametrize(("T", "period"), [(192, 24), (192, 7), (60, 60), (37, 5), (10, 1)])
def test_fold_and_unfold_round_trip_with_padding(T, period):
    x = torch.randn(2, T, 3)
    y = fold(x, period)
    rows = math.ceil(T / period)
    assert y.shape == (2, 3, rows, period)
    for r in range(rows):  # row r holds steps r*period .. r*period + period - 1, zeros past T
        for c in range(period):
            s = r * period + c
            assert torch.equal(y[:, :, r, c], x[:, s] if s < T else torch.zeros(2, 3))
    assert torch.equal(unfold(y, T), x)


def test_inception_block_equals_the_mean_of_its_convolutions():
    torch.manual_seed(0)
    block = InceptionBlock(3, 5, num_kernels=4).double()
    with torch.no_grad():
        for conv in block.kernels:
            conv.bias.normal_()
    x = torch.randn(2, 3, 6, 9, dtype=torch.float64, requires_grad=True)
    fast, ref = block(x), inception_reference(x, block.kernels)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    grads = [torch.autograd.grad(out, [x, *block.parameters()], g) for out in (fast, ref)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    w, b = merged_kernel([c.weight for c in block.kernels], [c.bias for c in block.kernels])
    assert w.shape == (5, 3, 7, 7) and b.shape == (5,)


def times_block_reference(block: TimesBlock, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1-5 as a loop: periods by the plain DFT; per period pad with zeros, reshape to (rows, period), the
    Inception pair by the mean of its convolutions, back to 1-D, truncate; softmax of the amplitudes; residual."""
    B, T, E = x.shape
    periods, amp = naive_periods(x.detach().numpy(), block.top_k)
    outs = []
    for p in periods:
        rows = -(-T // p)
        padded = torch.cat([x, x.new_zeros(B, rows * p - T, E)], dim=1)
        x2d = padded.reshape(B, rows, p, E).permute(0, 3, 1, 2)
        h = inception_reference(F.gelu(inception_reference(x2d, block.conv[0].kernels)), block.conv[2].kernels)
        outs.append(h.permute(0, 2, 3, 1).reshape(B, rows * p, E)[:, :T])
    w = torch.softmax(torch.from_numpy(amp), dim=1)  # (B, k)
    return sum(w[:, i, None, None] * o for i, o in enumerate(outs)) + x


def test_times_block_equals_a_loop_over_the_papers_equations():
    torch.manual_seed(1)
    block = TimesBlock(d_model=6, d_ff=8, top_k=3, num_kernels=3).double()
    x = torch.randn(4, 50, 6, dtype=torch.float64)
    torch.testing.assert_close(block(x), times_block_reference(block, x), rtol=1e-10, atol=1e-10)


def n_parameters(L: int, P: int, C: int, Fm: int, E: int, Dff: int, layers: int, K: int) -> int:
    """Embedding (token conv k3, no bias; calendar Linear, no bias), predict Linear L -> L + P, per block two
    Inception blocks (kernels (2i+1)^2, a bias each), one LayerNorm, the projection E -> C."""
    taps = sum((2 * i + 1) ** 2 for i in range(K))
    inception = lambda a, b: a * b * taps + K * b  # noqa: E731
    return (3 * C * E + Fm * E + L * (L + P) + (L + P) + layers * (inception(E, Dff) + inception(Dff, E))
            + 2 * E + E * C + C)


@pytest.mark.parametrize(("C", "E", "Dff", "official"),
                         [(7, 16, 32, 605_479), (1, 16, 32, 605_089), (8, 64, 64, None)])
def test_parameter_count_equals_the_closed_form_and_the_official(C, E, Dff, official):
    """605,479 / 605,089: TSLib's TimesNet at its ETTh1 script's sizes, features M and S
    (scripts/official/compare_timesnet.py)."""
    net = TimesNet(96, 48, 96, C, 4, d_model=E, d_ff=Dff)
    n = sum(p.numel() for p in net.parameters())
    assert n == n_parameters(96, 96, C, 4, E, Dff, 2, 6)
    if official is not None:
        assert n == official


@pytest.mark.parametrize("C", [7, 1])  # features M (all variables), S (the target alone)
def test_shapes_and_the_normalisation_are_affine_equivariant(C):
    torch.manual_seed(2)
    net = TimesNet(24, 12, 8, C, 4, d_model=8, d_ff=8, top_k=3, num_kernels=2, dropout=0.0).double().eval()
    x, mark = torch.randn(3, 24, C, dtype=torch.float64), torch.rand(3, 24, 4, dtype=torch.float64) - 0.5
    y = net(x, mark, torch.zeros(3, 20, 4, dtype=torch.float64))
    assert y.shape == (3, 8, C)
    scale, shift = torch.rand(1, 1, C, dtype=torch.float64) + 0.5, torch.randn(1, 1, C, dtype=torch.float64)
    # series normalised by their own mean and std: an affine change of a variable moves its forecast alike (up
    # to the 1e-5 added to the variance)
    torch.testing.assert_close(net(scale * x + shift, mark), scale * y + shift, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(net(x, mark + 0.3), y)  # the calendar is read
    with pytest.raises(ValueError, match="expected"):
        net(x[:, :20], mark[:, :20])
    with pytest.raises(ValueError, match="n_time_features"):
        net(x, mark[..., :3])


def test_model_timesnet_trains_in_process(tmp_path, synth_data_dir):
    """python train.py model=timesnet data=ett debug=fast (small sizes; FAST's transformer keys are not TimesNet's)."""
    res = train_run([*QUICK, "model=timesnet", "data=ett", f"paths.data_dir={synth_data_dir}", "model.net.d_model=8",
                     "model.net.d_ff=8", "model.net.num_kernels=2", "data.batch_size=8"], tmp_path)
    assert res["status"] == "ok", res.get("error")
    assert math.isfinite(res["metrics"]["test/mse"]) and math.isfinite(res["metrics"]["val/mse"])
