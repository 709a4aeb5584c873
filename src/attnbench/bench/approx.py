"""Approximation error of every attention entry against exact softmax attention on structured inputs.

For each input pattern and seed, q, k (B, H, N, D) are drawn with a known structure and v ~ N(0, 1); each
entry (built from its ``conf/model/attention/<entry>.yaml`` defaults, required sizes filled, ``options``
overriding) is compared with :func:`~attnbench.attention.full.full_attention_reference` by the relative
Frobenius error ||out - full|| / ||full||, averaged over seeds (std beside it). Patterns:

- ``random``: q, k iid N(0, 1): diffuse attention (logits of std ~1);
- ``clustered``: ``n_clusters`` centres, tokens = centre + noise, q = k, norms set so a token's logit with
  itself is ``sharpness``: sharp, block-structured attention (the case LSH / clustering / trees target);
- ``local``: q = k = sinusoidal position codes (as in Vaswani et al.) scaled to ``sharpness``: attention
  concentrated around the diagonal, decaying with distance (the case windows target);
- ``low_rank``: q, k in a random ``rank``-dimensional subspace: low-rank logits (Nystrom / Linformer).

The row ``mean(v)`` (every query returns the mean value) is the trivial approximation: an entry near it has
learned nothing of the pattern. Tensor entries (HOT) see the N tokens as a ``grid`` (a1 x a2, a1 a2 = N)
and are compared with full attention over the flattened grid. Entries that change the layer's projections
(``caps.projections != "qkv"``) are not kernel approximations and are listed, not measured. Entries with
learned parameters are measured at initialisation (Linformer: random E, F; Treeformer: random hyperplanes).
Entries that can share q and k (``caps.shared_qk``: Reformer) are measured with ``shared_qk: false`` (hashing q
and k with the same rotations): with shared QK the keys are q / |q|, a different function from full attention
on (q, k).

    python -m attnbench.bench.approx                      # writes outputs/bench/approx/approx.{csv,md}
    python -m attnbench.bench.approx length=512 seeds=[0]
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from attnbench.attention import available, build, check_kwargs, get
from attnbench.attention.full import full_attention_reference
from attnbench.attention.registry import with_sizes
from attnbench.bench import harness
from attnbench.config import project_root
from attnbench.errors import ConfigError

PATTERNS = ("random", "clustered", "local", "low_rank")
TRIVIAL = "mean(v)"


@dataclass
class ApproxConfig:
    """``conf/bench/approx.yaml``."""

    entries: list[str] | None = None  # None: every entry whose kernel approximates full attention
    patterns: list[str] = field(default_factory=lambda: list(PATTERNS))
    length: int = 1024
    grid: list[int] = field(default_factory=lambda: [32, 32])  # tensor entries: N as a1 x a2
    batch: int = 2
    heads: int = 4
    head_dim: int = 64
    sharpness: float = 6.0  # logit of a token with itself (clustered, local)
    n_clusters: int = 16
    rank: int = 4
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    out_dir: str = "outputs/bench/approx"

    def __post_init__(self) -> None:
        names = available()
        for e in [*(self.entries or []), *self.options]:
            if e not in names:
                raise ConfigError(f"entries/options: {e!r} is not an attention; allowed: {', '.join(names)}")
        for e, opts in self.options.items():
            try:
                check_kwargs(e, dict(opts))
            except TypeError as err:
                raise ConfigError(f"options.{e}: {err}") from None
        bad = [p for p in self.patterns if p not in PATTERNS]
        if bad or not self.patterns:
            raise ConfigError(f"patterns={self.patterns}: allowed {', '.join(PATTERNS)}")
        if math.prod(self.grid) != self.length:
            raise ConfigError(f"grid={self.grid} must multiply to length={self.length}")
        for k in ("length", "batch", "heads", "head_dim", "n_clusters", "rank"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k}={getattr(self, k)} must be >= 1")
        if not self.seeds:
            raise ConfigError("seeds: give at least one seed")


ConfigStore.instance().store(name="approx_bench_schema", node=ApproxConfig)


# ----------------------------------------------------------------------------- inputs
def make_inputs(pattern: str, cfg: ApproxConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k (B, H, N, D) with the pattern's structure and v (B, H, N, D) ~ N(0, 1), float64."""
    B, H, N, D = cfg.batch, cfg.heads, cfg.length, cfg.head_dim
    g = torch.Generator().manual_seed(seed)
    randn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    v = randn(B, H, N, D)
    norm = math.sqrt(cfg.sharpness * math.sqrt(D))  # |x|^2 / sqrt(D) = sharpness
    if pattern == "random":
        q, k = randn(B, H, N, D), randn(B, H, N, D)
    elif pattern == "clustered":
        centres = randn(B, H, cfg.n_clusters, D)
        z = torch.randint(cfg.n_clusters, (B, H, N), generator=g)
        x = centres.gather(2, z[..., None].expand(-1, -1, -1, D)) + 0.3 * randn(B, H, N, D)
        q = k = norm * torch.nn.functional.normalize(x, dim=-1)
    elif pattern == "local":
        pos = torch.arange(N, dtype=torch.float64)[:, None]  # (N, 1)
        freq = 1.0 / (N / 4) ** (torch.arange(D // 2, dtype=torch.float64) / (D // 2))  # periods 2pi .. ~N
        codes = torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], -1)  # (N, D), |code|^2 = D/2
        q = k = (norm * codes / math.sqrt(D // 2)).expand(B, H, N, D)
    elif pattern == "low_rank":
        basis = torch.linalg.qr(randn(B, H, D, cfg.rank)).Q.transpose(-1, -2)  # (B, H, r, D) orthonormal rows
        q = randn(B, H, N, cfg.rank) @ basis * math.sqrt(D / cfg.rank) * 0.5
        k = randn(B, H, N, cfg.rank) @ basis * math.sqrt(D / cfg.rank) * 0.5
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return q.contiguous(), k.contiguous(), v


def entry_options(entry: str, cfg: ApproxConfig) -> dict[str, Any]:
    """The entry's yaml defaults, then ``options``; ``???`` sizes filled (max_len = N, Linformer k = N/8)."""
    path = Path(project_root()) / "conf" / "model" / "attention" / f"{entry}.yaml"
    node = OmegaConf.load(path) if path.is_file() else OmegaConf.create({})
    opts = {k: (None if OmegaConf.is_missing(node, k) else node[k]) for k in node if k != "name"}
    opts = {**OmegaConf.to_container(OmegaConf.create(opts)), **dict(cfg.options.get(entry, {}))}
    if "k" in opts and opts["k"] is None:  # Linformer's projected length
        opts["k"] = max(1, cfg.length // 8)
    if get(entry).caps.shared_qk:
        opts["shared_qk"] = False
    opts.pop("head_dim", None)  # the benchmark's head size, always
    return with_sizes(entry, {"head_dim": cfg.head_dim, "n_heads": cfg.heads, "max_len": cfg.length}, opts)


def measured_entries(cfg: ApproxConfig) -> tuple[list[str], list[str]]:
    """(entries measured, entries listed as layer-level) in registry order."""
    names = cfg.entries or [e for e in available() if e != "full"]
    layer = [e for e in names if get(e).caps.projections != "qkv"]
    return [e for e in names if e not in layer], layer


def attention_entropy(q: torch.Tensor, k: torch.Tensor) -> float:
    """Mean entropy of the exact attention rows divided by log N (1 = uniform)."""
    p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
    return float(-(p * p.clamp_min(1e-300).log()).sum(-1).mean() / math.log(k.shape[2]))


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref))


def run(cfg: ApproxConfig, command: str = "python -m attnbench.bench.approx") -> pd.DataFrame:
    """Every (entry, pattern, seed): the relative error; writes approx.csv, approx.md and machine.json; returns the
    table."""
    t0, _, folder, machine = harness.start_sweep("cpu", torch.get_num_threads(), cfg.out_dir, command)
    entries, layer_level = measured_entries(cfg)
    rows = []
    for pattern in cfg.patterns:
        for seed in cfg.seeds:
            q, k, v = make_inputs(pattern, cfg, seed)
            ref = full_attention_reference(q, k, v)
            ent = attention_entropy(q, k)
            rows.append({"entry": TRIVIAL, "pattern": pattern, "seed": seed, "entropy": ent,
                         "rel_error": relative_error(v.mean(2, keepdim=True).expand_as(ref), ref), "options": ""})
            for entry in entries:
                opts = entry_options(entry, cfg)
                torch.manual_seed(seed)
                att = build(entry, **opts).double().eval()  # opts hold the sizes (with_sizes)
                tensor = get(entry).caps.tensor
                args = [t.unflatten(2, tuple(cfg.grid)) for t in (q, k, v)] if tensor else [q, k, v]
                with torch.no_grad():
                    out = att(*args)
                out = out.flatten(2, -2) if tensor else out
                shown = {o: x for o, x in opts.items() if o not in ("head_dim", "dropout", "seed")}
                rows.append({"entry": entry, "pattern": pattern, "seed": seed, "entropy": ent,
                             "rel_error": relative_error(out, ref),
                             "options": ", ".join(f"{o}={x}" for o, x in shown.items())})
    df = pd.DataFrame(rows)
    df.to_csv(folder / "approx.csv", index=False)
    md = markdown(df, cfg, layer_level, time.perf_counter() - t0, machine) + f"\n`{command}`\n"
    (folder / "approx.md").write_text(md)
    harness.finish_sweep(machine | {"bench": "approx"}, t0, folder)
    print(md)
    return df


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of the relative error per (entry, pattern): columns ``mean``, ``std``, ``options``."""
    g = df.groupby(["entry", "pattern"], sort=False)
    s = g["rel_error"].agg(["mean", "std"]).reset_index()
    s["options"] = g["options"].first().values
    return s


def markdown(df: pd.DataFrame, cfg: ApproxConfig, layer_level: list[str], wall_s: float, info: dict) -> str:
    s = summary(df)
    patterns = list(dict.fromkeys(df["pattern"]))
    entropy = df.groupby("pattern")["entropy"].mean()
    head = "| entry | options | " + " | ".join(patterns) + " |"
    lines = [head, "|" + "---|" * (len(patterns) + 2),
             "| *attention entropy / log N* | | " + " | ".join(f"*{entropy[p]:.2f}*" for p in patterns) + " |"]
    for entry in dict.fromkeys(s["entry"]):
        cells = []
        for p in patterns:
            r = s[(s["entry"] == entry) & (s["pattern"] == p)].iloc[0]
            cells.append(f"{r['mean']:.3f}" + ("" if pd.isna(r["std"]) else f" ± {r['std']:.3f}"))
        opts = s[s["entry"] == entry]["options"].iloc[0]
        lines.append(f"| {entry} | {opts} | " + " | ".join(cells) + " |")
    intro = (f"Relative error ||out - full|| / ||full|| (mean ± std over seeds {list(cfg.seeds)}), float64, "
             f"B {cfg.batch}, H {cfg.heads}, N {cfg.length} (tensor entries: grid {cfg.grid}), D {cfg.head_dim}, "
             f"self-attention, not causal, sharpness {cfg.sharpness}. {info['cpu_model']}, torch {info['torch']}, "
             f"{wall_s:.0f} s.")
    notes = [f"Not measured (they change the layer's projections, their kernel is SDPA): {', '.join(layer_level)}."
             if layer_level else ""]
    return "\n".join(["# Approximation error vs full attention", "", intro, "", *lines, "", *notes]) + "\n"


main = harness.hydra_main("approx", run)


if __name__ == "__main__":
    main()
