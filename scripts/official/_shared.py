"""What the side-by-side scripts share: seeded float64 draws, fixed-output projections for HF's attention modules
and the import of CAB's ``efficient_attention`` package. A script runs as
``python scripts/official/compare_<name>.py``, so this folder is on its path."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn


def rand(*shape: int, seed: int) -> Tensor:
    """Seeded float64 normal draws."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def import_cab(checkout: Path) -> ModuleType:
    """CAB's ``efficient_attention`` package from the checkout; ``opt_einsum`` / ``einops`` (imported by its S4D
    module only) are stubbed for the import when they are not installed."""
    sys.path.insert(0, str(checkout / "efficient-attention"))
    stubs = [m for m in ("opt_einsum", "einops") if importlib.util.find_spec(m) is None]
    for m in stubs:
        sys.modules[m] = stub = types.ModuleType(m)
        stub.__getattr__ = lambda attr, m=m: f"{m}.{attr} (stubbed)"  # any name S4D imports at module level
    try:
        return importlib.import_module("efficient_attention")
    finally:
        for m in stubs:
            del sys.modules[m]


class Given(nn.Module):
    """A projection that returns a fixed tensor (a copy: HF scales queries in place)."""

    def __init__(self, t: Tensor) -> None:
        super().__init__()
        self.t = t

    def forward(self, x: Tensor) -> Tensor:
        return self.t.clone()


class Same(nn.Module):
    """A projection that returns its input (a copy)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.clone()
