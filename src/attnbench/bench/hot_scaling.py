"""Training-step time and peak memory of HOT vs the flattened full-attention baseline as variables grow.

A point is (model, seq_len, n_vars): a :class:`~attnbench.models.forecaster.PatchForecaster` whose token
tensor has N = n_vars * seq_len / patch_len tokens; ``hot`` attends per axis (variables, patches),
``full`` over the N flattened tokens. One training step = forward + MSE loss + backward + AdamW step on
random data x (B, seq_len, n_vars) -> y (B, pred_len, n_vars), fp32.

Time: median, IQR and min over ``--repeats`` timed steps after ``--warmup`` steps (CUDA synchronised),
both cut short by ``--time-budget-s`` (``n_warmup`` / ``n_timed`` record what ran).
Memory: on CUDA ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was
allocated before the model was built; on CPU every point runs in a fresh process (``ru_maxrss`` is a
process-lifetime peak) and reports its peak RSS minus its RSS just before the model was built (Linux).
Both baselines follow one throwaway step of a 1-variable copy of the model, so one-time runtime
initialisation (~80 MB of RSS on CPU) is not counted; on CPU the peak is then reset to the current RSS.

A point that runs out of memory or raises is a row with its status and reason, never a crash; full
attention beyond ``--max-tokens-full`` tokens is a ``skipped`` row. Outputs under ``--out``:
``hot_scaling.csv``, ``hot_scaling.png``, ``hot_scaling.md`` (table + crossovers), ``machine.json``.

    python -m attnbench.bench.hot_scaling                      # CPU defaults, a few minutes
    python -m attnbench.bench.hot_scaling --device cuda        # no token cap for full on CUDA
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from attnbench.attention import available, get
from attnbench.bench.common import (
    first_line,
    fmt,
    is_oom,
    limit_address_space,
    machine_info,
    mem_available_bytes,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
    run_isolated,
    summarize,
    time_steps,
)
from attnbench.models.forecaster import PatchForecaster

MODULE = "attnbench.bench.hot_scaling"
RESULT_TAG = "ATTNBENCH_POINT_RESULT "  # the line a point's process prints its result on
# Full attention on CPU: a 3288-token point (137 variables x 24 patches) took ~11 s a step at batch 4 on one
# thread; the next default point (7704 tokens) would take ~5x longer. CUDA has no cap by default.
CPU_MAX_TOKENS_FULL = 3500
# At batch 4 the default CPU sweep took 8 min 44 s on 2 shared cores (HOT at 20688 tokens: 65 s a step);
# batch 1 keeps it to a few minutes. Both models get the same batch, so the comparison is unaffected.
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 1, 4
CPU_MEMORY_FRACTION = 0.7  # default cap of a CPU point process: this share of MemAvailable at start
CSV_COLUMNS = [
    "model", "seq_len", "n_vars", "n_patches", "tokens", "batch_size", "n_params", "device", "n_warmup",
    "n_timed", "step_ms_median", "step_ms_iqr", "step_ms_min", "peak_mem_mb", "mem_kind", "status", "reason",
]
METRICS = {"step_ms_median": "faster", "peak_mem_mb": "uses less memory"}


@dataclass(frozen=True)
class PointSpec:
    """Everything one measurement needs; JSON round-trips to a point's process."""

    model: str  # attention registry key
    seq_len: int
    n_vars: int
    batch_size: int
    pred_len: int
    patch_len: int
    d_model: int
    n_heads: int
    n_layers: int
    d_mlp: int
    dropout: float
    warmup: int
    repeats: int
    time_budget_s: float
    device: str
    threads: int
    seed: int
    max_memory_bytes: int | None = None  # CPU only: address-space allowance of the point's process

    @property
    def n_patches(self) -> int:
        return self.seq_len // self.patch_len

    @property
    def tokens(self) -> int:
        return self.n_vars * self.n_patches


# ----------------------------------------------------------------------------- pure measuring functions
def build_model(spec: PointSpec) -> PatchForecaster:
    """The forecaster of a point; per-axis q/k projections exactly when the attention takes them (HOT)."""
    return PatchForecaster(
        spec.seq_len, spec.pred_len, {"name": spec.model}, patch_len=spec.patch_len, d_model=spec.d_model,
        n_heads=spec.n_heads, n_layers=spec.n_layers, d_mlp=spec.d_mlp, dropout=spec.dropout,
        per_axis_qk=get(spec.model).caps.per_axis_qk,
    )


def count_params(spec: PointSpec) -> int:
    """Trainable parameters of the point's model (built on CPU; independent of n_vars)."""
    return sum(p.numel() for p in build_model(spec).parameters() if p.requires_grad)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
               ) -> torch.Tensor:
    """One training step: forward, MSE loss, backward, optimizer step. Returns the detached loss."""
    opt.zero_grad(set_to_none=True)
    loss = F.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


def _warm_up_runtime(spec: PointSpec, dev: torch.device) -> None:
    """One throwaway step of a 1-variable, batch-1 copy of the model: loads kernels and initialises the
    runtime (tens of MB of RSS on CPU) so that this one-time cost is not counted as the point's memory."""
    tiny = dataclasses.replace(spec, n_vars=1, batch_size=1)
    model = build_model(tiny).to(dev)
    train_step(model, torch.optim.AdamW(model.parameters(), lr=1e-4),
               torch.randn(1, tiny.seq_len, 1, device=dev), torch.randn(1, tiny.pred_len, 1, device=dev))
    del model
    gc.collect()


def measure_point(spec: PointSpec) -> dict:
    """Build, train ``warmup`` + ``repeats`` steps and measure one point in this process.

    Returns the measured fields (status ``ok``) or ``oom`` / ``error`` with the reason; never raises for a
    RuntimeError or MemoryError of the point itself. On CPU run it in a fresh process (see module doc).
    """
    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    dev = torch.device(spec.device)
    cuda = dev.type == "cuda"
    mem_kind = "cuda_max_allocated" if cuda else "cpu_peak_rss_increase"
    try:
        _warm_up_runtime(spec, dev)
        if cuda:
            torch.cuda.synchronize(dev)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        else:
            mem_kind += "" if reset_peak_rss() else "_lifetime"
            base = rss_bytes()
        model = build_model(spec).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(spec.batch_size, spec.seq_len, spec.n_vars, device=dev)  # (B, L, N)
        y = torch.randn(spec.batch_size, spec.pred_len, spec.n_vars, device=dev)  # (B, T, N)
        losses: list[torch.Tensor] = []
        sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
        n_warm, times = time_steps(lambda: losses.append(train_step(model, opt, x, y)), spec.warmup,
                                   spec.repeats, spec.time_budget_s, sync)
        peak = (torch.cuda.max_memory_allocated(dev) if cuda else peak_rss_bytes()) - base
        if not torch.stack(losses).isfinite().all():
            return {"status": "error", "reason": "non-finite training loss", "mem_kind": mem_kind}
    except (RuntimeError, MemoryError) as err:  # the next point's empty_cache frees what this one held
        return {"status": "oom" if is_oom(err) else "error", "reason": first_line(err), "mem_kind": mem_kind}
    return {"status": "ok", "reason": "", "n_warmup": n_warm, "n_timed": len(times), **summarize(times),
            "peak_mem_mb": peak / 2**20, "mem_kind": mem_kind}


def run_point_isolated(spec: PointSpec, timeout_s: float) -> dict:
    """:func:`measure_point` in a fresh ``python -m attnbench.bench.hot_scaling`` process.

    A process that dies without a result gives a ``timeout`` / ``killed`` / ``oom`` / ``error`` row with the
    reason (:func:`attnbench.bench.common.run_isolated`).
    """
    cmd = [sys.executable, "-m", MODULE, "--_point", json.dumps(dataclasses.asdict(spec))]
    return run_isolated(cmd, RESULT_TAG, timeout_s, spec.max_memory_bytes)


def _point_main(spec_json: str) -> int:
    """Entry of a point's process: cap memory, measure, print the result on one tagged line."""
    spec = PointSpec(**json.loads(spec_json))
    limit_address_space(spec.max_memory_bytes)
    print(RESULT_TAG + json.dumps(measure_point(spec)), flush=True)
    return 0


# ----------------------------------------------------------------------------- analysis
def crossover(df: pd.DataFrame, metric: str, model: str = "hot", baseline: str = "full") -> pd.DataFrame:
    """Per seq_len, the smallest token count from which ``model`` beats ``baseline`` on ``metric``.

    Only points where both ran (status ``ok``) are paired. The crossover is the smallest paired token count
    T such that ``model`` has the lower ``metric`` at every paired point with tokens >= T; <NA> when the
    baseline is still better (or equal) at the largest paired point. Columns: seq_len, model, baseline,
    metric, crossover_tokens, crossover_n_vars, n_pairs, n_wins, max_tokens_paired.
    """
    if metric not in df.columns:
        raise KeyError(f"metric {metric!r} not in columns {list(df.columns)}")
    ok = df[df["status"] == "ok"]
    rows = []
    for seq_len in sorted(df["seq_len"].unique()):
        a = ok[(ok["model"] == model) & (ok["seq_len"] == seq_len)]
        b = ok[(ok["model"] == baseline) & (ok["seq_len"] == seq_len)]
        pairs = a.merge(b, on=["seq_len", "n_vars", "tokens"], suffixes=("_m", "_b")).sort_values("tokens")
        wins = (pairs[f"{metric}_m"] < pairs[f"{metric}_b"]).to_numpy()
        cross_tokens = cross_vars = pd.NA
        if len(wins) and wins[-1]:
            losses = np.flatnonzero(~wins)
            i = losses[-1] + 1 if losses.size else 0  # first index of the final all-wins run
            cross_tokens, cross_vars = int(pairs["tokens"].iloc[i]), int(pairs["n_vars"].iloc[i])
        rows.append({
            "seq_len": int(seq_len), "model": model, "baseline": baseline, "metric": metric,
            "crossover_tokens": cross_tokens, "crossover_n_vars": cross_vars, "n_pairs": len(wins),
            "n_wins": int(wins.sum()), "max_tokens_paired": int(pairs["tokens"].max()) if len(wins) else pd.NA,
        })
    out = pd.DataFrame(rows)
    for col in ("crossover_tokens", "crossover_n_vars", "max_tokens_paired"):
        out[col] = out[col].astype("Int64")
    return out


def describe_crossover(row: pd.Series) -> str:
    """One sentence for a :func:`crossover` row."""
    what = f"{row['model']} {METRICS.get(row['metric'], 'is lower on ' + row['metric'])} than {row['baseline']}"
    head = f"seq_len={row['seq_len']}: {what}"
    if row["n_pairs"] == 0:
        return f"{head}: no point where both ran."
    span = f"{row['n_wins']}/{row['n_pairs']} paired points, up to {row['max_tokens_paired']} tokens"
    if pd.isna(row["crossover_tokens"]):
        return f"{head}: not within the measured range ({span}; {row['baseline']} wins at the largest)."
    return (f"{head} from {row['crossover_tokens']} tokens ({row['crossover_n_vars']} variables) on "
            f"({span}).")


def results_table(df: pd.DataFrame) -> str:
    """The results as a Markdown table, one row per point, sorted by seq_len, n_vars, model."""
    rows = []
    for _, r in df.sort_values(["seq_len", "n_vars", "model"]).iterrows():
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
        rows.append({
            "seq_len": r["seq_len"], "n_vars": r["n_vars"], "tokens": f"{r['tokens']:,}", "model": r["model"],
            "step ms (median)": fmt(r["step_ms_median"]), "IQR ms": fmt(r["step_ms_iqr"]),
            "min ms": fmt(r["step_ms_min"]), "timed steps": fmt(r["n_timed"], 0),
            "peak MB": fmt(r["peak_mem_mb"]), "status": status.replace("|", "/"),
        })
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def markdown_report(df: pd.DataFrame, crossovers: pd.DataFrame, machine: dict, command: str) -> str:
    """Table, crossover sentences and the set-up, as Markdown."""
    mem = ("torch.cuda.max_memory_allocated minus what was allocated before the model was built"
           if machine["device"] == "cuda" else
           "peak RSS minus the RSS just before the model was built, one fresh process per point")
    mem += " (after one throwaway step of a 1-variable copy, so one-time runtime set-up is not counted)"
    lines = [
        "# HOT vs full attention: training-step time and peak memory", "",
        f"`{command}`", "",
        f"Device: {machine['device_name']} ({machine['device']}), torch {machine['torch']}, "
        f"{machine['threads']} thread(s), {machine['cpu_count']} CPUs; load average "
        f"{machine['loadavg_start'][0]:.2f} at start, {machine['loadavg_end'][0]:.2f} at end; "
        f"wall time {machine['wall_s']:.0f} s.", "",
        f"Batch {machine['batch_size']}, d_model {machine['d_model']}, {machine['n_layers']} layers, "
        f"patch_len {machine['patch_len']}, pred_len {machine['pred_len']}; tokens = n_vars x seq_len / "
        f"patch_len. Step = forward + MSE + backward + AdamW (fp32). Time: median / IQR / min over the timed "
        f"steps after warm-up. Memory: {mem}.", "",
        results_table(df), "",
        "## Crossovers (as measured)", "",
        "Smallest token count from which the model beats the baseline at every larger paired point "
        "(both ran).", "",
    ]
    lines += [f"- {describe_crossover(r)}" for _, r in crossovers.iterrows()]
    return "\n".join(lines) + "\n"


def plot(df: pd.DataFrame, path: Path, title: str = "") -> None:
    """Two log-log panels (step time, peak memory) vs tokens; one line per model x seq_len (ok points)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    fig = Figure(figsize=(11, 4.3), layout="constrained")
    axes = fig.subplots(1, 2)
    ok = df[df["status"] == "ok"]
    models = sorted(df["model"].unique())
    seq_lens = sorted(df["seq_len"].unique())
    styles = ["-", "--", ":", "-."]
    for (model, seq_len), g in ok.groupby(["model", "seq_len"]):
        g = g.sort_values("tokens")
        for ax, col in zip(axes, ["step_ms_median", "peak_mem_mb"], strict=True):
            ax.plot(g["tokens"], g[col], marker="o", color=f"C{models.index(model)}",
                    ls=styles[seq_lens.index(seq_len) % len(styles)], label=f"{model}, seq_len={seq_len}")
    for ax, ylabel in zip(axes, ["training-step time, median (ms)", "peak memory (MB)"], strict=True):
        ax.set(xscale="log", yscale="log", xlabel="tokens (variables x patches)", ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
    if len(ok):
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n-vars", type=int, nargs="+", default=[7, 21, 137, 321, 862])
    p.add_argument("--seq-lens", type=int, nargs="+", default=[96, 336])
    p.add_argument("--models", nargs="+", default=["hot", "full"], choices=available())
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"default {CUDA_BATCH_SIZE} on cuda, {CPU_BATCH_SIZE} on cpu")
    p.add_argument("--pred-len", type=int, default=96)
    p.add_argument("--patch-len", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-heads", type=int, default=8)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--d-mlp", type=int, default=512)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per point (at least 1)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument("--time-budget-s", type=float, default=20.0,
                   help="per point: stop warm-up/repeats early once spent (>= 1 of each still run)")
    p.add_argument("--point-timeout-s", type=float, default=180.0,
                   help="CPU: kill a point's process after this long and record it as 'timeout'")
    p.add_argument("--max-tokens-full", type=int, default=None,
                   help=f"skip 'full' above this many tokens (a 'skipped' row); default {CPU_MAX_TOKENS_FULL} "
                        "on cpu, no limit on cuda; 0 = no limit")
    p.add_argument("--max-memory-gb", type=float, default=None,
                   help=f"CPU: address-space allowance of each point's process; default "
                        f"{CPU_MEMORY_FRACTION:.0%} of MemAvailable at start")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads; 1 because on a shared 2-core machine 2 threads ran up to "
                        "30x slower than 1 next to another busy process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("outputs/bench/hot_scaling"))
    p.add_argument("--_point", help=argparse.SUPPRESS)  # internal: measure one point (JSON PointSpec)
    args = p.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = CPU_BATCH_SIZE if args.device == "cpu" else CUDA_BATCH_SIZE
    for name in ("batch_size", "pred_len", "patch_len", "d_model", "n_heads", "n_layers", "d_mlp", "repeats",
                 "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    if args.warmup < 0:
        p.error(f"--warmup={args.warmup} must be >= 0")
    if min(args.n_vars) < 1:
        p.error(f"--n-vars {args.n_vars}: every value must be >= 1")
    bad = [L for L in args.seq_lens if L < 1 or L % args.patch_len]
    if bad:
        p.error(f"--patch-len={args.patch_len} must divide every --seq-lens value; it does not divide {bad}")
    if args.d_model % args.n_heads:
        p.error(f"--n-heads={args.n_heads} must divide --d-model={args.d_model}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False; use --device cpu")
    return args


def _write_csv(rows: list[dict], path: Path) -> pd.DataFrame:
    df = pd.DataFrame(rows).reindex(columns=CSV_COLUMNS)
    df.to_csv(path, index=False)
    return df


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args._point is not None:
        return _point_main(args._point)
    t_start = time.perf_counter()
    cpu = args.device == "cpu"
    max_tokens_full = args.max_tokens_full if args.max_tokens_full is not None else (
        CPU_MAX_TOKENS_FULL if cpu else 0)
    if args.max_memory_gb is not None:
        allowance = int(args.max_memory_gb * 2**30)
    else:
        avail = mem_available_bytes()
        allowance = int(CPU_MEMORY_FRACTION * avail) if (cpu and avail) else None
    machine = {**machine_info(args.device, args.threads), "loadavg_start": os.getloadavg(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "max_tokens_full": max_tokens_full or None,
               "cpu_point_memory_allowance_gb": round(allowance / 2**30, 2) if (cpu and allowance) else None,
               **{k: getattr(args, k) for k in ("batch_size", "d_model", "n_heads", "n_layers", "d_mlp",
                                                 "patch_len", "pred_len", "warmup", "repeats", "time_budget_s")}}
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "hot_scaling.csv"
    rows: list[dict] = []
    n_params: dict[tuple[str, int], int] = {}
    for seq_len in args.seq_lens:
        for n_vars in args.n_vars:
            for model in args.models:
                spec = PointSpec(
                    model=model, seq_len=seq_len, n_vars=n_vars, batch_size=args.batch_size,
                    pred_len=args.pred_len, patch_len=args.patch_len, d_model=args.d_model,
                    n_heads=args.n_heads, n_layers=args.n_layers, d_mlp=args.d_mlp, dropout=args.dropout,
                    warmup=args.warmup, repeats=args.repeats, time_budget_s=args.time_budget_s,
                    device=args.device, threads=args.threads, seed=args.seed,
                    max_memory_bytes=allowance if cpu else None,
                )
                if (model, seq_len) not in n_params:
                    n_params[model, seq_len] = count_params(spec)
                row = {"model": model, "seq_len": seq_len, "n_vars": n_vars, "n_patches": spec.n_patches,
                       "tokens": spec.tokens, "batch_size": args.batch_size,
                       "n_params": n_params[model, seq_len], "device": args.device}
                if model == "full" and max_tokens_full and spec.tokens > max_tokens_full:
                    result = {"status": "skipped",
                              "reason": f"tokens={spec.tokens} > --max-tokens-full={max_tokens_full}"}
                elif cpu:
                    result = run_point_isolated(spec, args.point_timeout_s)
                else:
                    result = measure_point(spec)
                rows.append({**row, **result})
                df = _write_csv(rows, csv_path)  # after every point: partial results survive a kill
                r = rows[-1]
                print(f"[{time.perf_counter() - t_start:6.0f} s] {model:>10} seq_len={seq_len} n_vars={n_vars} "
                      f"tokens={spec.tokens}: {r['status']} "
                      f"{fmt(r.get('step_ms_median'))} ms {fmt(r.get('peak_mem_mb'))} MB {r.get('reason', '')}",
                      flush=True)
    machine["loadavg_end"] = os.getloadavg()
    machine["wall_s"] = time.perf_counter() - t_start
    crossovers = pd.concat([crossover(df, metric, model=m, baseline="full")
                            for m in args.models if m != "full" for metric in METRICS]
                           ).sort_values(["seq_len", "model"], kind="stable") \
        if "full" in args.models and len(args.models) > 1 else pd.DataFrame()
    command = " ".join(["python", "-m", MODULE, *map(shlex.quote, argv)])
    md = markdown_report(df, crossovers, machine, command)
    (args.out / "hot_scaling.md").write_text(md)
    (args.out / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")
    plot(df, args.out / "hot_scaling.png",
         title=f"{machine['device_name']}, batch {args.batch_size}, d_model {args.d_model}, "
               f"{args.n_layers} layers, {args.threads} thread(s)")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
