"""Forward and forward+backward time, peak memory and GFLOP/s of every attention entry vs ``full``, by length.

After CAB's efficiency test (Zhang et al., ICML 2023; ``docs/benchmarks.md``): one attention module on random
q, k, v of shape (B, H, L, D) (CAB: B 4, 8 heads, D 64), a fresh module per point, left in training mode,
gradients on. A point is (entry, kind, causal, pass, length): kind ``self`` (S = L) or ``cross``
(S = ``cross_kv_ratio`` * L, never causal), pass ``fwd`` or ``fwd_bwd`` (backward of a random output
gradient into q, k, v and the module's own parameters).

Time: median, IQR and min over up to ``repeats`` timed calls after ``warmup`` calls, both cut short by
``time_budget_s`` (CUDA synchronised); a point whose call is predicted to take more than ``single_call_s`` runs
one timed call and no warm-up at its length (the shorter lengths of its series, just run in the same process,
warmed the code). Memory: on CUDA ``max_memory_allocated`` after ``reset_peak_memory_stats`` minus what was
allocated before the module was built (inputs excluded); on CPU one persistent process
(``bench.isolation.Worker``; a fresh one after a timeout or crash) measures every point one after another, each
as peak RSS minus RSS just before the module was built, the peak reset between points
(``common.reset_peak_rss``). GFLOP/s: the point's FLOPs (:func:`point_gflop`: ``attnbench.attention.flops``,
backward counted as :data:`PASS_FLOPS` says) over its median time.

Order and budgets: CAB's setting (self-attention, non-causal, both passes) over every length first, then the
other settings (causal, cross), each length by length, so that ``max_total_s`` cuts the other settings rather
than the longest lengths. A point predicted (from the shorter lengths of its series) to exceed its call limit
(``subquadratic_max_call_s`` for entries whose FLOP count grows slower than L^2, ``baseline_max_call_s`` for
the baseline, ``max_call_s`` for the rest) or the memory cap, one after a failure of its series, and every
point once ``max_total_s`` is spent, is a ``skipped`` row with the reason; the baseline's such points are
``extrapolated`` rows instead (``extrapolate_baseline``: time at the GFLOP/s of its longest measured length,
memory by :func:`attnbench.bench.harness.predict`), never paired in efficiency lengths. A point that runs out
of memory or raises is an ``oom`` / ``error`` row. Outputs under ``out_dir``: ``attention.csv``,
``attention_time.png``, ``attention_memory.png``, ``efficiency_length.md`` (cost tables, ours beside CAB's
published efficiency lengths), ``machine.json``.

    python -m attnbench.bench.attention                              # CPU defaults, < 10 min
    python -m attnbench.bench.attention entries=[linear,performer] lengths=[256,512] repeats=1
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.core.config_store import ConfigStore

from attnbench.analysis import bench as reports
from attnbench.analysis.reference import confirmed_column
from attnbench.attention import available, build, get
from attnbench.attention.flops import attention_flops, formula_for
from attnbench.bench import harness
from attnbench.bench.common import fmt
from attnbench.bench.harness import FAILED, EntryPoint, MeasureConfig, memory_cap, need, predict
from attnbench.bench.isolation import Worker

MODULE = "attnbench.bench.attention"
KINDS, PASSES = ("self", "cross"), ("fwd", "fwd_bwd")
SERIES = ["kind", "causal", "pass"]  # with entry: one curve over lengths
CSV_COLUMNS = [
    "entry", "kind", "causal", "pass", "length", "kv_length", "batch", "heads", "head_dim", "device",
    "n_warmup", "n_timed", "ms_median", "ms_iqr", "ms_min", "peak_mem_mb", "gflop", "gflop_per_s", "mem_kind",
    "status", "reason",
]
METRICS = {"ms_median": "time", "peak_mem_mb": "memory"}
# FLOPs of a pass in forward FLOPs (matmul, elementwise): a backward computes the gradients of both operands of
# every product (2x its forward FLOPs) and about one elementwise operation per forward one
PASS_FLOPS = {"fwd": (1, 1), "fwd_bwd": (3, 2)}
FLOP_CONVENTION = (
    "GFLOP: one call's FLOPs from the analytic counter `attnbench.attention.flops` (2 per multiply-add; matrix "
    "products as the implementation executes them, so work a mask discards counts, e.g. the whole square of "
    "causal SDPA; data-dependent entries at balanced leaves / buckets; softmax 5 per element), forward+backward "
    "= 3x the forward's matrix-product FLOPs + 2x its elementwise FLOPs; GFLOP/s = GFLOP / median time, on "
    "measured points only.")


# ----------------------------------------------------------------------------- config schema
@dataclass
class AttentionBenchConfig(MeasureConfig):
    """``conf/bench/attention.yaml``; range checks in ``__post_init__`` name the key and the fix."""

    entries: list[str] | None = None  # None: every entry with caps.tensor False
    baseline: str = "full"
    lengths: list[int] | None = None  # None: lengths_cpu / lengths_cuda by device
    lengths_cpu: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048, 4096, 8192, 16384])
    lengths_cuda: list[int] = field(default_factory=lambda: [2**i for i in range(8, 17)])
    batch: int = 4
    heads: int = 8
    head_dim: int = 64
    causal: list[bool] = field(default_factory=lambda: [False, True])
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    passes: list[str] = field(default_factory=lambda: list(PASSES))
    cross_kv_ratio: float = 0.5
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_call_s: float = 3.0  # entries whose FLOPs grow as L^2 (treeformer_tf, super), the baseline aside
    subquadratic_max_call_s: float = 60.0  # entries whose FLOPs grow slower than L^2: the point at 16K tokens
    baseline_max_call_s: float = 12.0  # the baseline runs longer calls: efficiency lengths need it paired
    single_call_s: float = 1.0  # a point predicted slower than this per call: one timed call, no warm-up
    extrapolate_baseline: bool = True  # the baseline's skipped points as extrapolated rows
    max_total_s: float | None = 510.0
    out_dir: str = "outputs/bench/attention"

    def __post_init__(self) -> None:
        harness.check_entries([*(self.entries or []), self.baseline], self.options, "tensor entries (caps.tensor) "
                              "take (B, H, *axes, D) inputs and are not measured here; see attnbench.bench.hot_scaling")
        super().__post_init__()
        for k in ("batch", "heads", "head_dim"):
            need(getattr(self, k) >= 1, k, getattr(self, k), "must be >= 1")
        for k in ("lengths", "lengths_cpu", "lengths_cuda"):
            v = getattr(self, k)
            need(v is None or (len(v) > 0 and min(v) >= 1), k, v, "needs at least one length, each >= 1")
        need(set(self.kinds) <= set(KINDS) and len(self.kinds) > 0, "kinds", self.kinds, f"subset of {KINDS}")
        need(set(self.passes) <= set(PASSES) and len(self.passes) > 0, "passes", self.passes,
              f"subset of {PASSES}")
        need(len(self.causal) > 0, "causal", self.causal, "e.g. [false, true]")
        need(self.cross_kv_ratio > 0, "cross_kv_ratio", self.cross_kv_ratio, "must be > 0")
        for k in ("max_call_s", "subquadratic_max_call_s", "baseline_max_call_s", "single_call_s"):
            need(getattr(self, k) > 0, k, getattr(self, k), "must be > 0")
        need(self.max_total_s is None or self.max_total_s > 0, "max_total_s", self.max_total_s,
              "must be > 0 or null")


ConfigStore.instance().store(name="attention_bench_schema", node=AttentionBenchConfig)


# ----------------------------------------------------------------------------- one point group
@dataclass(frozen=True)
class GroupSpec(EntryPoint):
    """One entry at one length and the (kind, causal, pass) points to measure; JSON round-trips."""

    points: list  # [kind, causal, pass] triples
    batch: int
    heads: int
    head_dim: int
    cross_kv_ratio: float


def default_excluded(baseline: str) -> list[str]:
    """Entries whose kernel is full attention itself (subclasses of it: Optimised / Efficient Attention):
    timing them against ``full`` measures only noise, so the default run leaves them out."""
    from attnbench.attention.full import FullAttention

    base = get(baseline)
    return [e for e in available() if e != baseline and issubclass(get(e), FullAttention)
            and get(e).forward is base.forward]


def kv_length(length: int, kind: str, ratio: float) -> int:
    """Key length S: L for self-attention, max(1, round(ratio * L)) for cross-attention."""
    return length if kind == "self" else max(1, round(ratio * length))


def build_entry(entry: str, options: dict, head_dim: int, kv_len: int, n_heads: int) -> torch.nn.Module:
    """The module of a point: ``options`` plus the sizes it declares (head_dim, n_heads, max_len = the key
    length)."""
    return build(entry, {"head_dim": head_dim, "n_heads": n_heads, "max_len": kv_len}, **options)


def _call(module: torch.nn.Module, q, k, v, causal: bool, grad: torch.Tensor | None) -> None:
    """One forward (and, given ``grad``, backward into q, k, v and the parameters; grads then dropped).
    A shared-QK entry (Reformer) gets q as its keys: the one projection a layer would give it."""
    out = module(q, q if module.shared_qk else k, v, causal=causal)  # (B, H, L, D)
    if grad is not None:
        out.backward(grad)
        for t in (q, k, v, *module.parameters()):
            t.grad = None


def measure_point(spec: GroupSpec, kind: str, causal: bool, pass_: str) -> dict:
    """Time and peak memory of one point in this process (:func:`attnbench.bench.harness.measure_point`; the
    inputs are not counted in memory); ``oom`` / ``error`` rows instead of raising."""
    dev = torch.device(spec.device)
    B, H, L, D = spec.batch, spec.heads, spec.length, spec.head_dim
    S = kv_length(L, kind, spec.cross_kv_ratio)
    bwd = pass_ == "fwd_bwd"
    t: dict[str, torch.Tensor | None] = {}

    def inputs() -> None:
        t["q"] = torch.randn(B, H, L, D, device=dev, requires_grad=bwd)  # (B, H, L, D)
        t["k"], t["v"] = (torch.randn(B, H, S, D, device=dev, requires_grad=bwd) for _ in range(2))  # (B, H, S, D)
        t["grad"] = torch.randn(B, H, L, D, device=dev) if bwd else None

    def prepare():
        module = build_entry(spec.entry, spec.options, D, S, H).to(dev)
        return lambda: _call(module, t["q"], t["k"], t["v"], causal, t["grad"])

    res = harness.measure_point(prepare, spec, before=inputs)
    t.clear()
    return {("ms" + k[len("step_ms"):] if k.startswith("step_ms") else k): v for k, v in res.items()}


def measure_group(spec: GroupSpec) -> list[dict]:
    """Every point of ``spec`` in this process, after one untimed tiny call (runtime set-up not counted)."""
    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    tiny = dataclasses.replace(spec, length=min(spec.length, 32), warmup=0, repeats=1)
    for kind, causal, pass_ in spec.points:
        measure_point(tiny, kind, causal, pass_)
    return [measure_point(spec, kind, causal, pass_) for kind, causal, pass_ in spec.points]


def group(task: dict) -> list[dict]:
    """A worker's target (``bench.isolation``): :func:`measure_group` of a JSON :class:`GroupSpec`."""
    return measure_group(GroupSpec(**task))


def measure_isolated(worker: Worker, spec: GroupSpec, timeout_s: float) -> list[dict]:
    """:func:`measure_group` of ``spec`` in ``worker`` (one persistent process on CPU: torch is imported once
    per sweep, not once per entry or length; the peak RSS is reset before every point). A worker that
    times out or dies gives every point of the group its failure row; the next group starts a fresh one."""
    res = worker.run(dataclasses.asdict(spec), timeout_s)
    return res if isinstance(res, list) else [res] * len(spec.points)


# ----------------------------------------------------------------------------- planning
def subquadratic(entry: str) -> bool:
    """Whether the entry's FLOP count grows slower than L^2 (its ``attention.flops`` formula's power < 2)."""
    return formula_for(entry).power < 2


def call_limit(entry: str, cfg: AttentionBenchConfig) -> float:
    """Seconds a call of ``entry`` may be predicted to take before its point is skipped."""
    if entry == cfg.baseline:
        return cfg.baseline_max_call_s
    return cfg.subquadratic_max_call_s if subquadratic(entry) else cfg.max_call_s


def phase(kind: str, causal: bool) -> int:
    """0 for CAB's setting (self-attention, non-causal: measured first at every length), 1 for the others."""
    return 0 if (kind == "self" and not causal) else 1


def point_gflop(entry: str, options: dict, kind: str, causal: bool, pass_: str, length: int, batch: int,
                heads: int, head_dim: int, cross_kv_ratio: float) -> float:
    """GFLOP of one call of a point (:data:`PASS_FLOPS` x the forward's ``attention_flops``), the module built on
    the meta device (no memory, so any length)."""
    S = kv_length(length, kind, cross_kv_ratio)
    with torch.device("meta"):
        module = build_entry(entry, options, head_dim, S, heads)
    f = attention_flops(module, B=batch, H=heads, q_axes=length, k_axes=S, D=head_dim, causal=causal)
    mm, other = PASS_FLOPS[pass_]
    return (mm * f.matmul + other * f.other) / 1e9


def with_throughput(df: pd.DataFrame) -> pd.DataFrame:
    """``gflop_per_s`` = gflop / median time on ``ok`` rows (empty elsewhere: extrapolated time is not measured)."""
    ok = df["status"] == "ok"
    df["gflop_per_s"] = (df["gflop"].astype(float) / (df["ms_median"].astype(float) / 1e3)).where(ok)
    return df


def extrapolated(history: pd.DataFrame, length: int, gflop: float, why: str) -> dict:
    """The row fields of a baseline point beyond where it runs: time at the GFLOP/s of the longest measured
    length of its series, memory by :func:`~attnbench.bench.harness.predict` from the measured lengths."""
    ok = history[history["status"] == "ok"].sort_values("length")
    last = ok.iloc[-1]
    mem = predict(ok["length"].tolist(), ok["peak_mem_mb"].astype(float).clip(lower=1e-3).tolist(), length)
    return {"status": "extrapolated", "ms_median": float(last["ms_median"]) * gflop / float(last["gflop"]),
            "peak_mem_mb": mem, "reason": f"extrapolated from length {last['length']} (time at its GFLOP/s, "
            f"memory c*L^p) instead of running: {why}"}


def modes(entry: str, cfg: AttentionBenchConfig) -> list[list]:
    """The [kind, causal, pass] points the entry's caps allow (cross-attention is never causal)."""
    caps = get(entry).caps
    out = []
    for kind in cfg.kinds:
        if not (caps.self_attention if kind == "self" else caps.cross_attention):
            continue
        for causal in cfg.causal:
            if causal and (kind == "cross" or not caps.causal):
                continue
            out += [[kind, bool(causal), p] for p in cfg.passes]
    return out


# ----------------------------------------------------------------------------- analysis
def efficiency_lengths(df: pd.DataFrame, metric: str, baseline: str = "full") -> pd.DataFrame:
    """Per entry and (kind, causal, pass): the shortest length from which it beats ``baseline`` on ``metric``
    for good (:func:`attnbench.bench.harness.crossover` over lengths). Columns: entry, kind, causal, pass,
    metric, efficiency_length, n_pairs, n_wins, max_length_paired."""
    t = harness.crossover(df, metric, name="entry", baseline=baseline, series=SERIES, x="length")
    t["causal"] = t["causal"].astype(bool)
    return t.rename(columns={"crossover": "efficiency_length", "max_paired": "max_length_paired"})


CAB_REFERENCE_COLUMNS = ["model", "entry", "time_length", "memory_length", "source", "confirmed"]


def load_cab_reference() -> pd.DataFrame:
    """CAB's published efficiency lengths (``analysis/reference/cab_efficiency_length.csv``; provenance and what
    ``confirmed`` means there: ``cab_efficiency_length.md`` beside it), columns checked, ``confirmed`` as bool."""
    path = resources.files("attnbench.analysis") / "reference" / "cab_efficiency_length.csv"
    with resources.as_file(path) as p:
        ref = pd.read_csv(p, dtype={"entry": "string"})
    if list(ref.columns) != CAB_REFERENCE_COLUMNS:
        raise ValueError(f"cab_efficiency_length.csv columns {list(ref.columns)}; expected {CAB_REFERENCE_COLUMNS}")
    ref["confirmed"] = confirmed_column(ref["confirmed"])
    return ref


def _eff_cell(r: pd.Series) -> str:
    if r["n_pairs"] == 0:
        return "no pair"
    if pd.isna(r["efficiency_length"]):
        return f"not reached (≤ {r['max_length_paired']})"
    return f"{r['efficiency_length']:,} ({r['n_wins']}/{r['n_pairs']})"


def _num(v: float) -> str:
    """3 significant digits below 100, whole numbers with thousands separators above."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def cost_cell(r: pd.Series) -> str:
    """A cost-table cell: ``ms · MB · GFLOP/s`` measured, ``≈ms · ≈MB (extrapolated)``, or the status."""
    if r["status"] == "ok":
        gfs = f" · {_num(r['gflop_per_s'])} GFLOP/s" if pd.notna(r.get("gflop_per_s")) else ""
        return f"{_num(r['ms_median'])} ms · {_num(r['peak_mem_mb'])} MB{gfs}"
    if r["status"] == "extrapolated":
        return f"≈{_num(r['ms_median'])} ms · ≈{_num(r['peak_mem_mb'])} MB (extrapolated)"
    return str(r["status"])


def longest_measured(df: pd.DataFrame, pass_: str) -> pd.Series:
    """Per entry: the longest length with an ``ok`` point in CAB's setting (self, non-causal) for ``pass_``."""
    ok = df[(df["status"] == "ok") & (df["kind"] == "self") & ~df["causal"].astype(bool) & (df["pass"] == pass_)]
    return ok.groupby("entry")["length"].max()


def efficiency_markdown(df: pd.DataFrame, baseline: str, reference: pd.DataFrame, header: str) -> str:
    """The report: cost tables of CAB's setting, then efficiency lengths (CAB's setting beside the paper, every
    setting), as Markdown."""
    t, m = (efficiency_lengths(df, metric, baseline).set_index(["entry", *SERIES]) for metric in METRICS)
    ref = reference.dropna(subset=["entry"]).set_index("entry")
    reach = {p: longest_measured(df, p) for p in PASSES}
    cab_rows, all_rows = [], []
    for key in t.index:
        entry, kind, causal, pass_ = key
        cells = {"time": _eff_cell(t.loc[key]), "memory": _eff_cell(m.loc[key])}
        all_rows.append({"entry": entry, "kind": kind, "causal": causal, "pass": pass_, **cells})
        if (kind, causal, pass_) == ("self", False, "fwd"):
            has = entry in ref.index
            cab_rows.append({"entry": entry, "time (ours)": cells["time"], "memory (ours)": cells["memory"],
                             "longest measured (fwd / fwd+bwd)": " / ".join(
                                 f"{reach[p][entry]:,}" if entry in reach[p].index else "-" for p in PASSES),
                             "CAB model": ref.loc[entry, "model"] if has else "-",
                             "time (CAB)": f"{ref.loc[entry, 'time_length']:,}" if has else "-",
                             "memory (CAB)": f"{ref.loc[entry, 'memory_length']:,}" if has else "-"})
    cab = df[(df["kind"] == "self") & ~df["causal"].astype(bool)]
    costs = [part for p in PASSES if (cab["pass"] == p).any() for part in (
        f"### {p.replace('_', '+')}", "",
        reports.grid(cab[cab["pass"] == p], rows=["entry"], col="length", cell=cost_cell), "")]
    md = reports.table
    return "\n".join([
        header, "",
        "## Cost per call: self-attention, non-causal", "",
        "Cells: median time per call · peak memory · GFLOP/s, measured; `≈… (extrapolated)`: the baseline beyond "
        "where it runs (time at the GFLOP/s of its longest measured length, memory fitted as c·L^p from its last "
        "two measured lengths; never used in efficiency lengths); otherwise the point's status (`skipped`: "
        f"reason in `attention.csv`). {FLOP_CONVENTION}", "",
        *costs,
        f"## Efficiency length vs `{baseline}`", "",
        f"Efficiency length: the shortest measured length from which the entry beats `{baseline}` (strictly "
        "lower median time / peak memory) at every longer length where both were measured (extrapolated rows "
        "are not paired); \"(w/n)\" counts the paired lengths it wins. CAB's numbers are crossings of fitted "
        "cost curves (quadratic for vanilla, linear for the efficient model) on an A100 with dropout 0.3, so they "
        "are a reference, not a target.",
        "", "### CAB's setting: self-attention, non-causal, forward only", "", md(cab_rows), "",
        "### Every setting", "", md(all_rows), "",
        "### CAB reference (all models)", "",
        reports.table(reference.fillna({"entry": "-"}).drop(columns="source")),
        "", f"Source: {reference['source'].iloc[0]}.", "",
    ])


def plot(df: pd.DataFrame, out: Path, title: str = "") -> None:
    """Two figures (time, memory), 2x2 panels (non-causal / causal x fwd / fwd+bwd), log-log, one colour
    per entry, solid self- and dashed cross-attention; ok points only."""
    for metric, fname, ylabel in [("ms_median", "attention_time.png", "time per call, median (ms)"),
                                  ("peak_mem_mb", "attention_memory.png", "peak memory (MB)")]:
        panels = [reports.Panel(metric, ylabel, {"causal": causal, "pass": pass_},
                               f"{'causal' if causal else 'non-causal'}, {pass_.replace('_', '+')}")
                  for causal in (False, True) for pass_ in PASSES]
        reports.scaling_figure(df, out / fname, x="length", xlabel="length L", panels=panels, colour="entry",
                              style="kind", title=title)


# ----------------------------------------------------------------------------- sweep
def plan_group(entry: str, length: int, points: list[list], df: pd.DataFrame, cfg: AttentionBenchConfig,
               base: dict, t_start: float, cap_mb: float | None) -> tuple[list[dict], dict[tuple[int, int], list]]:
    """The rows decided without measuring (skipped / extrapolated) and the points to measure, keyed by their
    (warmup, repeats): (cfg.warmup, cfg.repeats), or (0, 1) for a call predicted slower than ``single_call_s``."""
    done, todo = [], {}
    for kind, causal, pass_ in points:
        row = {**base, "kind": kind, "causal": causal, "pass": pass_,
               "kv_length": kv_length(length, kind, cfg.cross_kv_ratio),
               "gflop": point_gflop(entry, dict(cfg.options.get(entry, {})), kind, causal, pass_, length,
                                    cfg.batch, cfg.heads, cfg.head_dim, cfg.cross_kv_ratio)}
        hist = df[(df["entry"] == entry) & (df["kind"] == kind) & (df["causal"] == causal) & (df["pass"] == pass_)]
        reason = harness.budget_spent(t_start, cfg.max_total_s) or harness.skip_reason(
            hist, length, call_limit(entry, cfg), cap_mb)
        if reason is None:
            t = harness.predicted(hist, length, "ms_median")
            key = (0, 1) if t is not None and t / 1e3 > cfg.single_call_s else (cfg.warmup, cfg.repeats)
            todo.setdefault(key, []).append(([kind, causal, pass_], row))
        elif (entry == cfg.baseline and cfg.extrapolate_baseline and (hist["status"] == "ok").any()
              and not hist["status"].isin(FAILED).any()):
            done.append({**row, **extrapolated(hist, length, row["gflop"], reason)})
        else:
            done.append({**row, "status": "skipped", "reason": reason})
    return done, todo


def run(cfg: AttentionBenchConfig, command: str = f"python -m {MODULE}") -> pd.DataFrame:
    """The sweep: CAB's setting then the others, each length x entry x allowed point; writes every output;
    returns the rows."""
    t_start, device, out, machine = harness.start_sweep(cfg.device, cfg.threads, cfg.out_dir, command)
    cpu = device == "cpu"
    lengths = sorted(cfg.lengths or (cfg.lengths_cpu if cpu else cfg.lengths_cuda))
    same_kernel = default_excluded(cfg.baseline)
    entries = [cfg.baseline, *sorted(e for e in (cfg.entries or [e for e in available() if e not in same_kernel])
                                     if e != cfg.baseline and not get(e).caps.tensor)]
    cap = memory_cap(cfg.max_memory_gb, device)
    excluded = [e for e in available() if get(e).caps.tensor]
    not_default = [] if cfg.entries else same_kernel
    machine.update({"memory_cap_gb": round(cap / 2**30, 2) if cap else None, "entries": entries, "lengths": lengths,
                    "excluded_tensor_entries": excluded, "excluded_same_kernel_entries": not_default,
                    **{k: getattr(cfg, k) for k in ("batch", "heads", "head_dim", "cross_kv_ratio", "warmup", "repeats",
                                                     "time_budget_s", "max_call_s", "subquadratic_max_call_s",
                                                     "baseline_max_call_s", "single_call_s", "max_total_s")}})
    rows: list[dict] = []
    df = pd.DataFrame(columns=CSV_COLUMNS)
    with Worker(f"{MODULE}:group", cap if cpu else None) as worker:  # CPU: one measuring process for all points
        for ph, length, entry in [(ph, L, e) for ph in (0, 1) for L in lengths for e in entries]:
            points = [pt for pt in modes(entry, cfg) if phase(pt[0], pt[1]) == ph]
            if not points:
                continue
            base = {"entry": entry, "length": length, "batch": cfg.batch, "heads": cfg.heads,
                    "head_dim": cfg.head_dim, "device": device}
            done, todo = plan_group(entry, length, points, df, cfg, base, t_start, cap / 2**20 if cap else None)
            rows += done
            for (warmup, repeats), pts in todo.items():
                spec = GroupSpec(entry=entry, options=dict(cfg.options.get(entry, {})), length=length,
                                 points=[pt for pt, _ in pts], batch=cfg.batch, heads=cfg.heads,
                                 head_dim=cfg.head_dim, cross_kv_ratio=cfg.cross_kv_ratio, warmup=warmup,
                                 repeats=repeats, time_budget_s=cfg.time_budget_s, device=device,
                                 threads=cfg.threads, seed=cfg.seed, max_memory_bytes=cap if cpu else None)
                results = (measure_isolated(worker, spec, cfg.point_timeout_s) if cpu
                           else measure_group(spec))
                rows += [{**r, **res} for (_, r), res in zip(pts, results, strict=True)]
            # after every group: partial results survive a kill
            df = harness.write_rows(rows, CSV_COLUMNS, out / "attention.csv")
            done = [r for r in rows if r["entry"] == entry and r["length"] == length
                    and phase(r["kind"], r["causal"]) == ph]
            cells = [f"{r['kind']}{'/causal' if r['causal'] else ''}/{r['pass']} "
                     + (f"{fmt(r['ms_median'], 2)} ms {fmt(r['peak_mem_mb'])} MB" if r["status"] == "ok"
                        else r["status"]) for r in done]
            print(f"[{time.perf_counter() - t_start:6.0f} s] {entry:>13} L={length}: " + ", ".join(cells),
                  flush=True)
    df = with_throughput(df)
    df.to_csv(out / "attention.csv", index=False)
    harness.finish_sweep(machine, t_start, out)
    counts = ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
    header = "\n".join([
        f"# Attention entries vs `{cfg.baseline}`: cost per call and efficiency length", "",
        f"`{command}`", "",
        reports.machine_line(machine, f"B {cfg.batch}, H {cfg.heads}, D {cfg.head_dim}, lengths {lengths}")
        + f" Points: {counts}.",
        "", f"Tensor entries not measured (they take (B, H, *axes, D) inputs): {', '.join(excluded) or 'none'}.",
        *([f"Not measured by default (their kernel is the baseline's SDPA; they change the layer's projections "
           f"instead; name them in `entries` to measure anyway): {', '.join(not_default)}."] if not_default else []),
        "", f"Sub-quadratic entries (FLOPs grow slower than L^2; call limit {cfg.subquadratic_max_call_s:g} s): "
        f"{', '.join(e for e in entries if subquadratic(e)) or 'none'}; others {cfg.max_call_s:g} s, "
        f"`{cfg.baseline}` {cfg.baseline_max_call_s:g} s. CAB's setting (self, non-causal) runs first at every "
        f"length; the other settings get what is left of max_total_s={cfg.max_total_s}.",
    ])
    plot(df, out, title=reports.figure_title(machine, f"B {cfg.batch}, H {cfg.heads}, D {cfg.head_dim}"))
    harness.publish(out / "efficiency_length.md", efficiency_markdown(df, cfg.baseline, load_cab_reference(), header))
    return df


main = harness.hydra_main("attention", run)


if __name__ == "__main__":
    main()
