"""What the side-by-side scripts share: their command line, seeded float64 draws, the printed ``max |ours - official|``
lines, fixed-output projections for HF's attention modules and the imports of HF transformers' and CAB's official
modules. A script runs as ``python scripts/official/compare_<name>.py``, so this folder is on its path."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

HF_CHECKOUT = "a checkout of huggingface/transformers (default: the installed transformers package)"
CAB_CLONE = "https://github.com/Shark-NLP/CAB /tmp/CAB"


def parser(doc: str, official_help: str, tol: float, tol_help: str | None = None,
           required: bool = True) -> argparse.ArgumentParser:
    """The shared command line: ``--official`` (the checkout) and ``--tol`` (the largest accepted difference)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=required, default=None, help=official_help)
    ap.add_argument("--tol", type=float, default=tol,
                    help=tol_help or f"largest accepted difference (default {tol:g})")
    return ap


def require(checkout: Path, marker: str, clone: str, option: str = "--official") -> None:
    """Exit with the ``git clone`` command to run when ``checkout`` holds no ``marker`` file."""
    if not (checkout / marker).is_file():
        raise SystemExit(f"{option} {checkout}: no {marker}; get it with git clone {clone}")


def check(diffs: Sequence[float], tol: float, what: str = "comparisons") -> None:
    """Exit non-zero when a difference exceeds ``tol`` (NaN counts as one)."""
    bad = [d for d in diffs if not d <= tol]
    if bad:
        raise SystemExit(f"{len(bad)} of {len(diffs)} {what} differ by more than {tol:g}")


def rand(*shape: int, seed: int) -> Tensor:
    """Seeded float64 normal draws."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def report(name: str, got: Tensor, want: Tensor, keep: Tensor | None = None) -> float:
    """Print ``<name>: max |ours - official| <d> (outputs up to <m>)`` over the entries ``keep`` selects (all when
    None) and return d."""
    if keep is not None:
        got, want = got[keep], want[keep]
    diff = (got - want).abs().max().item()
    print(f"{name}: max |ours - official| {diff:.1e} (outputs up to {want.abs().max().item():.2f})")
    return diff


def report_with_grads(name: str, ours: Callable[[list[Tensor]], Tensor], official: Callable[[list[Tensor]], Tensor],
                      xs: list[Tensor], labels: Sequence[str] = "qkv", ours_params: Sequence[Tensor] = (),
                      official_params: Sequence[Tensor] = ()) -> tuple[list[float], Tensor]:
    """Run ``ours`` on the inputs ``xs`` (which require grad) and ``official`` on copies of them; print the largest
    difference of the outputs (:func:`report`) and of the gradients of sum(out^2) for the inputs, then the two
    parameter lists (one line each, named by ``labels``). Returns the differences and the official output."""
    out = ours(xs)
    g_ours = torch.autograd.grad(out.square().sum(), [*xs, *ours_params])
    ys = [x.detach().clone().requires_grad_() for x in xs]
    want = official(ys)
    g_off = torch.autograd.grad(want.square().sum(), [*ys, *official_params])
    diffs = [report(name, out, want)]
    for t, a, b in zip(labels, g_ours, g_off, strict=True):
        diffs.append((a - b).abs().max().item())
        print(f"{name} grad {t}: max |ours - official| {diffs[-1]:.1e}")
    return diffs, want


def import_hf(checkout: Path | None, model: str, config: str) -> ModuleType:
    """HF transformers' ``transformers.models.<model>.modeling_<model>`` with the package's ``config`` class set on
    it, from a checkout (its src/ first on sys.path) or, for None, the installed package; prints which."""
    if checkout is not None:
        require(checkout, f"src/transformers/models/{model}/modeling_{model}.py",
                "https://github.com/huggingface/transformers /tmp/transformers")
        sys.path.insert(0, str(checkout / "src"))
    import transformers

    hf = importlib.import_module(f"transformers.models.{model}.modeling_{model}")
    setattr(hf, config, getattr(transformers, config))
    print(f"official: transformers {transformers.__version__} ({Path(hf.__file__).parent})")
    return hf


def cab_module(checkout: Path, name: str) -> ModuleType:
    """``efficient_attention.modules.<name>`` of CAB's checkout, under a stub ``efficient_attention`` package that holds
    what the modules import from it (``AbstractAttention``, ``register_cls``, ``add_nested_argument``); the real
    package's ``__init__`` imports every module and their dependencies."""
    pkg = types.ModuleType("efficient_attention")
    pkg.__path__ = [str(checkout / "efficient-attention" / "efficient_attention")]
    pkg.register_cls = lambda cls: cls  # the official registry: a name -> class dict, not needed here
    pkg.add_nested_argument = lambda parser, name, **kw: None  # argparse helper, not called here
    sys.modules["efficient_attention"] = pkg
    pkg.AbstractAttention = importlib.import_module("efficient_attention.modules.abstract_attention").AbstractAttention
    return importlib.import_module(f"efficient_attention.modules.{name}")


def cab_args(doc: str, module: str) -> tuple[argparse.Namespace, ModuleType]:
    """The command line of a side-by-side with CAB (``--official``, ``--tol`` 1e-10) and CAB's ``efficient_attention``
    package from the checkout, which must hold ``modules/<module>.py``."""
    args = parser(doc, "a checkout of the official Shark-NLP/CAB", 1e-10).parse_args()
    require(args.official, f"efficient-attention/efficient_attention/modules/{module}.py", CAB_CLONE)
    return args, import_cab(args.official)


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
