"""Our HOT forecaster beside the official HOT code (s-omranpour/HOT) on identical weights and inputs.

    git clone https://github.com/s-omranpour/HOT /tmp/HOT
    python scripts/official/compare_hot.py --official /tmp/HOT

Builds the official ``HOTForTimeseriesForecasting`` (its defaults: d_hidden 128, d_mlp 512, 4 blocks, 8 heads, patch
4, input 96, output 720, dropout 0.1) with ``pe`` rope / nope and ``attention_type`` kronecker_product / kronecker_sum,
copies its weights into ours (``head=mean``, ``dropout_layout=official``, ``per_axis_qk``, attention dropout 0.1;
RoPE's rotate-half pairs become our interleaved ones by a permutation inside each head of the q/k projections and
q/k LayerNorms) and compares the forecasts in float64, in eval mode and in train mode (the RNG reseeded before each
forward, so that both codes draw the same dropout masks in the same order).

The official code as published (commit a94fbf0) does not run as it stands; the script works around three faults
without editing any file, each outside the compared function or at its evident intent:

- ``src/models/__init__.py`` imports ``seg2d.py``, which imports ``RMSNorm`` that ``src/modules/transformer.py``
  lacks (ImportError): the script imports ``src.models.ts`` without running that ``__init__``;
- ``super(lr, weight_decay).__init__()`` in ``HOTForTimeseriesForecasting.__init__`` (TypeError): the script runs
  ``BaseModel.__init__(lr, weight_decay)`` itself, and that line as a no-op;
- the embedding's ``LayerNorm(d_hidden)`` is applied to the Conv1d output (B*C, d_hidden, patches), i.e. over the
  patch axis, which raises unless d_hidden equals the number of patches: hooks apply it over d_hidden (ReLU ->
  LayerNorm -> Dropout, the reading of ``dropout_layout=official``).

Both codes draw the attention-probability dropout masks in the memory order of their tensor, (B, N, N, H) in the
official code and (B, H, N, N) here; a hook presents the official dropout its (unchanged) probabilities in our
layout, so that one reseed gives both codes the same masks. Without it train-mode forecasts differ by O(1) (printed
as an info line). ``torchvision`` (imported by the official attention module for a class the forecaster does not use)
is stubbed while the official code is imported when it is not installed; ``einops`` is needed (``pip install
einops``).

Measured 2026-12-07 (torch 2.13 CPU, float64, forecasts up to about 7, official code at a94fbf0): with RoPE, whose
float32 angle tables the two codes round differently, 3.7e-9 (product) and 9.0e-9 (sum) in eval mode, 5.2e-9 and
8.8e-9 in train mode; without RoPE 2.9e-15 / 3.6e-15 in eval mode, 3.6e-15 / 4.0e-15 in train mode. Without the
dropout hook, train mode differs by 0.63.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from attnbench.models.forecaster import PatchForecaster

SEQ, PRED, PATCH, C, B = 96, 720, 4, 7, 3  # the official input 96 and output 720; 7 variables (ETT), batch 3
SIZES = dict(d_hidden=128, d_mlp=512, n_blocks=4, n_head=8)  # timeseries_main.py's defaults
DROPOUT = 0.1  # --dropout 0.1, every dropout site of the official code
TOL = {True: 1e-6, False: 1e-12}  # with / without RoPE (float32 angle tables with it)


def import_official(root: Path) -> tuple[type[nn.Module], types.ModuleType, type]:
    """The official ``HOTForTimeseriesForecasting``, its module and ``BaseModel`` from the checkout ``root``.

    ``src/models/__init__.py`` is not run (it imports ``seg2d.py``, which fails); ``torchvision`` is stubbed while
    importing when absent (only the unused ``MultiScaleAttention`` calls it)."""
    if not (root / "src" / "models" / "ts.py").is_file():
        raise SystemExit(f"--official {root}: no src/models/ts.py; expected a checkout of s-omranpour/HOT "
                         "(git clone https://github.com/s-omranpour/HOT /tmp/HOT)")
    try:
        importlib.import_module("einops")
    except ImportError as e:
        raise SystemExit("the official HOT code needs einops: pip install einops") from e
    importlib.import_module("lightning")  # before any torchvision stub: its import probes torchvision's spec
    sys.path.insert(0, str(root))
    stub = importlib.util.find_spec("torchvision") is None
    if stub:
        sys.modules["torchvision"] = types.ModuleType("torchvision")
    try:
        src = importlib.import_module("src")
        models = types.ModuleType("src.models")  # the package without its __init__
        models.__path__ = [str(root / "src" / "models")]
        sys.modules["src.models"] = models
        src.models = models
        ts = importlib.import_module("src.models.ts")
        base = importlib.import_module("src.models.base")
    finally:
        if stub:
            del sys.modules["torchvision"]
    return ts.HOTForTimeseriesForecasting, ts, base.BaseModel


class _NoInit:
    """Stands for ``super(lr, weight_decay)``: its ``__init__()`` does nothing (``BaseModel`` is set up before)."""


def build_official(cls: type[nn.Module], ts: types.ModuleType, base: type, rope: bool, mode: str) -> nn.Module:
    """The official forecaster with ``pe`` rope or nope and ``kronecker_<mode>`` attention, run-ready: its
    ``super(lr, weight_decay).__init__()`` replaced by ``BaseModel.__init__(lr, weight_decay)``, the embedding
    LayerNorm applied over d_hidden."""
    lr, weight_decay = 1e-3, 1e-2
    model = cls.__new__(cls)
    base.__init__(model, lr=lr, weight_decay=weight_decay)
    ts.super = lambda *args: _NoInit()  # the module global shadows the builtin in HOTForTimeseriesForecasting
    try:
        cls.__init__(model, **SIZES, pe="rope" if rope else "nope", patch_size=PATCH, input_size=SEQ,
                     attention_type=f"kronecker_{mode}", dropout=DROPOUT, lr=lr, weight_decay=weight_decay)
    finally:
        del ts.super
    ln = model.emb[2]  # Conv1d, ReLU, LayerNorm, Dropout on (B*C, d, patches): normalise over d
    ln.register_forward_pre_hook(lambda mod, args: (args[0].transpose(1, 2),))
    ln.register_forward_hook(lambda mod, args, out: out.transpose(1, 2))
    return model


def align_attention_dropout(model: nn.Module) -> list[RemovableHandle]:
    """Make the official attention-probability dropout draw its mask over (B, H, N, N), our order: the probabilities
    (B, N, N, H) go in permuted and contiguous and come out permuted back, values unchanged. Returns the hooks."""
    handles = []
    for blk in model.blocks:
        drop = blk.attention.att_dropout
        handles.append(drop.register_forward_pre_hook(lambda mod, args: (args[0].permute(0, 3, 1, 2).contiguous(),)))
        handles.append(drop.register_forward_hook(lambda mod, args, out: out.permute(0, 2, 3, 1)))
    return handles


def our_state(so: dict[str, Tensor], n_blocks: int, n_heads: int, rope: bool) -> dict[str, Tensor]:
    """The official state dict under our names; every official entry is used once.

    RoPE: the official code rotates the pairs (j, j + D/2) of a head (rotate-half), ours (2j, 2j + 1), with the same
    frequency for pair j; permuting the query/key features inside each head (projection rows, and the q/k
    LayerNorm, which both axes share) maps one onto the other and leaves every attention score unchanged."""
    E = so["emb.0.weight"].shape[0]
    D = E // n_heads
    perm = torch.arange(D).view(2, D // 2).T.reshape(-1) if rope else torch.arange(D)  # ours[2j+h] = theirs[hD/2+j]
    used: set[str] = set()

    def get(key: str) -> Tensor:
        used.add(key)
        return so[key]

    def qk_rows(t: Tensor) -> Tensor:  # (2 axes * H * D, ...) -> the same with each head's features permuted
        return t.unflatten(0, (2, n_heads, D))[:, :, perm].flatten(0, 2)

    new = {
        "embed.weight": get("emb.0.weight")[:, 0],  # Conv1d(1 -> E, kernel P, stride P) == Linear(P -> E)
        "embed.bias": get("emb.0.bias"),
        "embed_post.2.weight": get("emb.2.weight"), "embed_post.2.bias": get("emb.2.bias"),
        "ln_f.weight": get("head.0.weight"), "ln_f.bias": get("head.0.bias"),
        "head.weight": get("head.2.weight"), "head.bias": get("head.2.bias"),
    }
    for i in range(n_blocks):
        ours, theirs = f"blocks.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            new[f"{ours}ln1.{p}"] = get(f"{theirs}norm1.{p}")
            new[f"{ours}ln2.{p}"] = get(f"{theirs}norm2.{p}")
            new[f"{ours}attn.q_proj.{p}"] = qk_rows(get(f"{theirs}attention.query_proj.{p}"))  # [variables; patches]
            new[f"{ours}attn.k_proj.{p}"] = qk_rows(get(f"{theirs}attention.key_proj.{p}"))
            new[f"{ours}attn.v_proj.{p}"] = get(f"{theirs}attention.value_proj.{p}")
            new[f"{ours}attn.o_proj.{p}"] = get(f"{theirs}attention.out_proj.{p}")
            new[f"{ours}attn.q_norm.{p}"] = get(f"{theirs}attention.q_norm.{p}")[perm]
            new[f"{ours}attn.k_norm.{p}"] = get(f"{theirs}attention.k_norm.{p}")[perm]
        for w in ("w1", "w2", "w3"):
            new[f"{ours}mlp.{w}.weight"] = get(f"{theirs}feedforward.{w}.weight")
    if used != set(so):
        raise RuntimeError(f"official weights left unmapped: {sorted(set(so) - used)}")
    return new


def build_ours(rope: bool, mode: str) -> PatchForecaster:
    """Ours in the official layout (conf/experiment/hot/official.yaml with model=hot, data.pred_len=720)."""
    return PatchForecaster(SEQ, PRED, {"name": "hot", "mode": mode, "pool": "sum", "dropout": DROPOUT},
                           patch_len=PATCH, d_model=SIZES["d_hidden"], n_heads=SIZES["n_head"],
                           n_layers=SIZES["n_blocks"], d_mlp=SIZES["d_mlp"], dropout=DROPOUT, rope=rope,
                           per_axis_qk=True, head="mean", dropout_layout="official")


def forecasts(off: nn.Module, ours: nn.Module, x: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """Both forecasts (B, PRED, C) of x (B, SEQ, C), the torch RNG reseeded before each forward."""
    with torch.no_grad():
        torch.manual_seed(seed)
        a = off(x.transpose(1, 2).contiguous()).transpose(1, 2)  # the official model takes and gives (B, C, T)
        torch.manual_seed(seed)
        b = ours(x)
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", type=Path, required=True, help="a checkout of s-omranpour/HOT")
    args = ap.parse_args()
    cls, ts, base = import_official(args.official.expanduser().resolve())

    worst = 0.0
    failed = []
    for rope in (True, False):
        for mode in ("product", "sum"):
            torch.manual_seed(0)
            off = build_official(cls, ts, base, rope, mode)
            hooks = align_attention_dropout(off)
            with torch.no_grad():  # non-trivial LayerNorm affines (initialised to 1 and 0)
                for name, p in off.named_parameters():
                    if "norm" in name or name.startswith(("emb.2.", "head.0.")):
                        p.add_(0.2 * torch.randn_like(p))
            ours = build_ours(rope, mode)
            ours.load_state_dict(our_state(off.state_dict(), SIZES["n_blocks"], SIZES["n_head"], rope))
            n_off, n_ours = (sum(p.numel() for p in m.parameters()) for m in (off, ours))
            if n_off != n_ours:
                raise RuntimeError(f"parameter counts differ: official {n_off:,}, ours {n_ours:,}")
            off.double()
            ours.double()
            x = 2 * torch.randn(B, SEQ, C, dtype=torch.float64) + 1
            for train in (False, True):
                off.train(train)
                ours.train(train)
                a, b = forecasts(off, ours, x, seed=1)
                diff = (a - b).abs().max().item()
                case = f"{'train' if train else 'eval'}, pe={'rope' if rope else 'nope'}, kronecker_{mode}"
                print(f"{case}: max |ours - official| {diff:.2e} (forecasts up to {a.abs().max().item():.2f}, "
                      f"{n_off:,} parameters)")
                worst = max(worst, diff)
                if not diff <= TOL[rope]:
                    failed.append(f"{case}: {diff:.2e} > {TOL[rope]:.0e}")
            if rope and mode == "product":  # why the hook on the official attention-probability dropout
                for h in hooks:
                    h.remove()
                a, b = forecasts(off.train(), ours.train(), x, seed=1)
                print(f"(info) {case} without the dropout hook (each code draws the attention-probability masks in "
                      f"its own memory order): the forecasts differ by up to {(a - b).abs().max().item():.2e}")
    if failed:
        raise SystemExit("beyond tolerance: " + "; ".join(failed))
    print(f"all within tolerance (worst {worst:.2e})")


if __name__ == "__main__":
    main()
