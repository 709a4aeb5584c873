"""Forward and forward+backward time and peak memory of every attention entry vs ``full``, by length.

After CAB's efficiency test (Zhang et al., ICML 2023; ``docs/benchmarks.md``): one attention module on random
q, k, v of shape (B, H, L, D) (CAB: B 4, 8 heads, D 64), a fresh module per point, left in training mode,
gradients on. A point is (entry, kind, causal, pass, length): kind ``self`` (S = L) or ``cross``
(S = ``cross_kv_ratio`` * L, never causal), pass ``fwd`` or ``fwd_bwd`` (backward of a random output
gradient into q, k, v and the module's own parameters).

Time: median, IQR and min over up to ``repeats`` timed calls after ``warmup`` calls, both cut short by
``time_budget_s`` (CUDA synchronised). Memory: on CUDA ``max_memory_allocated`` after
``reset_peak_memory_stats`` minus what was allocated before the module was built (inputs excluded); on CPU
one persistent process per entry (``bench.isolation.Worker``) measures its points one after another, each as peak RSS
minus RSS just before the module was built, the peak reset between points (``common.reset_peak_rss``).

A point predicted (from the shorter lengths of its series) to exceed ``max_call_s`` per call or the memory
cap, one after a failure of its series, and every point once ``max_total_s`` is spent, is a ``skipped``
row with the reason; a point that runs out of memory or raises is an ``oom`` / ``error`` row. Outputs under
``out_dir``: ``attention.csv``, ``attention_time.png``, ``attention_memory.png``, ``efficiency_length.md``
(ours beside CAB's published efficiency lengths), ``machine.json``.

    python -m attnbench.bench.attention                              # CPU defaults, < 10 min
    python -m attnbench.bench.attention entries=[linear,performer] lengths=[256,512] repeats=1
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from attnbench.analysis import bench as reports
from attnbench.attention import available, build, check_kwargs, get
from attnbench.bench import harness
from attnbench.bench.common import fmt, machine_info
from attnbench.bench.harness import MeasureConfig, PointTiming, memory_cap, need, predict, resolve_device
from attnbench.bench.isolation import Worker
from attnbench.config import ConfigError, project_root

MODULE = "attnbench.bench.attention"
KINDS, PASSES = ("self", "cross"), ("fwd", "fwd_bwd")
SERIES = ["kind", "causal", "pass"]  # with entry: one curve over lengths
FAILED = ("oom", "error", "timeout", "killed")
CSV_COLUMNS = [
    "entry", "kind", "causal", "pass", "length", "kv_length", "batch", "heads", "head_dim", "device",
    "n_warmup", "n_timed", "ms_median", "ms_iqr", "ms_min", "peak_mem_mb", "mem_kind", "status", "reason",
]
METRICS = {"ms_median": "time", "peak_mem_mb": "memory"}


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
    max_call_s: float = 3.0
    baseline_max_call_s: float = 12.0  # the baseline runs longer calls: efficiency lengths need it paired
    max_total_s: float | None = 510.0
    out_dir: str = "outputs/bench/attention"

    def __post_init__(self) -> None:
        names = available()
        for e in [*(self.entries or []), self.baseline, *self.options]:
            need(e in names, "entries/baseline/options", e, f"allowed: {', '.join(names)}")
        for e in [*(self.entries or []), self.baseline]:
            need(not get(e).caps.tensor, "entries", e, "tensor entries (caps.tensor) take (B, H, *axes, D) "
                  "inputs and are not measured here; see attnbench.bench.hot_scaling")
        for e, opts in self.options.items():
            try:
                check_kwargs(e, dict(opts))
            except TypeError as err:
                raise ConfigError(f"options.{e}: {err}") from None
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
        for k in ("max_call_s", "baseline_max_call_s"):
            need(getattr(self, k) > 0, k, getattr(self, k), "must be > 0")
        need(self.max_total_s is None or self.max_total_s > 0, "max_total_s", self.max_total_s,
              "must be > 0 or null")


ConfigStore.instance().store(name="attention_bench_schema", node=AttentionBenchConfig)


# ----------------------------------------------------------------------------- one point group
@dataclass(frozen=True)
class GroupSpec(PointTiming):
    """One entry at one length and the (kind, causal, pass) points to measure; JSON round-trips."""

    entry: str
    options: dict
    length: int
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
    """:func:`measure_group` of ``spec`` in ``worker`` (one persistent process per entry on CPU: torch is
    imported once per entry, not once per length; the peak RSS is reset before every point). A worker that
    times out or dies gives every point of the group its failure row; the next group starts a fresh one."""
    res = worker.run(dataclasses.asdict(spec), timeout_s)
    return res if isinstance(res, list) else [res] * len(spec.points)


# ----------------------------------------------------------------------------- planning
def skip_reason(history: pd.DataFrame, length: int, max_call_s: float, max_mem_mb: float | None) -> str | None:
    """Why a point at ``length`` should not run, given the earlier rows of its series (or None)."""
    if history.empty:
        return None
    failed = history[history["status"].isin(FAILED)]
    if len(failed):
        r = failed.iloc[0]
        return f"{r['status']} at length {r['length']}"
    ok = history[history["status"] == "ok"].sort_values("length")
    if ok.empty:
        return None
    Ls = ok["length"].tolist()
    t = predict(Ls, (ok["ms_median"] / 1e3).tolist(), length)
    if t > max_call_s:
        return f"predicted {t:.3g} s a call > max_call_s={max_call_s:g}"
    if max_mem_mb is not None:
        m = predict(Ls, ok["peak_mem_mb"].clip(lower=1e-3).tolist(), length)
        if m > max_mem_mb:
            return f"predicted {m:,.0f} MB > memory cap {max_mem_mb:,.0f} MB"
    return None


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


def load_cab_reference() -> pd.DataFrame:
    """CAB's published efficiency lengths (``analysis/reference/cab_efficiency_length.csv``)."""
    path = resources.files("attnbench.analysis") / "reference" / "cab_efficiency_length.csv"
    with resources.as_file(path) as p:
        return pd.read_csv(p, dtype={"entry": "string"})


def _eff_cell(r: pd.Series) -> str:
    if r["n_pairs"] == 0:
        return "no pair"
    if pd.isna(r["efficiency_length"]):
        return f"not reached (≤ {r['max_length_paired']})"
    return f"{r['efficiency_length']:,} ({r['n_wins']}/{r['n_pairs']})"


def efficiency_markdown(df: pd.DataFrame, baseline: str, reference: pd.DataFrame, header: str) -> str:
    """The efficiency-length tables (CAB's setting beside the paper, then every setting) as Markdown."""
    t, m = (efficiency_lengths(df, metric, baseline).set_index(["entry", *SERIES]) for metric in METRICS)
    ref = reference.dropna(subset=["entry"]).set_index("entry")
    cab_rows, all_rows = [], []
    for key in t.index:
        entry, kind, causal, pass_ = key
        cells = {"time": _eff_cell(t.loc[key]), "memory": _eff_cell(m.loc[key])}
        all_rows.append({"entry": entry, "kind": kind, "causal": causal, "pass": pass_, **cells})
        if (kind, causal, pass_) == ("self", False, "fwd"):
            has = entry in ref.index
            cab_rows.append({"entry": entry, "time (ours)": cells["time"], "memory (ours)": cells["memory"],
                             "CAB model": ref.loc[entry, "model"] if has else "-",
                             "time (CAB)": f"{ref.loc[entry, 'time_length']:,}" if has else "-",
                             "memory (CAB)": f"{ref.loc[entry, 'memory_length']:,}" if has else "-"})
    md = reports.table
    return "\n".join([
        header, "",
        f"Efficiency length: the shortest measured length from which the entry beats `{baseline}` (strictly "
        "lower median time / peak memory) at every longer length where both ran; \"(w/n)\" counts the "
        "paired lengths it wins. CAB's numbers are crossings of fitted cost curves (quadratic for vanilla, "
        "linear for the efficient model) on an A100 with dropout 0.3, so they are a reference, not a target.",
        "", "## CAB's setting: self-attention, non-causal, forward only", "", md(cab_rows), "",
        "## Every setting", "", md(all_rows), "",
        "## CAB reference (all models)", "",
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
def run(cfg: AttentionBenchConfig) -> pd.DataFrame:
    """The sweep: every entry x length x allowed point; writes every output; returns the rows."""
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    cpu = device == "cpu"
    lengths = sorted(cfg.lengths or (cfg.lengths_cpu if cpu else cfg.lengths_cuda))
    same_kernel = default_excluded(cfg.baseline)
    entries = [cfg.baseline, *sorted(e for e in (cfg.entries or [e for e in available() if e not in same_kernel])
                                     if e != cfg.baseline and not get(e).caps.tensor)]
    cap = memory_cap(cfg.max_memory_gb, device)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    excluded = [e for e in available() if get(e).caps.tensor]
    not_default = [] if cfg.entries else same_kernel
    machine = {**machine_info(device, cfg.threads), "loadavg_start": os.getloadavg(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "memory_cap_gb": round(cap / 2**30, 2) if cap else None, "entries": entries, "lengths": lengths,
               "excluded_tensor_entries": excluded, "excluded_same_kernel_entries": not_default,
               **{k: getattr(cfg, k) for k in ("batch", "heads", "head_dim", "cross_kv_ratio", "warmup", "repeats",
                                                "time_budget_s", "max_call_s", "max_total_s")}}
    rows: list[dict] = []
    df = pd.DataFrame(columns=CSV_COLUMNS)
    workers: dict[str, Worker] = {}  # CPU: one persistent measuring process per entry
    try:
        for length in lengths:
            for entry in entries:
                run_pts, base_rows = [], []
                for kind, causal, pass_ in modes(entry, cfg):
                    row = {"entry": entry, "kind": kind, "causal": causal, "pass": pass_, "length": length,
                           "kv_length": kv_length(length, kind, cfg.cross_kv_ratio), "batch": cfg.batch,
                           "heads": cfg.heads, "head_dim": cfg.head_dim, "device": device}
                    hist = df[(df["entry"] == entry) & (df["kind"] == kind) & (df["causal"] == causal)
                              & (df["pass"] == pass_)]
                    elapsed = time.perf_counter() - t_start
                    reason = (f"max_total_s={cfg.max_total_s:g} spent ({elapsed:.0f} s)"
                              if cfg.max_total_s is not None and elapsed > cfg.max_total_s else
                              skip_reason(hist, length, cfg.baseline_max_call_s if entry == cfg.baseline
                                          else cfg.max_call_s, cap / 2**20 if cap else None))
                    if reason is not None:
                        rows.append({**row, "status": "skipped", "reason": reason})
                    else:
                        run_pts.append([kind, causal, pass_])
                        base_rows.append(row)
                if run_pts:
                    spec = GroupSpec(entry=entry, options=dict(cfg.options.get(entry, {})), length=length,
                                     points=run_pts, batch=cfg.batch, heads=cfg.heads, head_dim=cfg.head_dim,
                                     cross_kv_ratio=cfg.cross_kv_ratio, warmup=cfg.warmup, repeats=cfg.repeats,
                                     time_budget_s=cfg.time_budget_s, device=device, threads=cfg.threads,
                                     seed=cfg.seed, max_memory_bytes=cap if cpu else None)
                    if cpu:
                        worker = workers.setdefault(entry, Worker(f"{MODULE}:group", spec.max_memory_bytes))
                        results = measure_isolated(worker, spec, cfg.point_timeout_s)
                    else:
                        results = measure_group(spec)
                    rows += [{**r, **res} for r, res in zip(base_rows, results, strict=True)]
                # after every group: partial results survive a kill
                df = harness.write_rows(rows, CSV_COLUMNS, out / "attention.csv")
                done = [r for r in rows if r["entry"] == entry and r["length"] == length]
                cells = [f"{r['kind']}{'/causal' if r['causal'] else ''}/{r['pass']} "
                         + (f"{fmt(r['ms_median'], 2)} ms {fmt(r['peak_mem_mb'])} MB" if r["status"] == "ok"
                            else r["status"]) for r in done]
                print(f"[{time.perf_counter() - t_start:6.0f} s] {entry:>13} L={length}: " + ", ".join(cells),
                      flush=True)
    finally:
        for w in workers.values():
            w.close()
    machine["loadavg_end"] = os.getloadavg()
    machine["wall_s"] = round(time.perf_counter() - t_start, 1)
    (out / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")
    counts = ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
    header = "\n".join([
        f"# Efficiency length vs `{cfg.baseline}`", "",
        reports.machine_line(machine, f"B {cfg.batch}, H {cfg.heads}, D {cfg.head_dim}, lengths {lengths}")
        + f" Points: {counts}.",
        "", f"Tensor entries not measured (they take (B, H, *axes, D) inputs): {', '.join(excluded) or 'none'}.",
        *([f"Not measured by default (their kernel is the baseline's SDPA; they change the layer's projections "
           f"instead; name them in `entries` to measure anyway): {', '.join(not_default)}."] if not_default else []),
    ])
    (out / "efficiency_length.md").write_text(efficiency_markdown(df, cfg.baseline, load_cab_reference(), header))
    plot(df, out, title=f"{machine['device_name']}, B {cfg.batch}, H {cfg.heads}, D {cfg.head_dim}, "
                        f"{cfg.threads} thread(s)")
    print((out / "efficiency_length.md").read_text())
    return df


@hydra.main(config_path=os.path.join(project_root(), "conf"), config_name="bench/attention", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg))  # to_object builds the dataclass: runs its checks


if __name__ == "__main__":
    main()
