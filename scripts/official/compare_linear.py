"""Our DLinear and RLinear beside the official models on identical weights and inputs.

    git clone https://github.com/thuml/Time-Series-Library /tmp/Time-Series-Library
    git clone https://github.com/plumprc/RTSF /tmp/RTSF
    python scripts/official/compare_linear.py --official /tmp/Time-Series-Library --official-rtsf /tmp/RTSF

DLinear: Time-Series-Library's ``models/DLinear.py`` (``Model(configs, individual)``, task long_term_forecast,
``moving_avg`` 25, run.py's default). RLinear: RTSF's ``models/RLinear.py`` (``Model(configs)`` with ``--rev``,
``--drop`` 0.1, run.py's defaults), the RLinear paper's own code. Each at seq_len 96, pred_len 96, 7 variables
(ETT), with ``individual`` false and true: the parameter counts must be equal, the official weights are copied into
ours (RevIN's gamma moved off its ones, every bias and RevIN's beta drawn again, DLinear's constant 1/seq_len weights
perturbed, so that every entry matters), and the forecasts of one float32 batch are compared in eval mode; RLinear
also in train mode, the RNG reseeded before each forward so that both draw the same dropout mask on the normalised
input.

Both checkouts have a top-level ``layers`` package; each is imported with only its own checkout on ``sys.path`` and
its ``models`` / ``layers`` modules dropped from ``sys.modules`` after (``--official-tslib`` is ``--official``'s other
name). Nothing of the official code is copied here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from pathlib import Path

import torch
from torch import Tensor, nn

from attnbench.models.linear_forecasters import DLinear, RLinear

SEQ, PRED, C, B = 96, 96, 7, 16  # lookback 96, horizon 96, ETT's 7 variables, a batch of 16
MOVING_AVG = 25  # Time-Series-Library run.py --moving_avg default
DROP = 0.1  # RTSF run.py --drop default
TOL = 1e-5  # float32


def import_official(root: Path, module: str, marker: str, hint: str) -> types.ModuleType:
    """``models.<module>`` of the checkout ``root``, imported with only ``root`` added to ``sys.path``; the
    checkout's ``models`` and ``layers`` packages are dropped from ``sys.modules`` before and after (the two
    checkouts share those names)."""
    if not (root / marker).is_file():
        raise SystemExit(f"{root}: no {marker}; expected a checkout of {hint}")

    def purge() -> None:
        for name in [n for n in sys.modules if n.split(".")[0] in ("models", "layers")]:
            del sys.modules[name]

    purge()
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(f"models.{module}")
    finally:
        sys.path.remove(str(root))
        purge()


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def linears(official: nn.Module | nn.ModuleList) -> tuple[Tensor, Tensor]:
    """The official ``nn.Linear`` or per-variable ``ModuleList`` of them as our (weight, bias): (P, L), (P,) or
    (C, P, L), (C, P)."""
    if isinstance(official, nn.ModuleList):
        return torch.stack([m.weight for m in official]), torch.stack([m.bias for m in official])
    return official.weight, official.bias


def redraw_biases(model: nn.Module) -> None:
    """Every bias drawn again (DLinear's official weights are constant: 1/seq_len)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))


def compare_dlinear(tslib: types.ModuleType, individual: bool) -> list[tuple[str, float]]:
    cfg = types.SimpleNamespace(task_name="long_term_forecast", seq_len=SEQ, pred_len=PRED, moving_avg=MOVING_AVG,
                                enc_in=C)
    torch.manual_seed(0)
    off = tslib.Model(cfg, individual=individual).eval()
    redraw_biases(off)
    with torch.no_grad():  # weights off the constant 1/seq_len start, so that the two maps are told apart
        for name, p in off.named_parameters():
            if name.endswith("weight"):
                p.add_(0.01 * torch.randn_like(p))
    ours = DLinear(SEQ, PRED, C, moving_avg=MOVING_AVG, individual=individual).eval()
    if n_params(off) != n_params(ours):
        raise SystemExit(f"DLinear individual={individual}: parameter counts differ: official {n_params(off):,}, "
                         f"ours {n_params(ours):,}")
    sw, sb = linears(off.Linear_Seasonal)
    tw, tb = linears(off.Linear_Trend)
    ours.load_state_dict({"seasonal.weight": sw, "seasonal.bias": sb, "trend.weight": tw, "trend.bias": tb})
    x = 2 * torch.randn(B, SEQ, C) + 1
    with torch.no_grad():
        a = off(x, None, None, None)  # (B, PRED, C)
        b = ours(x)
    case = f"DLinear individual={str(individual).lower()} ({n_params(ours):,} parameters, forecasts up to " \
           f"{a.abs().max().item():.2f})"
    return [(case, (a - b).abs().max().item())]


def compare_rlinear(rtsf: types.ModuleType, individual: bool) -> list[tuple[str, float]]:
    cfg = types.SimpleNamespace(seq_len=SEQ, pred_len=PRED, channel=C, individual=individual, drop=DROP, rev=True)
    torch.manual_seed(0)
    off = rtsf.Model(cfg)
    redraw_biases(off)
    with torch.no_grad():  # RevIN's gamma off its ones
        off.rev.affine_weight.copy_(1 + 0.2 * torch.randn(C))
    ours = RLinear(SEQ, PRED, C, individual=individual, dropout=DROP, revin=True)
    if n_params(off) != n_params(ours):
        raise SystemExit(f"RLinear individual={individual}: parameter counts differ: official {n_params(off):,}, "
                         f"ours {n_params(ours):,}")
    w, b = linears(off.Linear)
    ours.load_state_dict({"revin.affine_weight": off.rev.affine_weight, "revin.affine_bias": off.rev.affine_bias,
                          "linear.weight": w, "linear.bias": b})
    x = 2 * torch.randn(B, SEQ, C) + 1
    y = torch.zeros(B, PRED, C)  # the official forward takes the target (its loss; individual: the output's shape)
    out = []
    for train in (False, True):
        off.train(train)
        ours.train(train)
        with torch.no_grad():
            torch.manual_seed(1)
            a, _ = off(x, y)
            torch.manual_seed(1)
            b_ = ours(x)
        case = f"RLinear individual={str(individual).lower()}, {'train' if train else 'eval'} " \
               f"({n_params(ours):,} parameters, forecasts up to {a.abs().max().item():.2f})"
        out.append((case, (a - b_).abs().max().item()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", "--official-tslib", dest="tslib", type=Path, required=True,
                    help="a checkout of thuml/Time-Series-Library (its models/DLinear.py)")
    ap.add_argument("--official-rtsf", dest="rtsf", type=Path, required=True,
                    help="a checkout of plumprc/RTSF, RLinear's official code (its models/RLinear.py)")
    args = ap.parse_args()
    tslib = import_official(args.tslib.expanduser().resolve(), "DLinear", "models/DLinear.py",
                            "thuml/Time-Series-Library (git clone https://github.com/thuml/Time-Series-Library)")
    rtsf = import_official(args.rtsf.expanduser().resolve(), "RLinear", "models/RLinear.py",
                           "plumprc/RTSF (git clone https://github.com/plumprc/RTSF)")
    results = []
    for individual in (False, True):
        results += compare_dlinear(tslib, individual)
        results += compare_rlinear(rtsf, individual)
    for case, diff in results:
        print(f"{case}: max |ours - official| {diff:.2e}")
    failed = [f"{case}: {diff:.2e} > {TOL:.0e}" for case, diff in results if not diff <= TOL]
    if failed:
        raise SystemExit("beyond tolerance: " + "; ".join(failed))
    print(f"all within {TOL:.0e} (worst {max(d for _, d in results):.2e})")


if __name__ == "__main__":
    main()
