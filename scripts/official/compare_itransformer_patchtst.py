"""Our iTransformer and PatchTST (``attnbench.models.itransformer`` / ``.patchtst``) beside Time-Series-Library's.

    git clone https://github.com/thuml/Time-Series-Library /tmp/Time-Series-Library
    python scripts/official/compare_itransformer_patchtst.py --official /tmp/Time-Series-Library

Builds the official ``Model(configs)`` of ``models/iTransformer.py`` and ``models/PatchTST.py`` (imported from the
checkout; ``reformer_pytorch``, imported by ``layers/SelfAttention_Family.py`` and unused by these models, is stubbed
when missing) from a SimpleNamespace of run.py's arguments, and ours at the same settings with full attention. For
each case: the same parameter count (else exit 1), the official weights copied into ours by name (every tensor on
both sides used once), and the largest difference of the forecasts of the same random window (float32, eval mode
unless the case says train; dropout 0), printed as ``<case>: max |ours - official| <value>``. Exits non-zero when a
difference exceeds 1e-5.

Cases (lookback 96, horizon 96, 7 variables and 4 calendar features as ETTh1 under TSLib's ``--freq h``):
iTransformer at the ETTh1 recipe (d_model 256, d_ff 256, 2 layers, 8 heads: thuml/iTransformer's ETTh1 script;
TSLib has none), with calendar tokens (TSLib's ``x_mark_enc``), without them (``x_mark_enc=None``) and with one
variable (features S); PatchTST at TSLib's ETTh1 script (1 layer, 2 heads, d_model 512, d_ff 2048), in eval mode
and in train mode (BatchNorm on batch statistics), and at ILI's (36 -> 24, 4 layers, 4 heads, d_model 1024: the
padded last patch, (36 - 16) / 8 not whole).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from attnbench.models.itransformer import ITransformer
from attnbench.models.patchtst import PatchTST

OFFICIAL_FILES = ("models/iTransformer.py", "models/PatchTST.py")
TOLERANCE = 1e-5
FULL = {"name": "full", "dropout": 0.0}
# run.py's arguments the two models read (run.py defaults where a case does not set them)
RUN_DEFAULTS = dict(task_name="long_term_forecast", seq_len=96, label_len=48, pred_len=96, enc_in=7, d_model=512,
                    n_heads=8, e_layers=2, d_ff=2048, factor=1, dropout=0.0, embed="timeF", freq="h",
                    activation="gelu")


def _unavailable(*args: object, **kwargs: object) -> None:
    raise RuntimeError("a stub of a package that is not installed was called "
                       "(scripts/official/compare_itransformer_patchtst.py)")


STUBS = {"reformer_pytorch": {"LSHSelfAttention": _unavailable}}  # imported by SelfAttention_Family, unused here


def load_official(checkout: Path) -> tuple[type, type]:
    """The official ``Model`` classes of iTransformer and PatchTST (the checkout first on ``sys.path``)."""
    for f in OFFICIAL_FILES:
        if not (checkout / f).is_file():
            raise SystemExit(f"error: {checkout / f} not found; --official must be a checkout of "
                             "github.com/thuml/Time-Series-Library")
    made = []
    for name, attrs in STUBS.items():
        if importlib.util.find_spec(name) is None:
            sys.modules[name] = mod = types.ModuleType(name)
            mod.__dict__.update(attrs)
            made.append(name)
    if made:
        print(f"stubbed (not installed, unused by these models): {', '.join(made)}")
    sys.path.insert(0, str(checkout))
    from models import PatchTST as official_patchtst  # the official modules
    from models import iTransformer as official_itransformer

    return official_itransformer.Model, official_patchtst.Model


# official parameter name -> ours (the encoder layers' names are shared by the two models)
ENCODER = [(r"encoder\.attn_layers\.(\d+)\.attention\.query_projection\.", r"encoder.\1.attn.q_proj."),
           (r"encoder\.attn_layers\.(\d+)\.attention\.key_projection\.", r"encoder.\1.attn.k_proj."),
           (r"encoder\.attn_layers\.(\d+)\.attention\.value_projection\.", r"encoder.\1.attn.v_proj."),
           (r"encoder\.attn_layers\.(\d+)\.attention\.out_projection\.", r"encoder.\1.attn.o_proj."),
           (r"encoder\.attn_layers\.(\d+)\.conv1\.", r"encoder.\1.mlp.w1."),  # Conv1d k=1 == Linear
           (r"encoder\.attn_layers\.(\d+)\.conv2\.", r"encoder.\1.mlp.w2."),
           (r"encoder\.attn_layers\.(\d+)\.norm1\.", r"encoder.\1.res1.ln."),
           (r"encoder\.attn_layers\.(\d+)\.norm2\.", r"encoder.\1.res2.ln.")]
NAMES = {
    "itransformer": ENCODER + [(r"enc_embedding\.value_embedding\.", "embed."), (r"encoder\.norm\.", "norm."),
                               (r"projection\.", "projection.")],
    "patchtst": ENCODER + [(r"patch_embedding\.value_embedding\.", "embed."), (r"encoder\.norm\.1\.", "norm."),
                           (r"head\.linear\.", "head.")],
}
NOT_PARAMETERS = (r"patch_embedding\.position_embedding\.pe",)  # the fixed position code: a buffer of ours


def ours_name(model: str, name: str) -> str | None:
    """Our state-dict key of official ``name`` (None: a fixed buffer both sides compute)."""
    if any(re.fullmatch(p, name) for p in NOT_PARAMETERS):
        return None
    for pattern, repl in NAMES[model]:
        if re.match(pattern, name):
            return re.sub(pattern, repl, name, count=1)
    raise KeyError(f"{model}: no mapping for the official tensor {name!r}")


def copy_weights(model: str, official: nn.Module, ours: nn.Module) -> None:
    """Every official tensor into ours by name (Conv1d k=1 weights squeezed to Linear's); each of our tensors must
    receive exactly one."""
    target = ours.state_dict()
    filled = set()
    for name, t in official.state_dict().items():
        key = ours_name(model, name)
        if key is None:
            continue
        if key not in target:
            raise KeyError(f"{model}: official {name!r} -> {key!r}, which our model lacks")
        t = t.squeeze(-1) if t.dim() == 3 and t.shape[-1] == 1 and target[key].dim() == 2 else t
        if t.shape != target[key].shape:
            raise ValueError(f"{model}: {name} {tuple(t.shape)} vs our {key} {tuple(target[key].shape)}")
        target[key] = t.clone()
        filled.add(key)
    left = sorted(set(target) - filled)
    if left:
        raise KeyError(f"{model}: our tensors without an official one: {left}")
    ours.load_state_dict(target)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@dataclass
class Case:
    name: str
    model: str                                   # itransformer | patchtst
    settings: dict = field(default_factory=dict)  # run.py arguments over RUN_DEFAULTS
    marks: bool = True                           # iTransformer: calendar tokens (official x_mark_enc given)
    train: bool = False                          # train mode (dropout stays 0: BatchNorm on batch statistics)


CASES = [
    Case("itransformer ETTh1 M (7 variables + 4 calendar tokens)", "itransformer",
         dict(d_model=256, d_ff=256, e_layers=2)),
    Case("itransformer ETTh1 M without calendar tokens", "itransformer", dict(d_model=256, d_ff=256), marks=False),
    Case("itransformer ETTh1 S (1 variable + 4 calendar tokens)", "itransformer",
         dict(d_model=256, d_ff=256, enc_in=1)),
    Case("patchtst ETTh1 M eval", "patchtst", dict(e_layers=1, n_heads=2)),
    Case("patchtst ETTh1 M train (BatchNorm batch statistics)", "patchtst", dict(e_layers=1, n_heads=2), train=True),
    Case("patchtst ILI M 36->24 (padded last patch)", "patchtst",
         dict(seq_len=36, label_len=18, pred_len=24, e_layers=4, n_heads=4, d_model=1024)),
]


def build(case: Case, official_cls: type) -> tuple[nn.Module, nn.Module]:
    cfg = types.SimpleNamespace(**(RUN_DEFAULTS | case.settings))
    torch.manual_seed(0)
    official = official_cls(cfg)
    sizes = dict(d_model=cfg.d_model, n_heads=cfg.n_heads, e_layers=cfg.e_layers, d_ff=cfg.d_ff, dropout=cfg.dropout)
    if case.model == "itransformer":
        ours = ITransformer(cfg.seq_len, cfg.label_len, cfg.pred_len, 4, FULL, calendar_tokens=case.marks, **sizes)
    else:
        ours = PatchTST(cfg.seq_len, cfg.pred_len, FULL, **sizes)  # patch_len 16, stride 8: TSLib's Model defaults
    return official, ours


def compare(case: Case, classes: dict[str, type]) -> float:
    official, ours = build(case, classes[case.model])
    n_off, n_our = n_params(official), n_params(ours)
    if n_off != n_our:
        raise SystemExit(f"{case.name}: parameters ours {n_our:,}, official {n_off:,}")
    copy_weights(case.model, official, ours)
    official.train(case.train)
    ours.train(case.train)
    cfg = RUN_DEFAULTS | case.settings
    g = torch.Generator().manual_seed(1)
    B, L, C = 8, cfg["seq_len"], cfg["enc_in"]
    x = torch.randn(B, L, C, generator=g).cumsum(1) * 0.3 + 2.0  # random walks off zero: the normalisation matters
    x_mark = torch.rand(B, L, 4, generator=g) - 0.5  # timeenc=1 features lie in [-0.5, 0.5]
    y_mark = torch.rand(B, cfg["label_len"] + cfg["pred_len"], 4, generator=g) - 0.5
    x_dec = torch.zeros(B, cfg["label_len"] + cfg["pred_len"], C)
    with torch.no_grad():
        want = official(x.clone(), x_mark if case.marks else None, x_dec, y_mark)
        got = ours(x.clone(), x_mark, y_mark) if case.model == "itransformer" else ours(x.clone())
    if got.shape != want.shape:
        raise SystemExit(f"{case.name}: shapes ours {tuple(got.shape)}, official {tuple(want.shape)}")
    diff = float((got - want).abs().max())
    scale = float(want.abs().max())
    print(f"{case.name}: max |ours - official| {diff:.1e} (outputs up to {scale:.1f}; {n_our:,} parameters each)"
          f"{'' if diff <= TOLERANCE else '  ABOVE ' + str(TOLERANCE)}")
    return diff


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="a checkout of thuml/Time-Series-Library")
    args = ap.parse_args()
    itransformer_cls, patchtst_cls = load_official(args.official)
    classes = {"itransformer": itransformer_cls, "patchtst": patchtst_cls}
    torch.set_default_dtype(torch.float32)
    worst = max(compare(case, classes) for case in CASES)
    print(f"largest difference {worst:.1e}: {'within' if worst <= TOLERANCE else 'ABOVE'} {TOLERANCE}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
