"""Our ``attention.s4d`` beside CAB's official S4D (Shark-NLP/CAB, ``efficient-attention/efficient_attention/modules/
s4d.py``, from state-spaces/s4) on identical weights and inputs; optionally the kernel of S4's minimal ``s4d.py``.

    git clone https://github.com/Shark-NLP/CAB /tmp/CAB
    git clone https://github.com/state-spaces/s4 /tmp/s4          # optional: --official-s4
    python scripts/official/compare_s4d.py --official /tmp/CAB [--official-s4 /tmp/s4]

The official ``S4D`` is a whole layer: the SSM convolution of the layer input x itself (one kernel per feature with
``num_heads=1`` channel), + D x, GELU, then ``output_linear``. Ours is ``MultiAxisAttention`` (``qk_norm=False``)
around ``s4d`` (``projections="q"``: its values are x's head slices, so feature h * D + d is official feature
h * D + d) with ``tie_a=True`` (the official A is one for all features, n_ssm = 1). The official parameters (log dt,
log(-Re A), Im A, C, D) are copied into the entry and ``output_linear`` into the layer's W^O; the layer's W^Q is
unused by the entry. Its ``opt_einsum.contract`` is ``torch.einsum`` here (a stub module: the same contraction).

Cases (float64, batch 2, d_model 64 = 4 heads x 16, d_state 16; CAB's default), one line each, at L = 50 and 257,
each as the official code runs (its kernel cast to float32 at the end of ``S4DKernel.forward``: float32 rounding) and
with that cast left out (``float64_kernel``: float64 rounding):

- ``bidirectional``: official ``bidirectional=True`` against our noncausal pass (a forward and a backward kernel).
- ``unidirectional``: official ``bidirectional=False`` (CAB's library default, a causal kernel) against our causal
  pass and our noncausal pass with ``bidirectional=False``.
- ``padded``: batch row 1 with its last third padding: the official layer on x with those positions zeroed (it takes
  no mask) against ours with the key padding mask, every position.
- ``--official-s4``: the kernel of S4's minimal ``models/s4/s4d.py`` (``S4DKernel``, S4D-Lin, one A per feature)
  against our ``s4d_kernel`` on its parameters, L = 1000 (its ``src.models.nn`` import is a stub: the kernel does not
  use it).

Measured 2026-12-07 (torch 2.13 CPU, CAB commit 0e49696, s4 commit e757cef): as the official code runs <= 6.3e-8,
with the float64 kernel <= 1.3e-15, in all 10 cases (outputs up to 2.2); S4's minimal kernel 4.8e-16.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import ModuleType

import torch
from _shared import cab_module, rand, report  # scripts/official/_shared.py

from attnbench.attention.s4d import s4d_kernel
from attnbench.layers.attention import MultiAxisAttention

B, E, H, N = 2, 64, 4, 16
D = E // H


def official_module(checkout: Path, name: str) -> ModuleType:
    """:func:`cab_module`, with a stub ``opt_einsum`` whose ``contract`` is ``torch.einsum``."""
    oe = types.ModuleType("opt_einsum")
    oe.contract, oe.contract_expression = torch.einsum, None  # contract_expression: imported, never called
    sys.modules.setdefault("opt_einsum", oe)
    return cab_module(checkout, name)


@contextmanager
def float64_kernel(module: ModuleType) -> Iterator[None]:
    """While it is active: the official ``S4DKernel.forward`` without its final ``k.float()``, which casts the kernel
    to float32 whatever the parameters' dtype (its only float32 step)."""
    forward = module.S4DKernel.forward
    module.S4DKernel.forward = lambda self, L=None: self.kernel(L=L)
    try:
        yield
    finally:
        module.S4DKernel.forward = forward


def pair(official_cls: type, bidirectional: bool, seed: int) -> tuple[torch.nn.Module, MultiAxisAttention]:
    """The official S4D and our layer with its weights."""
    torch.manual_seed(seed)
    theirs = official_cls(embed_dim=E, d_state=N, num_heads=1, bidirectional=bidirectional,
                          transposed=False).double().eval()
    ours = MultiAxisAttention(E, H, 1, {"name": "s4d", "d_state": N, "bidirectional": bidirectional, "tie_a": True},
                              qk_norm=False).double().eval()
    k = theirs.kernel.kernel
    with torch.no_grad():
        ours.attn.log_dt.copy_(k.log_dt.view(H, D))
        ours.attn.log_a_real.copy_(k.log_w_real.view(1, 1, N // 2))
        ours.attn.a_imag.copy_(k.w_imag.view(1, 1, N // 2))
        ours.attn.c.copy_(k.C.view(-1, H, D, N // 2, 2))  # (channels: forward[, backward], features, modes, re/im)
        ours.attn.d.copy_(theirs.D.view(H, D))
        ours.o_proj.load_state_dict(theirs.output_linear.state_dict())
    return theirs, ours


def compare_s4_kernel(checkout: Path) -> None:
    """S4's minimal S4DKernel against ours on its parameters."""
    for name in ("src", "src.models", "src.models.nn"):  # what models/s4/s4d.py imports: DropoutNd only
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["src.models.nn"].DropoutNd = torch.nn.Dropout
    spec = importlib.util.spec_from_file_location("s4_minimal_s4d", checkout / "models" / "s4" / "s4d.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    kernel = mod.S4DKernel(E, N=N).double()
    with torch.no_grad():
        L = 1000
        theirs = kernel(L)  # (E, L)
        mine = s4d_kernel(kernel.log_dt[None], kernel.log_A_real[None], kernel.A_imag[None],
                          torch.view_as_complex(kernel.C)[None, None], L)[0, 0]  # (E, L)
    report(f"s4 minimal kernel L={L}", mine, theirs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", type=Path, required=True, help="a checkout of Shark-NLP/CAB")
    ap.add_argument("--official-s4", type=Path, help="a checkout of state-spaces/s4 (its minimal S4D kernel)")
    args = ap.parse_args()
    module = official_module(args.official, "s4d")
    for seed, L in enumerate((50, 257)):
        x = rand(B, L, E, seed=10 + seed)
        real = torch.ones(B, L, dtype=torch.bool)
        real[1, 2 * L // 3:] = False
        for exact in (False, True):
            tag = ", float64 kernel" if exact else ""
            with torch.no_grad(), float64_kernel(module) if exact else nullcontext():
                theirs, ours = pair(module.S4D, True, seed)
                report(f"bidirectional L={L}{tag}", ours(x), theirs(x, batch_first=True)[0])
                report(f"bidirectional padded L={L}{tag}", ours(x, key_padding_mask=real),
                       theirs(x * real[..., None], batch_first=True)[0])
                theirs, ours = pair(module.S4D, False, seed)
                a = theirs(x, batch_first=True)[0]
                report(f"unidirectional causal L={L}{tag}", ours(x, causal=True), a)
                report(f"unidirectional noncausal L={L}{tag}", ours(x), a)
                report(f"unidirectional causal padded L={L}{tag}", ours(x, key_padding_mask=real, causal=True),
                       theirs(x * real[..., None], batch_first=True)[0])
    if args.official_s4:
        compare_s4_kernel(args.official_s4)


if __name__ == "__main__":
    main()
