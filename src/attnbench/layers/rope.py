"""Rotary position embedding (Su et al., 2021) along one axis of a tensor."""

from __future__ import annotations

import torch
from torch import Tensor

# (n, dim, base, device, dtype) -> (cos, sin): a layer asks for the same few tables at every call
_TABLES: dict[tuple, tuple[Tensor, Tensor]] = {}
_MAX_TABLES = 64


def rope_angles_reference(n: int, dim: int, base: float, device: torch.device, dtype: torch.dtype
                          ) -> tuple[Tensor, Tensor]:
    """cos, sin tables (n, dim/2) for positions 0..n-1, angles in float32 (as the official codes), then ``dtype``."""
    inv = base ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)  # (dim/2,)
    ang = torch.arange(n, device=device, dtype=torch.float32)[:, None] * inv[None]  # (n, dim/2)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rope_angles(n: int, dim: int, base: float, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """:func:`rope_angles_reference`, cached per arguments (not while torch.compile traces: fake tensors)."""
    if torch.compiler.is_compiling():
        return rope_angles_reference(n, dim, base, device, dtype)
    key = (n, dim, float(base), torch.device(device), dtype)
    tables = _TABLES.get(key)
    if tables is None:
        with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable by autograd later
            tables = rope_angles_reference(n, dim, base, device, dtype)
        if len(_TABLES) < _MAX_TABLES:
            _TABLES[key] = tables
    return tables


def apply_rope(x: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """Rotate feature pairs of x (..., D) by position along dimension ``dim`` (positions 0..x.shape[dim]-1)."""
    D = x.shape[-1]
    if D % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {D}")
    dim = dim % x.dim()
    if dim == x.dim() - 1:
        raise ValueError("RoPE position dimension cannot be the feature dimension")
    xt = x.movedim(dim, -2)  # (..., N, D)
    cos, sin = rope_angles(xt.shape[-2], D, base, x.device, x.dtype)  # (N, D/2)
    x1, x2 = xt[..., 0::2], xt[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)  # (..., N, D)
    return out.movedim(-2, dim)
