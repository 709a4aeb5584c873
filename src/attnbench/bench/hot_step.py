"""One training step of ``python train.py model=<model> data=<data>`` on a real batch: the fast paths against their
slow references (``layers.attention.set_fast_paths``), timed interleaved in one process.

The step is training's: the composed net and data (batch ``data.batch_size``, 32 for ETTh1), forward on the first
``batch_size`` training windows, the MSE of ``ForecastingModule`` (mean over its horizons), backward, AdamW step.
Both variants start from the same weights and draw the same dropout masks, so their first-step losses agree to float
rounding (``loss_rel_diff``). Each repeat times one step of each variant in turn (a loaded machine slows both
alike): median, IQR and min of the wall time, and the median process CPU time (on one thread, the step's own cost
whatever else runs on the machine). ``compile=true`` also times the fast net under ``torch.compile``, with inductor's
``fallback_random`` (dropout draws from aten's generator, so its masks and loss equal the eager ones);
``first_step_s`` holds its compilation. ``bf16=true`` (the default) also times the fast net under
``torch.autocast("cpu", torch.bfloat16)`` around forward and loss, which is what ``trainer.precision=bf16-mixed``
runs: its matmuls round to bfloat16, so its loss differs from float32's (``loss_rel_diff``, ~1e-3) and its floor
is counted at the measured bfloat16 matmul rate (``bf16_gemm_gflops``). It is only faster on a CPU with native
bfloat16 matmuls (AVX512-BF16 or AMX: ``bf16_native`` in ``machine.json``); elsewhere it is emulated and slower.
``packed=true`` (the default) also times ``fast_packed`` and ``bf16_packed``: those nets with ``dropout_rng=packed``
(``layers.dropout``: masks from 16-bit lanes of 64-bit draws, a quarter of ``nn.Dropout``'s generator work). Their
masks are another draw, so their training loss differs by dropout noise; ``eval_rel_diff`` compares every variant's
loss with dropout off (the same function: float rounding for fast/packed, bfloat16's for bf16).

The floor: ``gflop`` counts the step's FLOPs (``torch.utils.flop_counter``: matmuls, forward and backward) and
``floor_ms`` divides them by this machine's measured ``threads``-thread sgemm rate (``sgemm_gflops``, a float32
matmul of up to 2048-cubes, in ``machine.json``); ``gflops`` is the rate the step achieves (``gflop`` / CPU time).

    python -m attnbench.bench.hot_step                        # model=hot data=ett, 1 thread (make bench-step)
    python -m attnbench.bench.hot_step threads=2 repeats=20

Outputs under ``out_dir``: ``hot_step.csv`` (one row per variant), ``hot_step.md``, ``machine.json``.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch._inductor.config as inductor_config
import torch.nn.functional as F
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from attnbench import hardware
from attnbench.analysis.bench import hot_step_markdown
from attnbench.bench import harness
from attnbench.bench.common import machine_info
from attnbench.bench.harness import _compose, need
from attnbench.layers.attention import set_fast_paths
from attnbench.layers.dropout import use_packed_dropout

MODULE = "attnbench.bench.hot_step"
VARIANTS = ("reference", "fast", "fast_packed", "bf16", "bf16_packed", "compiled")


@dataclass
class HotStepConfig:
    """``conf/bench/hot_step.yaml``; checks name the key and what is allowed."""

    model: str = "hot"  # conf/model/<name>.yaml (a forecaster)
    data: str = "ett"  # conf/data/<name>.yaml (a time-series data set)
    overrides: list[str] = field(default_factory=list)  # more training overrides, e.g. [data.pred_len=720]
    warmup: int = 2
    repeats: int = 10
    threads: int = 1
    seed: int = 0
    compile: bool = False  # also time the fast net under torch.compile (minutes of compilation on a CPU)
    bf16: bool = True  # also time the fast net under bf16 autocast (trainer.precision=bf16-mixed)
    packed: bool = True  # also time the fast (and bf16) net with dropout_rng=packed
    out_dir: str = "outputs/bench/hot_step"

    def __post_init__(self) -> None:
        need(self.warmup >= 0, "warmup", self.warmup, "must be >= 0")
        for k in ("repeats", "threads"):
            need(getattr(self, k) >= 1, k, getattr(self, k), "must be >= 1")


ConfigStore.instance().store(name="hot_step_bench_schema", node=HotStepConfig)


def first_batch(cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``data.batch_size`` training windows of the composed data module: x (B, seq_len, C), y."""
    dm = instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")
    ds = dm.datasets["train"]
    items = [ds[i] for i in range(cfg.data.batch_size)]
    return tuple(torch.stack([torch.as_tensor(it[j]).float() for it in items]) for j in (0, 1))


PHASES = ("forward", "backward", "optimizer")


def step_fn(module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
            phases: dict[str, list[float]] | None = None, autocast: torch.dtype | None = None):
    """One training step of ``module`` (a ForecastingModule): its loss as ``training_step`` computes it. ``phases``:
    each call appends the CPU ms of its forward (with the loss), backward and optimizer step (zero_grad included).
    ``autocast``: forward and loss under ``torch.autocast("cpu", autocast)``, as Lightning's ``bf16-mixed`` does
    (backward and optimizer outside it)."""

    def step() -> float:
        c0 = time.process_time()
        torch.manual_seed(1)  # the same dropout masks for every variant
        opt.zero_grad(set_to_none=True)
        loss = training_loss(module, x, y, autocast)
        c1 = time.process_time()
        loss.backward()
        c2 = time.process_time()
        opt.step()
        c3 = time.process_time()
        if phases is not None:
            for k, dt in zip(PHASES, (c1 - c0, c2 - c1, c3 - c2), strict=True):
                phases.setdefault(k, []).append(1e3 * dt)
        return loss.item()

    return step


def training_loss(module, x: torch.Tensor, y: torch.Tensor, autocast: torch.dtype | None = None) -> torch.Tensor:
    """``module``'s training loss on (x, y) (the mean of its horizons' MSEs), its forward under
    ``torch.autocast("cpu", autocast)`` when given."""
    with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
        out, tgt = module._predict((x, y))
        return torch.stack([F.mse_loss(out[:, :h], tgt[:, :h]) for h in module.horizons]).mean()


def loss_without_dropout(module, x: torch.Tensor, y: torch.Tensor, autocast: torch.dtype | None = None) -> float:
    """The training loss with dropout off (eval mode), the same batch and weights: what every variant computes
    alike but for float rounding, whatever masks it draws."""
    module.eval()
    with torch.no_grad():
        loss = training_loss(module, x, y, autocast).item()
    module.train()
    return loss


def sgemm_gflops(n_max: int = 2048, repeats: int = 3, dtype: torch.dtype = torch.float32,
                 enough_s: float = 0.25) -> float:
    """This machine's matmul rate (float32 unless ``dtype``) on the current threads: the best of ``repeats`` n-cube
    matmuls (CPU time). n doubles from 256 until one matmul takes ``enough_s`` or n reaches ``n_max``: a fast
    float32 rate is measured at 2048, an emulated bfloat16 one (~0.3 GFLOP/s, 1 minute a 2048-cube) at 512."""
    n = min(256, n_max)
    while True:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        c = time.process_time()
        a @ b  # warm-up, and the size check
        if time.process_time() - c >= enough_s or n >= n_max:
            break
        n *= 2
    best = float("inf")
    for _ in range(repeats):
        c = time.process_time()
        a @ b
        best = min(best, time.process_time() - c)
    return 2 * n**3 / max(best, 1e-9) / 1e9


def count_gflop(step) -> float:
    """The FLOPs of one call of ``step`` (matmuls, forward and backward), in GFLOP."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 1e9


def run(cfg: HotStepConfig, command: str) -> pd.DataFrame:
    torch.set_num_threads(cfg.threads)
    with inductor_config.patch(fallback_random=True):  # compiled dropout draws aten's masks: the same loss
        return _run(cfg, command)


def _run(cfg: HotStepConfig, command: str) -> pd.DataFrame:
    train_cfg = _compose("train", [f"model={cfg.model}", f"data={cfg.data}", "model.compile=false", *cfg.overrides])
    x, y = first_batch(train_cfg)
    torch.manual_seed(cfg.seed)
    base = instantiate(train_cfg.model, _convert_="all")
    variants, phases = {}, {}
    wanted = {"bf16": cfg.bf16, "compiled": cfg.compile, "fast_packed": cfg.packed,
              "bf16_packed": cfg.bf16 and cfg.packed}
    names = [v for v in VARIANTS if wanted.get(v, True)]
    eval_loss = {}
    for name in names:
        module = copy.deepcopy(base).train()
        set_fast_paths(module, name != "reference")
        if name.endswith("_packed"):
            use_packed_dropout(module)
        autocast = torch.bfloat16 if name.startswith("bf16") else None
        eval_loss[name] = loss_without_dropout(module, x, y, autocast)
        if name == "compiled":
            module.net.compile()  # in place, as model.compile=true trains (lit/forecasting.py)
        opt = instantiate(train_cfg.model.optimizer, _convert_="all")(module.parameters())
        phases[name] = {}
        variants[name] = step_fn(module, opt, x, y, phases[name], autocast)
    first, first_s = {}, {}
    for name, step in variants.items():  # same weights, same masks: same loss
        t = time.perf_counter()
        first[name] = step()
        first_s[name] = time.perf_counter() - t  # the compiled variant's includes its compilation
    # one more step of the eager variants under the FLOP counter (the compiled net runs the fast one's matmuls)
    gflop = {name: count_gflop(step) for name, step in variants.items() if name != "compiled"}
    gflop["compiled"] = gflop["fast"]
    rate = {"float32": sgemm_gflops()}
    if cfg.bf16:
        rate["bfloat16"] = sgemm_gflops(dtype=torch.bfloat16)
    for _ in range(cfg.warmup):
        for step in variants.values():
            step()
    for p in phases.values():
        p.clear()  # phases of the timed steps only
    wall: dict[str, list[float]] = {n: [] for n in variants}
    cpu: dict[str, list[float]] = {n: [] for n in variants}
    for _ in range(cfg.repeats):
        for name, step in variants.items():
            t, c = time.perf_counter(), time.process_time()
            step()
            wall[name].append(1e3 * (time.perf_counter() - t))
            cpu[name].append(1e3 * (time.process_time() - c))
    rows = []
    for name in variants:
        q = statistics.quantiles(wall[name], n=4) if len(wall[name]) > 1 else [wall[name][0]] * 3
        rows.append({
            "variant": name, "model": cfg.model, "data": cfg.data, "batch_size": len(x), "threads": cfg.threads,
            "repeats": cfg.repeats, "step_ms_median": statistics.median(wall[name]), "step_ms_iqr": q[2] - q[0],
            "step_ms_min": min(wall[name]), "cpu_ms_median": statistics.median(cpu[name]),
            **{f"{k}_cpu_ms": statistics.median(phases[name][k]) for k in PHASES},
            "first_loss": first[name], "loss_rel_diff": abs(first[name] - first["reference"]) / abs(first["reference"]),
            "eval_rel_diff": abs(eval_loss[name] - eval_loss["reference"]) / abs(eval_loss["reference"]),
            "first_step_s": first_s[name], "gflop": gflop[name],
            "gflops": gflop[name] / (statistics.median(cpu[name]) / 1e3),
            "floor_ms": 1e3 * gflop[name] / rate["bfloat16" if name.startswith("bf16") else "float32"],
        })
    df = pd.DataFrame(rows)
    ref = df.loc[df.variant == "reference", "step_ms_median"].item()
    df["speedup"] = ref / df["step_ms_median"]
    df["cpu_speedup"] = df.loc[df.variant == "reference", "cpu_ms_median"].item() / df["cpu_ms_median"]
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "hot_step.csv", index=False)
    machine = machine_info("cpu", cfg.threads) | {"bench": "hot_step", "command": command,
                                                  "sgemm_gflops": rate["float32"]}
    if cfg.bf16:
        machine |= {"bf16_gemm_gflops": rate["bfloat16"], "bf16_native": hardware.cpu_native("bf16")}
    (out / "machine.json").write_text(json.dumps(machine, indent=2))
    table = hot_step_markdown(df, machine)
    (out / "hot_step.md").write_text(f"`{command}`\n\n{table}")
    print(table)
    return df


main = harness.hydra_main("hot_step", run)


if __name__ == "__main__":
    main()
