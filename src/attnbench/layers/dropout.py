"""Dropout whose masks are cut from packed random bits: 4x fewer generator draws than ``nn.Dropout`` on a CPU.

PyTorch's CPU dropout draws one double from its Mersenne Twister per element (``bernoulli_``, one thread): about
6 ns an element, 4 ms per dropout call in the HOT forecaster's training step (10 of them: 13 % of its float32 and
21 % of its bf16-mixed step on 2 threads, ``make bench-step``). Here one 64-bit draw gives four 16-bit uniforms, each
compared with a threshold, so a mask costs about a quarter of the draws: ~1 ms a call there.

What changes: the drop probability is rounded to a multiple of 2^-16 (``effective_p``; 0.1 -> 0.1000061) and the
survivors are scaled by ``1 / (1 - effective_p)``, so the layer stays unbiased; the masks are a different draw
from the same seeded generator (a run is reproducible by its seed, but its masks are not those of
``nn.Dropout``). Outputs in eval mode and the function under any given mask are ``nn.Dropout``'s. On a CUDA
tensor, whose dropout is a fast Philox kernel already, it is ``F.dropout``. Only ``nn.Dropout`` modules are swapped:
dropout that a layer calls as a function (e.g. on attention probabilities inside SDPA) keeps PyTorch's draws.

Opt-in per run: ``dropout_rng=packed`` (``conf/train.yaml``) swaps every ``nn.Dropout`` of the model for
:class:`PackedDropout` (:func:`use_packed_dropout`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = 1 << 16  # uniforms per 16-bit lane


def effective_p(p: float) -> float:
    """The drop probability the packed masks realise: ``p`` rounded to a multiple of 2^-16."""
    return round(p * LEVELS) / LEVELS


def packed_keep_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype = torch.bool,
                     device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
    """A mask of ``shape`` (1 = kept, 0 = dropped, in ``dtype``), each entry kept with probability
    ``1 - effective_p(p)``, independently.

    ceil(n / 4) uniform 64-bit integers from the generator, viewed as n 16-bit lanes (uniform on [-2^15, 2^15)); an
    entry is dropped where its lane is below ``-2^15 + round(p 2^16)``."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(1 << 63), None, generator=generator)  # all 64 bits uniform
    lanes = words.view(torch.int16)[:n]  # (n,) uniform on [-32768, 32767]
    keep = torch.empty(n, dtype=dtype, device=device)
    torch.ge(lanes, -(LEVELS // 2) + round(p * LEVELS), out=keep)  # straight into dtype: no bool round trip
    return keep.view(shape)


def packed_dropout(x: Tensor, p: float, training: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """``F.dropout(x, p, training)`` with masks from :func:`packed_keep_mask` (CPU tensors; CUDA ones go to
    ``F.dropout``)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or effective_p(p) == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training)
    q = effective_p(p)
    if q == 1.0:
        return x * 0.0
    # the mask in x's dtype: multiplying by a bool mask is ~10x slower on a CPU (the price: x's itemsize an element
    # saved for the backward, where native_dropout keeps one byte); autograd saves only the mask
    return torch.mul(x, packed_keep_mask(x.shape, p, x.dtype, x.device, generator)).mul_(1.0 / (1.0 - q))


class PackedDropout(nn.Dropout):
    """``nn.Dropout`` drawing its masks with :func:`packed_dropout` (same ``p``, same state dict: none)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            raise ValueError("PackedDropout has no in-place form; use nn.Dropout(inplace=True) or inplace=False")
        return packed_dropout(x, self.p, self.training)


def use_packed_dropout(model: nn.Module) -> int:
    """Swap every ``nn.Dropout`` submodule of ``model`` (the exact class, not its subclasses) for a
    :class:`PackedDropout` of the same ``p``, in place; returns how many were swapped."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and not child.inplace:
                new = PackedDropout(child.p)
                new.train(child.training)
                setattr(parent, name, new)
                swapped += 1
    return swapped
