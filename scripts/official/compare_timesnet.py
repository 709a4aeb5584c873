"""Our ``models.timesnet.TimesNet`` beside Time-Series-Library's TimesNet on identical weights and inputs.

    git clone https://github.com/thuml/Time-Series-Library /tmp/Time-Series-Library
    python scripts/official/compare_timesnet.py --official /tmp/Time-Series-Library [--data-dir ../shared/data]

Builds the official ``models/TimesNet.py`` ``Model(configs)`` (task long_term_forecast, ``embed=timeF``, ``freq=h``,
dropout 0, ``num_kernels`` 6) from a ``SimpleNamespace`` of the settings of TSLib's lookback-96 scripts
(``scripts/long_term_forecast/ETT_script/TimesNet_ETTh1.sh``: d_model 16, d_ff 32, e_layers 2, top_k 5; ETTh2's 32/32,
Exchange's 64/64 on 8 variables; ILI's lengths 36/18/24 at a small width; features S), checks that both have the
same number of parameters, copies the official weights into ours (Inception biases and the LayerNorm perturbed,
so that none is at its zero / one init), runs both in eval mode on the same inputs and calendar marks, and prints
``<case>: max |ours - official| <value>`` per case: the forecasts, and in one case the gradients of every weight
after a backward pass of the same loss. The periods each block picks (the top-k of the batch-mean amplitude) are
compared too: a differing pick fails the case. With ``--data-dir``, one more case on a batch of real ETTh1
test windows (``ETT-small/ETTh1.csv``, our datamodule: its scaled values and calendar marks). Exits non-zero
when a difference exceeds 1e-5 (float32) or the periods differ.

The official model file imports only torch and its own ``layers/Embed.py`` / ``layers/Conv_Blocks.py``; other
TSLib imports are stubbed (``sys.modules``) only when missing, as ``compare_tslib.py`` does.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch
from torch import Tensor, nn

from attnbench.models import timesnet
from attnbench.models.timesnet import TimesNet

OFFICIAL_FILE = "models/TimesNet.py"
TOLERANCE = 1e-5
B, F_MARKS = 4, 4  # batch, calendar features of freq h (timeF)
# case: (seq_len, label_len, pred_len, enc_in, d_model, d_ff, top_k, the script line the sizes come from)
CASES = {
    "ETTh1 96->96 (d_model 16, d_ff 32)": (96, 48, 96, 7, 16, 32, 5, "ETT_script/TimesNet_ETTh1.sh:17-27"),
    "ETTh2 96->96 (d_model 32, d_ff 32)": (96, 48, 96, 7, 32, 32, 5, "ETT_script/TimesNet_ETTh2.sh:17-25"),
    "Exchange 96->96 (8 variables, d_model 64, d_ff 64)":
        (96, 48, 96, 8, 64, 64, 5, "Exchange_script/TimesNet.sh:17-25"),
    "ILI lengths 36->24 (d_model 32, d_ff 32, top_k 5)": (36, 18, 24, 7, 32, 32, 5, "ILI_script/TimesNet.sh:14-25"),
    "features S 96->96 (1 variable, d_model 16, d_ff 32, top_k 3)": (96, 48, 96, 1, 16, 32, 3, "-"),
}
STUBS: dict[str, dict] = {}  # TSLib modules to stub if missing: none is imported by models/TimesNet.py today


def stub_missing() -> list[str]:
    """Empty modules (``sys.modules``) for the names of ``STUBS`` that are not installed; returns them."""
    made = []
    for name, attrs in STUBS.items():
        if importlib.util.find_spec(name.split(".")[0]) is None:
            sys.modules[name] = types.ModuleType(name)
            sys.modules[name].__dict__.update(attrs)
            made.append(name)
    return made


def load_official(checkout: Path) -> types.ModuleType:
    """TSLib's ``models.TimesNet`` from the checkout (first on ``sys.path``)."""
    if not (checkout / OFFICIAL_FILE).is_file():
        raise SystemExit(f"error: {checkout / OFFICIAL_FILE} not found; --official must be a checkout of "
                         "github.com/thuml/Time-Series-Library")
    made = stub_missing()
    if made:
        print(f"stubbed (not installed, unused by TimesNet): {', '.join(made)}")
    sys.path.insert(0, str(checkout))
    from models import TimesNet as official  # the official module

    return official


def configs(seq_len: int, label_len: int, pred_len: int, enc_in: int, d_model: int, d_ff: int,
            top_k: int) -> types.SimpleNamespace:
    """The ``args`` TSLib's run.py hands the model (the fields TimesNet reads)."""
    return types.SimpleNamespace(task_name="long_term_forecast", seq_len=seq_len, label_len=label_len,
                                 pred_len=pred_len, enc_in=enc_in, dec_in=enc_in, c_out=enc_in, d_model=d_model,
                                 d_ff=d_ff, e_layers=2, top_k=top_k, num_kernels=6, embed="timeF", freq="h",
                                 dropout=0.0, num_class=1)


def our_state(so: dict[str, Tensor]) -> dict[str, Tensor]:
    """The official state dict under our names (the position table is a buffer of ours, not stored)."""
    rename = (("enc_embedding.value_embedding.tokenConv.", "embedding.token."),
              ("enc_embedding.temporal_embedding.embed.", "embedding.time."),
              ("predict_linear.", "predict."), ("model.", "blocks."), ("layer_norm.", "norm."))
    new = {}
    for k, v in so.items():
        if k == "enc_embedding.position_embedding.pe":
            continue
        for a, b in rename:
            if k.startswith(a):
                k = b + k.removeprefix(a)
                break
        new[k] = v
    return new


def record_periods(blocks: nn.ModuleList, periods_of, into: list) -> list:
    """Forward pre-hooks appending the periods each block picks on its input (``periods_of(x)``)."""
    return [b.register_forward_pre_hook(lambda m, args: into.append(list(periods_of(args[0]))))
            for b in blocks]


def compare(official: types.ModuleType, case: str, size: tuple, x: Tensor | None = None,
            mark: Tensor | None = None, grads: bool = False) -> float:
    """Build both models at ``size``, copy the weights, run; print the line(s); the largest difference (inf when
    the periods differ)."""
    seq_len, label_len, pred_len, enc_in, d_model, d_ff, top_k, source = size
    torch.manual_seed(0)
    off = official.Model(configs(seq_len, label_len, pred_len, enc_in, d_model, d_ff, top_k)).eval()
    with torch.no_grad():  # no weight at its init constant: biases 0, LayerNorm 1 / 0
        for name, p in off.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    ours = TimesNet(seq_len, label_len, pred_len, enc_in, F_MARKS, d_model=d_model, d_ff=d_ff, e_layers=2,
                    top_k=top_k, num_kernels=6, dropout=0.0).eval()
    n_off, n_ours = (sum(p.numel() for p in m.parameters()) for m in (off, ours))
    if n_off != n_ours:
        raise RuntimeError(f"{case}: parameter counts differ: official {n_off:,}, ours {n_ours:,}")
    ours.load_state_dict(our_state(off.state_dict()))
    if x is None:  # a few periods and noise: the picks are not ties
        t = torch.arange(seq_len, dtype=torch.float32)[None, :, None]
        phase = torch.rand(B, 1, enc_in) * 6.28
        x = (torch.sin(2 * torch.pi * t / 24 + phase) + 0.5 * torch.sin(2 * torch.pi * t / 7 + phase)
             + 0.3 * torch.randn(B, seq_len, enc_in) + torch.randn(B, 1, enc_in))
        mark = torch.rand(B, seq_len, F_MARKS) - 0.5
    dec = torch.zeros(x.shape[0], label_len + pred_len, enc_in)  # read by neither model
    dec_mark = torch.zeros(x.shape[0], label_len + pred_len, F_MARKS)
    picks_off: list = []
    picks_ours: list = []
    hooks = [*record_periods(off.model, lambda h: official.FFT_for_Period(h, top_k)[0].tolist(), picks_off),
             *record_periods(ours.blocks, lambda h: timesnet.fft_periods(h, top_k)[0], picks_ours)]
    with torch.set_grad_enabled(grads):
        a, b = off(x, mark, dec, dec_mark), ours(x, mark, dec_mark)
    for h in hooks:
        h.remove()
    diff = (a - b).abs().max().item()
    same = picks_off == picks_ours
    print(f"{case} [{source}]: max |ours - official| {diff:.2e} (outputs up to {a.abs().max().item():.2f}; "
          f"{n_ours:,} parameters each; periods per block {picks_ours}{'' if same else f', official {picks_off}'})")
    if not same:
        print(f"  PERIODS DIFFER: ours {picks_ours}, official {picks_off}")
        return float("inf")
    if grads:
        y = torch.randn_like(a)
        ((a - y) ** 2).mean().backward()
        ((b - y) ** 2).mean().backward()
        go = {k: p.grad for k, p in our_state(dict(off.named_parameters())).items()}
        g = max((p.grad - go[k]).abs().max().item() for k, p in ours.named_parameters())
        top = max(p.grad.abs().max().item() for p in ours.parameters())
        print(f"{case}, gradients of every weight: max |ours - official| {g:.2e} (gradients up to {top:.2f})")
        diff = max(diff, g)
    return diff


def real_windows(data_dir: Path) -> tuple[Tensor, Tensor]:
    """B ETTh1 test windows spread over the split (scaled values, calendar marks) from our datamodule."""
    from attnbench.data.timeseries import TimeSeriesDataModule

    dm = TimeSeriesDataModule("ETTh1", str(data_dir), 96, 48, 96, verify=False, download=False)
    dm.setup()
    test = dm.datasets["test"]
    items = [test[i] for i in torch.linspace(0, len(test) - 1, B).long().tolist()]
    return torch.stack([it[0] for it in items]), torch.stack([it[2] for it in items])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", type=Path, required=True, help="a checkout of thuml/Time-Series-Library")
    ap.add_argument("--data-dir", type=Path, help="holding ETT-small/ETTh1.csv: one more case on real windows")
    args = ap.parse_args()
    official = load_official(args.official.expanduser().resolve())
    worst = 0.0
    for i, (case, size) in enumerate(CASES.items()):
        worst = max(worst, compare(official, case, size, grads=i == 0))
    if args.data_dir:
        x, mark = real_windows(args.data_dir)
        worst = max(worst, compare(official, "ETTh1 test windows (d_model 16, d_ff 32)", CASES[next(iter(CASES))],
                                   x, mark))
    if worst > TOLERANCE:
        raise SystemExit(f"FAILED: largest difference {worst:.2e} > {TOLERANCE:.0e}")
    print(f"all within {TOLERANCE:.0e} (largest {worst:.2e})")


if __name__ == "__main__":
    main()
