"""3D classifiers as the volume grows: training-step time and peak memory of HOT, the ViT of the same
backbone (full attention over the flattened patches) and MONAI's 3D ResNet-18.

Volumes of side S (28, 64, 96 by default) with a fixed patch size P (4): the transformers see
(S/P)^3 tokens (343, 4,096, 13,824); HOT attends per axis (S/P keys per query and axis), the ViT over all
tokens. A step is forward + cross-entropy + backward + AdamW on a random batch. Each point runs in a fresh
process on CPU (peak RSS is per process; the peak is measured from just before the model is built), with
``torch.cuda.max_memory_allocated`` on CUDA. A point whose step is predicted (from the smaller volumes of the
same model, quadratic in tokens for the ViT, linear otherwise) to exceed ``--max-step-s`` is a ``skipped``
row; a point that runs out of memory, raises or times out is a row with that status.

    python -m attnbench.bench.volume_scaling                    # CPU defaults (part of `make bench`)
    python -m attnbench.bench.volume_scaling --sizes 28 64 --models hot3d vit3d --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from attnbench.bench.common import (
    first_line,
    fmt,
    is_oom,
    limit_address_space,
    machine_info,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
    run_isolated,
    summarize,
    time_steps,
)
from attnbench.models.classifier3d import VolumeClassifier, resnet3d

MODULE = "attnbench.bench.volume_scaling"
RESULT_TAG = "ATTNBENCH_VOLUME_RESULT "
MODELS = ("hot3d", "vit3d", "resnet3d")
COLUMNS = ["model", "size", "tokens", "batch_size", "n_params", "device", "n_timed", "step_ms_median", "step_ms_iqr",
           "step_ms_min", "peak_mem_mb", "status", "reason"]


@dataclasses.dataclass(frozen=True)
class VolumePoint:
    model: str
    size: int
    patch_size: int
    batch_size: int
    n_classes: int
    warmup: int
    repeats: int
    time_budget_s: float
    device: str
    threads: int
    seed: int = 0


def build(model: str, size: int, patch_size: int, n_classes: int) -> torch.nn.Module:
    """The official-size HOT classifier, its ViT twin, or ResNet-18 (MONAI stem)."""
    if model == "hot3d":
        att = {"name": "hot", "mode": "product", "pool": "sum", "sum_normalize": False}
        return VolumeClassifier(size, n_classes, att, patch_size=patch_size)
    if model == "vit3d":
        return VolumeClassifier(size, n_classes, {"name": "full"}, patch_size=patch_size, per_axis_qk=False)
    if model == "resnet3d":
        return resnet3d(18, n_classes)
    raise ValueError(f"model={model!r}; allowed: {', '.join(MODELS)}")


def measure(p: VolumePoint) -> dict:
    """Time and peak memory of training steps at one point, in this process; failure rows, never raises."""
    torch.set_num_threads(p.threads)
    torch.manual_seed(p.seed)
    dev = torch.device(p.device)
    cuda = dev.type == "cuda"
    try:
        x = torch.randn(p.batch_size, 1, p.size, p.size, p.size, device=dev)  # (B, 1, S, S, S)
        y = torch.randint(p.n_classes, (p.batch_size,), device=dev)
        if cuda:
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        else:
            reset_peak_rss()
            base = rss_bytes()
        model = build(p.model, p.size, p.patch_size, p.n_classes).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
        _, times = time_steps(step, p.warmup, p.repeats, p.time_budget_s, sync)
        peak = (torch.cuda.max_memory_allocated(dev) if cuda else peak_rss_bytes()) - base
    except (RuntimeError, MemoryError) as err:
        return {"status": "oom" if is_oom(err) else "error", "reason": first_line(err)}
    s = summarize(times)
    return {"status": "ok", "reason": "", "n_timed": len(times), **s, "peak_mem_mb": peak / 2**20,
            "n_params": sum(q.numel() for q in model.parameters())}


def measure_isolated(p: VolumePoint, timeout_s: float, max_memory_bytes: int | None) -> dict:
    """:func:`measure` in a fresh process (CPU peak RSS is per process)."""
    cmd = [sys.executable, "-m", MODULE, "--_point", json.dumps(dataclasses.asdict(p)),
           "--_cap", str(max_memory_bytes or 0)]
    return run_isolated(cmd, RESULT_TAG, timeout_s, max_memory_bytes)


def predicted_step_s(history: pd.DataFrame, model: str, tokens: int) -> float | None:
    """Step time at ``tokens`` from the largest measured point of ``model``: quadratic in tokens for the ViT
    (its attention dominates), linear for HOT and the ResNet (voxels grow like tokens)."""
    ok = history[(history["model"] == model) & (history["status"] == "ok")]
    if ok.empty:
        return None
    last = ok.sort_values("tokens").iloc[-1]
    power = 2.0 if model == "vit3d" else 1.0
    return last["step_ms_median"] / 1000 * (tokens / last["tokens"]) ** power


def report(df: pd.DataFrame, machine: dict) -> str:
    rows = []
    for _, r in df.iterrows():
        rows.append({"model": r["model"], "volume": f"{r['size']}^3", "tokens": f"{r['tokens']:,}",
                     "params": fmt(r["n_params"], 0), "step ms (median)": fmt(r["step_ms_median"]),
                     "IQR ms": fmt(r["step_ms_iqr"]), "peak MB": fmt(r["peak_mem_mb"]),
                     "status": r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"})
    head = (f"Device: {machine['device_name']} ({machine['device']}), torch {machine['torch']}, "
            f"{machine['threads']} thread(s); batch {machine['batch_size']}, patch {machine['patch_size']}, "
            f"wall time {machine['wall_s']:.0f} s, load average {machine['loadavg_start'][0]:.2f} -> "
            f"{machine['loadavg_end'][0]:.2f}. Step = forward + CE + backward + AdamW (fp32); tokens = (S/P)^3 "
            "(the ResNet sees voxels). Memory: peak RSS increase from just before the model was built, one "
            "process per point (CPU), or CUDA max allocated.")
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    return "\n".join(["# 3D classifiers vs volume size", "", head, "", table, ""])


def plot(df: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for i, (model, g) in enumerate(df[df["status"] == "ok"].groupby("model")):
        for ax, col in zip(axes, ["step_ms_median", "peak_mem_mb"], strict=True):
            ax.plot(g["size"], g[col], marker="o", color=f"C{i}", label=model)
    for ax, label in zip(axes, ["training-step time, median (ms)", "peak memory (MB)"], strict=True):
        ax.set(xscale="log", yscale="log", xlabel="volume side S (voxels)", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[28, 64, 96])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--n-classes", type=int, default=11)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--time-budget-s", type=float, default=20.0)
    p.add_argument("--max-step-s", type=float, default=30.0, help="skip a point predicted to step slower")
    p.add_argument("--point-timeout-s", type=float, default=300.0)
    p.add_argument("--max-memory-gb", type=float, default=None, help="CPU: address-space cap per point")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("outputs/bench/volume_scaling"))
    p.add_argument("--_point", help=argparse.SUPPRESS)
    p.add_argument("--_cap", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._point is not None:
        limit_address_space(args._cap or None)
        print(RESULT_TAG + json.dumps(measure(VolumePoint(**json.loads(args._point)))), flush=True)
        return 0
    bad = [s for s in args.sizes if s % args.patch_size]
    if bad:
        p.error(f"--patch-size {args.patch_size} must divide every size; not {bad}")
    t0 = time.perf_counter()
    machine = {**machine_info(args.device, args.threads), "loadavg_start": os.getloadavg(),
               "batch_size": args.batch_size, "patch_size": args.patch_size}
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    cap = int(args.max_memory_gb * 2**30) if args.max_memory_gb else None
    for size in sorted(args.sizes):
        for model in args.models:
            tokens = (size // args.patch_size) ** 3
            row = {"model": model, "size": size, "tokens": tokens, "batch_size": args.batch_size,
                   "device": args.device}
            hist = pd.DataFrame(rows, columns=COLUMNS)
            pred = predicted_step_s(hist, model, tokens)
            if pred is not None and pred > args.max_step_s:
                rows.append({**row, "status": "skipped",
                             "reason": f"predicted {pred:.0f} s per step > --max-step-s {args.max_step_s:g}"})
                continue
            pt = VolumePoint(model, size, args.patch_size, args.batch_size, args.n_classes, args.warmup,
                             args.repeats, args.time_budget_s, args.device, args.threads)
            res = measure(pt) if args.device == "cuda" else measure_isolated(pt, args.point_timeout_s, cap)
            rows.append({**row, **res})
            print(f"[{time.perf_counter() - t0:5.0f} s] {model:>8} {size}^3: {res['status']} "
                  f"{fmt(res.get('step_ms_median'))} ms {fmt(res.get('peak_mem_mb'))} MB", flush=True)
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    machine.update(loadavg_end=os.getloadavg(), wall_s=time.perf_counter() - t0)
    df.to_csv(args.out / "volume_scaling.csv", index=False)
    (args.out / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")
    md = report(df, machine)
    (args.out / "volume_scaling.md").write_text(md)
    plot(df, args.out / "volume_scaling.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
