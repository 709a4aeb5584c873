"""CPU inference latency of an encoder layer stack vs sequence length, per attention entry (Treeformer Table 4).

The Treeformer paper (Madaan et al., ICLR 2023, ``shared/papers/treeformer.md``) compares inference wall time of
TF-Attention and dense attention on one CPU thread. A point is (entry, length): a stack of ``n_layers``
:class:`~attnbench.layers.seqblock.SeqEncoderLayer` (post-norm, GELU MLP: BERT's layer; sizes from the config, CPU
scale by default, BERT-base with ``d_model=768 n_heads=12 d_mlp=3072 n_layers=12``) whose self-attention is the
entry, in eval mode under ``torch.no_grad``, on a random input (batch, length, d_model) with no padding; one call is
one forward of the stack. Each point reports the stack's attention FLOPs beside its latency
(:mod:`attnbench.attention.flops`: ``attn_gflops`` at balanced leaves / buckets, and for data-dependent entries
``attn_gflops_measured`` from the slots the implementation used on the point's input, untimed).

Time: median, IQR and min over up to ``repeats`` timed calls after ``warmup`` calls, cut short by
``time_budget_s`` (:func:`attnbench.bench.harness.measure_point`). On CPU one persistent process per entry
(``bench.isolation.Worker``) measures its lengths one after another, peak RSS reset between points. A point
predicted from the shorter lengths to exceed ``max_call_s`` or the memory cap, one after a failure of its entry,
and every point once ``max_total_s`` is spent, is a ``skipped`` row (``bench.attention.skip_reason``).
Outputs under ``out_dir``: ``latency.csv``, ``latency.png`` (latency and attention GFLOPs vs length),
``latency.md``, ``machine.json``, and the FLOP table of every sequence entry of the registry at the same sizes
(analytic, untimed): ``attention_flops.csv`` / ``.md``.

    python -m attnbench.bench.latency                                 # make bench-latency
    python -m attnbench.bench.latency entries=[full,treeformer_tf] lengths=[512,1024] repeats=1
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.core.config_store import ConfigStore

from attnbench.analysis import bench as reports
from attnbench.attention import available, build, get
from attnbench.attention.flops import OCCUPANCY, FlopRecorder, Flops, attention_flops
from attnbench.bench import harness
from attnbench.bench.common import fmt
from attnbench.bench.harness import EntryPoint, MeasureConfig, count_params, memory_cap, need
from attnbench.bench.isolation import Workers
from attnbench.layers.seqblock import NORMS, SeqEncoderLayer

MODULE = "attnbench.bench.latency"
STACK = ("d_model", "n_heads", "d_mlp", "n_layers", "norm")  # the config keys that size the stack
CSV_COLUMNS = [
    "entry", "length", "batch", *STACK, "head_dim", "n_params", "attn_gflops", "attn_gflops_matmul",
    "attn_gflops_measured", "device", "threads", "n_warmup", "n_timed", "ms_median", "ms_iqr", "ms_min",
    "peak_mem_mb", "mem_kind", "status", "reason",
]


# ----------------------------------------------------------------------------- config schema
@dataclass
class LatencyBenchConfig(MeasureConfig):
    """``conf/bench/latency.yaml``; range checks in ``__post_init__`` name the key and the fix."""

    entries: list[str] = field(default_factory=lambda: ["full", "linformer", "treeformer_tf", "treeformer_tc"])
    baseline: str = "full"  # speed-ups and crossovers are against it
    lengths: list[int] = field(default_factory=lambda: [512, 1024, 2048, 4096])
    batch: int = 1
    d_model: int = 256
    n_heads: int = 4
    d_mlp: int = 1024
    n_layers: int = 4
    norm: str = "post"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # constructor options per entry
    max_call_s: float = 30.0
    max_total_s: float | None = 900.0
    time_budget_s: float = 10.0
    point_timeout_s: float = 300.0
    out_dir: str = "outputs/bench/latency"

    def __post_init__(self) -> None:
        need(len(self.entries) > 0, "entries", self.entries, "at least one registry entry")
        harness.check_entries([*self.entries, self.baseline], self.options, "tensor entries (caps.tensor) take "
                              "(B, H, *axes, D) inputs; a sequence encoder cannot use them")
        super().__post_init__()
        for k in ("batch", "d_model", "n_heads", "d_mlp", "n_layers"):
            need(getattr(self, k) >= 1, k, getattr(self, k), "must be >= 1")
        need(self.d_model % self.n_heads == 0, "n_heads", self.n_heads, f"must divide d_model={self.d_model}")
        need(self.norm in NORMS, "norm", self.norm, f"allowed: {', '.join(NORMS)}")
        need(len(self.lengths) > 0 and min(self.lengths) >= 1, "lengths", self.lengths, "values >= 1")
        need(self.max_call_s > 0, "max_call_s", self.max_call_s, "must be > 0")
        need(self.max_total_s is None or self.max_total_s > 0, "max_total_s", self.max_total_s, "> 0 or null")


ConfigStore.instance().store(name="latency_bench_schema", node=LatencyBenchConfig)


# ----------------------------------------------------------------------------- one point
@dataclass(frozen=True)
class PointSpec(EntryPoint):
    """One entry at one length and the stack's sizes; JSON round-trips to a point's process."""

    batch: int
    d_model: int
    n_heads: int
    d_mlp: int
    n_layers: int
    norm: str


def attention_config(entry: str, options: dict, length: int) -> dict:
    """The layer's attention config: ``options``, plus ``max_len`` = the length for fixed-length entries
    (Linformer, Super) that do not set it (the layer fills ``head_dim`` itself)."""
    cfg = {"name": entry, **options}
    if get(entry).caps.fixed_len and cfg.get("max_len") is None:
        cfg["max_len"] = length
    return cfg


def build_stack(spec: PointSpec) -> torch.nn.Sequential:
    """``n_layers`` encoder layers with the point's attention, eval mode (no dropout)."""
    attn = attention_config(spec.entry, spec.options, spec.length)
    layers = [SeqEncoderLayer(spec.d_model, spec.n_heads, spec.d_mlp, attn, norm=spec.norm)
              for _ in range(spec.n_layers)]
    return torch.nn.Sequential(*layers).eval()


def stack_flops(stack: torch.nn.Module, batch: int, length: int) -> Flops:
    """Attention FLOPs of one forward of the stack at balanced occupancy (sum over its layers)."""
    total = Flops(0, 0)
    for layer in stack:
        a = layer.attn
        total = total + attention_flops(a.attn, B=batch, H=a.n_heads, q_axes=length, D=a.head_dim)
    return total


def measure_point(spec: PointSpec) -> dict:
    """Latency and peak memory of one forward of the stack (:func:`attnbench.bench.harness.measure_point`; the
    input is not counted), then its attention FLOPs (untimed); ``oom`` / ``error`` rows instead of raising."""
    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    dev = torch.device(spec.device)
    t: dict[str, Any] = {}

    def inputs() -> None:
        t["x"] = torch.randn(spec.batch, spec.length, spec.d_model, device=dev)  # (B, L, E)

    def prepare():
        t["stack"] = stack = build_stack(spec).to(dev)

        def step() -> None:
            with torch.no_grad():
                stack(t["x"])

        return step

    res = harness.measure_point(prepare, spec, before=inputs)
    out = {("ms" + k[len("step_ms"):] if k.startswith("step_ms") else k): v for k, v in res.items()}
    stack = t.get("stack")
    if stack is not None and res["status"] == "ok":
        f = stack_flops(stack, spec.batch, spec.length)
        out.update(n_params=count_params(stack), attn_gflops=f.total / 1e9, attn_gflops_matmul=f.matmul / 1e9)
        if spec.entry in OCCUPANCY:  # one more forward, untimed: the slots the implementation used
            rec = FlopRecorder(stack)
            with torch.no_grad():
                stack(t["x"])
            rec.remove()
            out["attn_gflops_measured"] = rec.summary()["attention_gflops_measured"] * spec.batch
    t.clear()
    return out


def point(task: dict) -> dict:
    """A worker's target (``bench.isolation``): :func:`measure_point` of a JSON :class:`PointSpec`."""
    return measure_point(PointSpec(**task))


# ----------------------------------------------------------------------------- FLOP table
def flop_rows(cfg: LatencyBenchConfig) -> list[dict]:
    """Analytic attention GFLOPs of the stack per forward for *every* sequence entry of the registry (not only
    the timed ones) at each length, with the config's options: one row per (entry, length); an entry that cannot
    be built from its options (a required option unset) is a row with the reason."""
    hd = cfg.d_model // cfg.n_heads
    rows = []
    for entry in [e for e in available() if not get(e).caps.tensor]:
        for length in sorted(cfg.lengths):
            row: dict[str, Any] = {"entry": entry, "length": length}
            try:
                attn = attention_config(entry, dict(cfg.options.get(entry, {})), length)
                module = build(attn.pop("name"), {"head_dim": hd, "n_heads": cfg.n_heads}, **attn)
            except (TypeError, ValueError) as err:
                rows.append({**row, "reason": f"not built: {err} (set options.{entry})"})
                continue
            f = attention_flops(module, B=cfg.batch, H=cfg.n_heads, q_axes=length, D=hd)
            rows.append({**row, "attn_gflops": cfg.n_layers * f.total / 1e9,
                         "attn_gflops_matmul": cfg.n_layers * f.matmul / 1e9, "reason": ""})
    return rows


def flop_markdown(rows: list[dict], cfg: LatencyBenchConfig) -> str:
    """The FLOP table: one row per entry, GFLOPs per length and the fraction of full attention's."""
    df = pd.DataFrame(rows)
    ok = df[df["reason"] == ""]
    full = ok[ok["entry"] == cfg.baseline].set_index("length")["attn_gflops"]
    table = []
    for entry, g in ok.groupby("entry", sort=True):
        cells = {"entry": entry}
        for _, r in g.sort_values("length").iterrows():
            share = f" ({r['attn_gflops'] / full[r['length']]:.0%})" if r["length"] in full.index else ""
            cells[f"L={r['length']:,}"] = f"{r['attn_gflops']:.3g}" + share
        table.append(cells)
    skipped = df[df["reason"] != ""].drop_duplicates("entry")
    return "\n".join([
        f"# Attention GFLOPs per forward: {cfg.n_layers} layers, batch {cfg.batch}, {cfg.n_heads} heads of "
        f"{cfg.d_model // cfg.n_heads}", "",
        "Analytic counts (`attnbench.attention.flops`: matrix products as executed, 2 per multiply-add, plus "
        "elementwise work; softmax 5 per element), non-causal self-attention; \"(p%)\" is the share of "
        f"`{cfg.baseline}`'s. Treeformer TF at balanced leaves. Options: "
        f"{json.dumps(cfg.options) if cfg.options else 'constructor defaults'}.", "",
        reports.table(table), "",
        *[f"- {r['entry']}: {r['reason']}" for _, r in skipped.iterrows()],
    ]) + "\n"


# ----------------------------------------------------------------------------- report
def results_table(df: pd.DataFrame, baseline: str) -> str:
    """One row per length: each entry's median latency (x speed-up vs the baseline) and attention GFLOPs."""
    rows = []
    for length, g in df.groupby("length", sort=True):
        by = g.set_index("entry")
        base = by.loc[baseline] if baseline in by.index else None
        row: dict[str, str] = {"length": f"{length:,}"}
        for entry, r in by.iterrows():
            if r["status"] != "ok":
                row[f"{entry} (ms)"] = r["status"]
            else:
                speed = (f" (x{base['ms_median'] / r['ms_median']:.2f})" if base is not None and entry != baseline
                         and base["status"] == "ok" else "")
                row[f"{entry} (ms)"] = fmt(float(r["ms_median"])) + speed
            row[f"{entry} attn GFLOPs"] = f"{r['attn_gflops']:.3g}" if pd.notna(r["attn_gflops"]) else "-"
        rows.append(row)
    return reports.table(rows)


def markdown_report(df: pd.DataFrame, cfg: LatencyBenchConfig, machine: dict, command: str) -> str:
    """Table, crossovers vs the baseline and the set-up, as Markdown."""
    options = {e: o for e, o in cfg.options.items() if e in set(df["entry"])}
    lines = [
        "# Inference latency of an encoder stack vs sequence length (Treeformer Table 4 setting)", "",
        f"`{command}`", "",
        reports.machine_line(machine, f"batch {cfg.batch}, {cfg.n_layers} x SeqEncoderLayer(d_model {cfg.d_model}, "
                                      f"{cfg.n_heads} heads, d_mlp {cfg.d_mlp}, {cfg.norm}-norm)"), "",
        "One call = one forward of the stack (eval, no_grad, no padding); time: median over the timed calls after "
        "warm-up, \"(xS)\" the speed-up over the baseline. Attention GFLOPs: the stack's attention core per "
        "forward (`attnbench.attention.flops`; balanced leaves for treeformer_tf, `attn_gflops_measured` in the "
        f"CSV from the slots used). Options: {json.dumps(options) if options else 'constructor defaults'}.",
        "", results_table(df, cfg.baseline), "",
        f"## Crossovers vs `{cfg.baseline}` (as measured)", "",
    ]
    if cfg.baseline in set(df["entry"]) and len(set(df["entry"])) > 1:
        t = harness.crossover(df, "ms_median", name="entry", baseline=cfg.baseline, series=[], x="length")
        for _, r in t.iterrows():
            at = ("not reached" if pd.isna(r["crossover"]) else f"from length {r['crossover']:,}")
            lines.append(f"- {r['entry']} faster than {cfg.baseline}: {at} ({r['n_wins']}/{r['n_pairs']} paired "
                         "lengths won)")
    else:
        lines.append("(no baseline to pair with)")
    return "\n".join(lines) + "\n"


def plot(df: pd.DataFrame, path: Path, title: str = "") -> None:
    """Two log-log panels vs length: latency and attention GFLOPs, one colour per entry (ok points)."""
    reports.scaling_figure(df, path, x="length", xlabel="sequence length L", colour="entry", title=title,
                          panels=[reports.Panel("ms_median", "forward latency, median (ms)"),
                                  reports.Panel("attn_gflops", "attention GFLOPs per forward")])


# ----------------------------------------------------------------------------- sweep
def run(cfg: LatencyBenchConfig, command: str = f"python -m {MODULE}") -> pd.DataFrame:
    """The sweep: every length x entry (baseline first); writes every output; returns the rows."""
    t_start, device, out, machine = harness.start_sweep(cfg.device, cfg.threads, cfg.out_dir, command)
    cpu = device == "cpu"
    entries = [cfg.baseline, *[e for e in cfg.entries if e != cfg.baseline]]
    cap = memory_cap(cfg.max_memory_gb, device)
    machine.update({"memory_cap_gb": round(cap / 2**30, 2) if cap else None, "entries": entries,
                    "lengths": sorted(cfg.lengths), "options": cfg.options,
                    **{k: getattr(cfg, k) for k in ("batch", *STACK, "warmup", "repeats", "time_budget_s", "max_call_s",
                                                     "max_total_s")}})
    sizes = {k: getattr(cfg, k) for k in STACK}
    rows: list[dict] = []
    df = pd.DataFrame(columns=CSV_COLUMNS)
    with Workers(f"{MODULE}:point", cap if cpu else None) as workers:  # CPU: one measuring process per entry
        for length in sorted(cfg.lengths):
            for entry in entries:
                row = {"entry": entry, "length": length, "batch": cfg.batch, **sizes,
                       "head_dim": cfg.d_model // cfg.n_heads, "device": device, "threads": cfg.threads}
                reason = harness.budget_spent(t_start, cfg.max_total_s) or harness.skip_reason(
                    df[df["entry"] == entry], length, cfg.max_call_s, cap / 2**20 if cap else None)
                if reason is not None:
                    result: dict = {"status": "skipped", "reason": reason}
                else:
                    spec = PointSpec(entry=entry, options=dict(cfg.options.get(entry, {})), length=length, **sizes,
                                     batch=cfg.batch, warmup=cfg.warmup, repeats=cfg.repeats,
                                     time_budget_s=cfg.time_budget_s, device=device, threads=cfg.threads,
                                     seed=cfg.seed, max_memory_bytes=cap if cpu else None)
                    result = (workers.run(entry, dataclasses.asdict(spec), cfg.point_timeout_s) if cpu
                              else measure_point(spec))
                df = harness.record(rows, {**row, **result}, CSV_COLUMNS, out / "latency.csv", t_start,
                                    f"{entry:>13} L={length}", time_col="ms_median")
    harness.finish_sweep(machine, t_start, out)
    plot(df, out / "latency.png", title=reports.figure_title(
        machine, f"batch {cfg.batch}, {cfg.n_layers} layers, d_model {cfg.d_model}"))
    harness.publish(out / "latency.md", markdown_report(df, cfg, machine, command))
    flops = flop_rows(cfg)  # every sequence entry of the registry, analytic: after the measured report
    harness.write_rows(flops, ["entry", "length", "attn_gflops", "attn_gflops_matmul", "reason"],
                       out / "attention_flops.csv")
    (out / "attention_flops.md").write_text(flop_markdown(flops, cfg))
    return df


main = harness.hydra_main("latency", run)


if __name__ == "__main__":
    main()
