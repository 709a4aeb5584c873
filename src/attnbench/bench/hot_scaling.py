"""Training-step time and peak memory of HOT vs the flattened full-attention baseline as variables grow.

A point is (model, seq_len, n_vars): the ``net`` of ``conf/model/<model>.yaml`` (a
:class:`~attnbench.models.forecaster.PatchForecaster`, exactly as ``model=<model>`` trains it; ``d_model``,
``n_layers``, ... override every model's sizes) whose token tensor has N = n_vars * seq_len / patch_len tokens; ``hot``
attends per axis (variables, patches), ``full`` over the N flattened tokens. One training step = forward +
MSE loss + backward + AdamW step on random data x (B, seq_len, n_vars) -> y (B, pred_len, n_vars), fp32.

Time: median, IQR and min over ``repeats`` timed steps after ``warmup`` steps (CUDA synchronised), both cut
short by ``time_budget_s`` (``n_warmup`` / ``n_timed`` record what ran). Memory: on CUDA
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was allocated before the
model was built; on CPU every point runs in a fresh process (``bench.isolation.run_isolated``; ``ru_maxrss``
is a process-lifetime peak) and reports its peak RSS minus its RSS just before the model was built (Linux).
Both follow one throwaway step of a 1-variable copy of the model, so one-time runtime initialisation
(~80 MB of RSS on CPU) is not counted; on CPU the peak is then reset to the current RSS.

A point that runs out of memory or raises is a row with its status and reason, never a crash; the baseline
beyond ``max_tokens_full`` tokens is a ``skipped`` row. Outputs under ``out_dir``: ``hot_scaling.csv``,
``hot_scaling.png``, ``hot_scaling.md`` (table + crossovers), ``machine.json``.

    python -m attnbench.bench.hot_scaling                      # CPU defaults, a few minutes (make bench)
    python -m attnbench.bench.hot_scaling device=cuda          # no token cap for full on CUDA
    python -m attnbench.bench.hot_scaling n_vars=[3,7] seq_lens=[16] pred_len=8 d_model=32 n_layers=1
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from hydra.core.config_store import ConfigStore

from attnbench.analysis import bench as reports
from attnbench.bench import harness
from attnbench.bench.common import fmt
from attnbench.bench.harness import (
    MeasureConfig,
    PointTiming,
    build_net,
    count_params,
    memory_cap,
    model_net,
    need,
)
from attnbench.bench.isolation import run_isolated

MODULE = "attnbench.bench.hot_scaling"
# Full attention on CPU: a 3288-token point (137 variables x 24 patches) took ~11 s a step at batch 4 on one
# thread; the next default point (7704 tokens) would take ~5x longer. CUDA has no cap by default.
CPU_MAX_TOKENS_FULL = 3500
# At batch 4 the default CPU sweep took 8 min 44 s on 2 shared cores (HOT at 20688 tokens: 65 s a step);
# batch 1 keeps it to a few minutes. Both models get the same batch, so the comparison is unaffected.
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 1, 4
CSV_COLUMNS = [
    "model", "seq_len", "n_vars", "n_patches", "tokens", "batch_size", "n_params", "device", "n_warmup",
    "n_timed", "step_ms_median", "step_ms_iqr", "step_ms_min", "peak_mem_mb", "mem_kind", "status", "reason",
]
NET_SIZES = ("patch_len", "d_model", "n_heads", "n_layers", "d_mlp", "dropout")  # config keys that set the nets
METRICS = {"step_ms_median": "faster", "peak_mem_mb": "uses less memory"}


@dataclass
class HotScalingConfig(MeasureConfig):
    """``conf/bench/hot_scaling.yaml``; checks name the key and what is allowed."""

    models: list[str] = field(default_factory=lambda: ["hot", "full"])  # conf/model/<name>.yaml
    baseline: str = "full"  # crossovers are against it; max_tokens_full caps it
    # sizes of every model's net; None: the model config's own (conf/model/<model>.yaml)
    patch_len: int | None = None
    d_model: int | None = None
    n_heads: int | None = None
    n_layers: int | None = None
    d_mlp: int | None = None
    dropout: float | None = None
    n_vars: list[int] = field(default_factory=lambda: [7, 21, 137, 321, 862])
    seq_lens: list[int] = field(default_factory=lambda: [96, 336])
    pred_len: int = 96
    batch_size: int | None = None  # None: CPU_BATCH_SIZE / CUDA_BATCH_SIZE by device
    warmup: int = 2
    repeats: int = 5
    time_budget_s: float = 20.0
    point_timeout_s: float = 180.0
    max_tokens_full: int | None = None  # None: CPU_MAX_TOKENS_FULL on cpu, no limit on cuda; 0: no limit
    out_dir: str = "outputs/bench/hot_scaling"

    def __post_init__(self) -> None:
        need(len(self.models) > 0, "models", self.models, "at least one conf/model name, e.g. [hot, full]")
        super().__post_init__()
        need(self.pred_len >= 1, "pred_len", self.pred_len, "must be >= 1")
        for k in NET_SIZES[:-1]:
            v = getattr(self, k)
            need(v is None or v >= 1, k, v, "must be >= 1 or null (the model config's)")
        need(self.dropout is None or 0 <= self.dropout < 1, "dropout", self.dropout, "in [0, 1) or null")
        need(self.batch_size is None or self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1 or null")
        need(len(self.n_vars) > 0 and min(self.n_vars) >= 1, "n_vars", self.n_vars, "values >= 1")
        need(len(self.seq_lens) > 0 and min(self.seq_lens) >= 1, "seq_lens", self.seq_lens, "values >= 1")
        need(self.max_tokens_full is None or self.max_tokens_full >= 0, "max_tokens_full", self.max_tokens_full,
             ">= 0 (0: no limit) or null")


ConfigStore.instance().store(name="hot_scaling_bench_schema", node=HotScalingConfig)


@dataclass(frozen=True)
class PointSpec(PointTiming):
    """Everything one measurement needs; JSON round-trips to a point's process."""

    model: str  # conf/model name
    net: dict  # its composed net (seq_len, pred_len set): harness.model_net
    seq_len: int
    n_vars: int
    batch_size: int
    pred_len: int
    patch_len: int

    @property
    def n_patches(self) -> int:
        return self.seq_len // self.patch_len

    @property
    def tokens(self) -> int:
        return self.n_vars * self.n_patches


# ----------------------------------------------------------------------------- measuring
def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
               ) -> torch.Tensor:
    """One training step: forward, MSE loss, backward, optimizer step. Returns the detached loss."""
    opt.zero_grad(set_to_none=True)
    loss = F.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


def measure_point(spec: PointSpec) -> dict:
    """Build, train ``warmup`` + ``repeats`` steps and measure one point in this process
    (:func:`attnbench.bench.harness.measure_point`). On CPU run it in a fresh process (see module doc)."""
    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    dev = torch.device(spec.device)
    losses: list[torch.Tensor] = []

    def warm_up_runtime() -> None:  # a 1-variable, batch-1 step: one-time runtime set-up is not counted
        model = build_net(spec.net).to(dev)
        train_step(model, torch.optim.AdamW(model.parameters(), lr=1e-4),
                   torch.randn(1, spec.seq_len, 1, device=dev), torch.randn(1, spec.pred_len, 1, device=dev))

    def build():
        model = build_net(spec.net).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(spec.batch_size, spec.seq_len, spec.n_vars, device=dev)  # (B, L, N)
        y = torch.randn(spec.batch_size, spec.pred_len, spec.n_vars, device=dev)  # (B, T, N)
        return lambda: losses.append(train_step(model, opt, x, y))

    def check() -> str | None:
        return None if torch.stack(losses).isfinite().all() else "non-finite training loss"

    return harness.measure_point(build, spec, before=warm_up_runtime, check=check)


def point(task: dict) -> dict:
    """A point process's target (``bench.isolation``): :func:`measure_point` of a JSON :class:`PointSpec`."""
    return measure_point(PointSpec(**task))


def run_point_isolated(spec: PointSpec, timeout_s: float) -> dict:
    """:func:`measure_point` in a fresh process; a dead process gives a failure row (``bench.isolation``)."""
    return run_isolated(f"{MODULE}:point", dataclasses.asdict(spec), timeout_s, spec.max_memory_bytes)


# ----------------------------------------------------------------------------- analysis
def crossover(df: pd.DataFrame, metric: str, model: str = "hot", baseline: str = "full") -> pd.DataFrame:
    """Per seq_len, the smallest token count from which ``model`` beats ``baseline`` on ``metric`` for good
    (:func:`attnbench.bench.harness.crossover`). Columns: seq_len, model, baseline, metric, crossover_tokens,
    crossover_n_vars, n_pairs, n_wins, max_tokens_paired."""
    t = harness.crossover(df[df["model"].isin([model, baseline])], metric, name="model", baseline=baseline,
                          series=["seq_len"], x="tokens", carry=["n_vars"])
    t = t.rename(columns={"crossover": "crossover_tokens", "n_vars": "crossover_n_vars",
                          "max_paired": "max_tokens_paired"}).assign(baseline=baseline)
    return t[["seq_len", "model", "baseline", "metric", "crossover_tokens", "crossover_n_vars", "n_pairs", "n_wins",
              "max_tokens_paired"]]


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
    return reports.table(rows)


def markdown_report(df: pd.DataFrame, crossovers: pd.DataFrame, machine: dict, command: str) -> str:
    """Table, crossover sentences and the set-up, as Markdown."""
    mem = ("torch.cuda.max_memory_allocated minus what was allocated before the model was built"
           if machine["device"] == "cuda" else
           "peak RSS minus the RSS just before the model was built, one fresh process per point")
    mem += " (after one throwaway step of a 1-variable copy, so one-time runtime set-up is not counted)"
    lines = [
        "# HOT vs full attention: training-step time and peak memory", "",
        f"`{command}`", "",
        reports.machine_line(machine, f"{machine['cpu_count']} CPUs"), "",
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
    reports.scaling_figure(df, path, x="tokens", xlabel="tokens (variables x patches)", colour="model",
                          style="seq_len", title=title,
                          panels=[reports.Panel("step_ms_median", "training-step time, median (ms)"),
                                  reports.Panel("peak_mem_mb", "peak memory (MB)")])


# ----------------------------------------------------------------------------- sweep
def run(cfg: HotScalingConfig, command: str = f"python -m {MODULE}") -> pd.DataFrame:
    """The sweep: every seq_len x n_vars x model; writes every output; returns the rows."""
    t_start, device, out, machine = harness.start_sweep(cfg.device, cfg.threads, cfg.out_dir, command)
    cpu = device == "cpu"
    batch_size = cfg.batch_size or (CPU_BATCH_SIZE if cpu else CUDA_BATCH_SIZE)
    max_tokens_full = cfg.max_tokens_full if cfg.max_tokens_full is not None else (CPU_MAX_TOKENS_FULL if cpu else 0)
    allowance = memory_cap(cfg.max_memory_gb, device) if cpu else None
    sizes = {k: getattr(cfg, k) for k in NET_SIZES if getattr(cfg, k) is not None}
    nets = {(m, L): model_net(m, **sizes, seq_len=L, pred_len=cfg.pred_len)
            for m in cfg.models for L in cfg.seq_lens}
    n_params = {key: count_params(build_net(net)) for key, net in nets.items()}  # builds each: bad sizes fail here
    first = nets[cfg.models[0], cfg.seq_lens[0]]
    machine.update({"max_tokens_full": max_tokens_full or None,
                    "cpu_point_memory_allowance_gb": round(allowance / 2**30, 2) if allowance else None,
                    "batch_size": batch_size, **{k: first[k] for k in ("d_model", "n_heads", "n_layers", "d_mlp",
                                                                        "patch_len")},
                    **{k: getattr(cfg, k) for k in ("pred_len", "warmup", "repeats", "time_budget_s")}})
    rows: list[dict] = []
    df = pd.DataFrame(columns=CSV_COLUMNS)
    for seq_len in cfg.seq_lens:
        for n_vars in cfg.n_vars:
            for model in cfg.models:
                net = nets[model, seq_len]
                spec = PointSpec(model=model, net=net, seq_len=seq_len, n_vars=n_vars, batch_size=batch_size,
                                 pred_len=cfg.pred_len, patch_len=net["patch_len"], warmup=cfg.warmup,
                                 repeats=cfg.repeats, time_budget_s=cfg.time_budget_s, device=device,
                                 threads=cfg.threads, seed=cfg.seed, max_memory_bytes=allowance)
                row = {"model": model, "seq_len": seq_len, "n_vars": n_vars, "n_patches": spec.n_patches,
                       "tokens": spec.tokens, "batch_size": batch_size, "n_params": n_params[model, seq_len],
                       "device": device}
                if model == cfg.baseline and max_tokens_full and spec.tokens > max_tokens_full:
                    result = {"status": "skipped",
                              "reason": f"tokens={spec.tokens} > max_tokens_full={max_tokens_full}"}
                elif cpu:
                    result = run_point_isolated(spec, cfg.point_timeout_s)
                else:
                    result = measure_point(spec)
                df = harness.record(rows, {**row, **result}, CSV_COLUMNS, out / "hot_scaling.csv", t_start,
                                    f"{model:>10} seq_len={seq_len} n_vars={n_vars} tokens={spec.tokens}")
    harness.finish_sweep(machine, t_start, out)
    others = [m for m in cfg.models if m != cfg.baseline]
    crossovers = pd.concat([crossover(df, metric, model=m, baseline=cfg.baseline) for m in others
                            for metric in METRICS]).sort_values(["seq_len", "model"], kind="stable") \
        if cfg.baseline in cfg.models and others else pd.DataFrame()
    plot(df, out / "hot_scaling.png", title=reports.figure_title(
        machine, f"batch {batch_size}, d_model {machine['d_model']}, {machine['n_layers']} layers"))
    harness.publish(out / "hot_scaling.md", markdown_report(df, crossovers, machine, command))
    return df


main = harness.hydra_main("hot_scaling", run)


if __name__ == "__main__":
    main()
