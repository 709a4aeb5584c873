"""3D classifiers as the volume grows: training-step time and peak memory of HOT, the ViT of the same
backbone (full attention over the flattened patches) and MONAI's 3D ResNet-18.

Models are ``conf/model/<name>.yaml`` (``hot3d``, ``vit3d``, ``resnet3d``): their ``net`` is composed as
``model=<name>`` trains it and built by ``hydra.utils.instantiate`` (``bench.harness.model_net``). Volumes of
side S (28, 64, 96 by default) with a fixed patch size P (4): the transformers see (S/P)^3 tokens (343,
4,096, 13,824); HOT attends per axis (S/P keys per query and axis), the ViT over all tokens. A step is
forward + cross-entropy + backward + AdamW on a random batch. Each point runs in a fresh process on CPU (peak
RSS is per process; the peak is measured from just before the model is built), with
``torch.cuda.max_memory_allocated`` on CUDA. A point whose step is predicted (from the smaller volumes of the
same model, quadratic in tokens for full-attention models, linear otherwise) to exceed ``max_step_s`` is a
``skipped`` row; a point that runs out of memory, raises or times out is a row with that status.

    python -m attnbench.bench.volume_scaling                    # CPU defaults (part of `make bench`)
    python -m attnbench.bench.volume_scaling sizes=[28,64] models=[hot3d,vit3d] device=cuda
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
from attnbench.attention import get
from attnbench.bench import harness
from attnbench.bench.common import fmt
from attnbench.bench.isolation import run_isolated

MODULE = "attnbench.bench.volume_scaling"
COLUMNS = ["model", "size", "tokens", "batch_size", "n_params", "device", "n_timed", "step_ms_median", "step_ms_iqr",
           "step_ms_min", "peak_mem_mb", "status", "reason"]


@dataclass
class VolumeScalingConfig(harness.MeasureConfig):
    """``conf/bench/volume_scaling.yaml``; checks name the key and what is allowed."""

    models: list[str] = field(default_factory=lambda: ["hot3d", "vit3d", "resnet3d"])  # conf/model/<name>.yaml
    sizes: list[int] = field(default_factory=lambda: [28, 64, 96])
    patch_size: int = 4
    batch_size: int = 2
    n_classes: int = 11
    time_budget_s: float = 20.0
    max_step_s: float = 30.0  # skip a point predicted to step slower
    point_timeout_s: float = 300.0
    out_dir: str = "outputs/bench/volume_scaling"

    def __post_init__(self) -> None:
        harness.need(len(self.models) > 0, "models", self.models, "at least one conf/model name, e.g. [hot3d, vit3d]")
        super().__post_init__()
        for k in ("patch_size", "batch_size", "n_classes"):
            harness.need(getattr(self, k) >= 1, k, getattr(self, k), "must be >= 1")
        bad = [s for s in self.sizes if s < 1 or s % self.patch_size]
        harness.need(len(self.sizes) > 0 and not bad, "sizes", self.sizes,
                     f"values divisible by patch_size={self.patch_size}" + (f"; not {bad}" if bad else ""))
        harness.need(self.max_step_s > 0, "max_step_s", self.max_step_s, "must be > 0")


ConfigStore.instance().store(name="volume_scaling_bench_schema", node=VolumeScalingConfig)


@dataclass(frozen=True)
class VolumePoint(harness.PointTiming):
    model: str
    net: dict  # harness.model_net of the model at this size
    size: int
    batch_size: int
    n_classes: int


def net_of(model: str, size: int, cfg: VolumeScalingConfig) -> dict:
    """The model config's net at volume side ``size`` (patch transformers: ``patch_size`` too)."""
    return harness.model_net(model, n_classes=cfg.n_classes, img_size=size, patch_size=cfg.patch_size)


def measure(p: VolumePoint) -> dict:
    """Time and peak memory of training steps at one point, in this process; failure rows, never raises."""
    torch.set_num_threads(p.threads)
    torch.manual_seed(p.seed)
    dev = torch.device(p.device)
    state: dict = {}

    def inputs() -> None:
        state["x"] = torch.randn(p.batch_size, 1, p.size, p.size, p.size, device=dev)  # (B, 1, S, S, S)
        state["y"] = torch.randint(p.n_classes, (p.batch_size,), device=dev)

    def build():
        model = harness.build_net(p.net).to(dev)
        state["n_params"] = harness.count_params(model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(state["x"]), state["y"]).backward()
            opt.step()
        return step

    res = harness.measure_point(build, p, before=inputs)
    return {**res, "n_params": state["n_params"]} if res["status"] == "ok" else res


def point(task: dict) -> dict:
    """A point process's target (``bench.isolation``): :func:`measure` of a JSON :class:`VolumePoint`."""
    return measure(VolumePoint(**task))


def step_power(net: dict) -> float:
    """How a model's step time grows with tokens: 2 when its attention is over all tokens (full), else 1
    (per-axis attention; the ResNet's convolutions grow like voxels)."""
    att = net.get("attention")
    return 1.0 if att is None or get(att["name"]).caps.tensor else 2.0


def predicted_step_s(history: pd.DataFrame, model: str, tokens: int, power: float) -> float | None:
    """Step time at ``tokens`` from the largest measured point of ``model`` (``harness.predict``)."""
    ok = history[(history["model"] == model) & (history["status"] == "ok")].sort_values("tokens")
    if ok.empty:
        return None
    return harness.predict(ok["tokens"].tolist(), (ok["step_ms_median"] / 1000).tolist(), tokens, power)


def report(df: pd.DataFrame, machine: dict) -> str:
    rows = []
    for _, r in df.iterrows():
        rows.append({"model": r["model"], "volume": f"{r['size']}^3", "tokens": f"{r['tokens']:,}",
                     "params": fmt(r["n_params"], 0), "step ms (median)": fmt(r["step_ms_median"]),
                     "IQR ms": fmt(r["step_ms_iqr"]), "peak MB": fmt(r["peak_mem_mb"]),
                     "status": r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"})
    head = (reports.machine_line(machine, f"batch {machine['batch_size']}, patch {machine['patch_size']}")
            + " Step = forward + CE + backward + AdamW (fp32); tokens = (S/P)^3 "
            "(the ResNet sees voxels). Memory: peak RSS increase from just before the model was built, one "
            "process per point (CPU), or CUDA max allocated.")
    table = reports.table(rows)
    return "\n".join(["# 3D classifiers vs volume size", "", head, "", table, ""])


def plot(df: pd.DataFrame, path: Path) -> None:
    """Two log-log panels (step time, peak memory) vs the volume side; one line per model (ok points)."""
    reports.scaling_figure(df, path, x="size", xlabel="volume side S (voxels)", colour="model",
                          panels=[reports.Panel("step_ms_median", "training-step time, median (ms)"),
                                  reports.Panel("peak_mem_mb", "peak memory (MB)")])


def run(cfg: VolumeScalingConfig, command: str = f"python -m {MODULE}") -> pd.DataFrame:
    """The sweep: every size x model; writes every output; returns the rows."""
    t0, device, out, machine = harness.start_sweep(cfg.device, cfg.threads, cfg.out_dir, command)
    machine.update(batch_size=cfg.batch_size, patch_size=cfg.patch_size)
    rows: list[dict] = []
    cap = harness.memory_cap(cfg.max_memory_gb, device) if device == "cpu" else None
    for size in sorted(cfg.sizes):
        for model in cfg.models:
            net = net_of(model, size, cfg)
            tokens = (size // cfg.patch_size) ** 3
            row = {"model": model, "size": size, "tokens": tokens, "batch_size": cfg.batch_size, "device": device}
            pred = predicted_step_s(pd.DataFrame(rows, columns=COLUMNS), model, tokens, step_power(net))
            if pred is not None and pred > cfg.max_step_s:
                rows.append({**row, "status": "skipped",
                             "reason": f"predicted {pred:.0f} s per step > max_step_s={cfg.max_step_s:g}"})
                continue
            pt = VolumePoint(model=model, net=net, size=size, batch_size=cfg.batch_size, n_classes=cfg.n_classes,
                             warmup=cfg.warmup, repeats=cfg.repeats, time_budget_s=cfg.time_budget_s, device=device,
                             threads=cfg.threads, seed=cfg.seed, max_memory_bytes=cap)
            res = measure(pt) if device == "cuda" else \
                run_isolated(f"{MODULE}:point", dataclasses.asdict(pt), cfg.point_timeout_s, pt.max_memory_bytes)
            harness.record(rows, {**row, **res}, COLUMNS, out / "volume_scaling.csv", t0, f"{model:>8} {size}^3")
    df = harness.write_rows(rows, COLUMNS, out / "volume_scaling.csv")
    harness.finish_sweep(machine, t0, out)
    plot(df, out / "volume_scaling.png")
    harness.publish(out / "volume_scaling.md", report(df, machine) + f"\n`{command}`\n")
    return df


main = harness.hydra_main("volume_scaling", run)


if __name__ == "__main__":
    main()
