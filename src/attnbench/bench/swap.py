"""How much of a pretrained encoder survives swapping its self-attention, without retraining (SMYRF sec. 5).

Real sentence pairs from a GLUE dev file go through the pretrained model twice: with its dense attention and with
every self-attention replaced by a drop-in registry entry (``models.hf_swap``). Per variant:

- ``rel_error``: ||h - h_dense|| / ||h_dense|| of the last hidden states over the real (non-padding) tokens;
- ``cosine``: mean cosine between the mean-pooled embeddings (how all-MiniLM-L6-v2 embeds a sentence);
- ``key slots``: keys a query's attention row holds (SMYRF: n_hashes x C; local: the window; full: L) and
  ``attn memory``: those slots relative to dense (n_hashes x C / L for SMYRF, the paper's memory column);
  ``real keys``: of those, the non-padding keys, mean over queries and examples (SMYRF clusters a row's real
  tokens only, C per cluster except a short last one, so its slots hold real keys or nothing).

``pad=true`` pads every batch to ``max_length``, as the paper's GLUE runs (length 128); ``pad=false`` encodes
one example at a time without padding. SMYRF gives the same outputs either way (its clusters hold real tokens);
the memory column depends on the padded length. ``variants`` are registry entries with options; the default
grid is SMYRF's hashes x cluster sizes beside windows of the same key budget.

    python -m attnbench.bench.swap                              # writes outputs/bench/swap/swap.{csv,md}
    python -m attnbench.bench.swap pretrained=bert-base-uncased task=mrpc n_examples=128
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.core.config_store import ConfigStore

from attnbench.attention import get
from attnbench.bench import harness
from attnbench.data.catalog import GLUE
from attnbench.errors import ConfigError


def _default_variants() -> list[dict[str, Any]]:
    smyrf = [{"name": "smyrf", "n_hashes": h, "cluster_size": c} for c in (64, 32, 16) for h in (1, 2, 4)]
    local = [{"name": "local", "window": w} for w in (32, 16, 8)]
    return [{"name": "full"}, *smyrf, *local]


@dataclass
class SwapConfig:
    """``conf/bench/swap.yaml``."""

    pretrained: str = "minilm"
    task: str = "rte"
    data_dir: str = "data"
    verify: bool = True  # check the dev file's sha256
    n_examples: int = 64
    max_length: int = 128
    pad: bool = True  # pad to max_length (the paper's GLUE inputs); false: one example at a time, no padding
    batch_size: int = 16
    variants: list[dict[str, Any]] = field(default_factory=_default_variants)
    out_dir: str = "outputs/bench/swap"

    def __post_init__(self) -> None:
        from attnbench.models.hf_swap import check_drop_in

        if self.task not in GLUE:
            raise ConfigError(f"task={self.task!r}; allowed: {', '.join(GLUE)}")
        for k in ("n_examples", "max_length", "batch_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k}={getattr(self, k)} must be >= 1")
        for i, v in enumerate(self.variants):
            if "name" not in v:
                raise ConfigError(f"variants[{i}] has no name")
            try:
                check_drop_in(v["name"])
            except (ValueError, KeyError) as e:
                raise ConfigError(f"variants[{i}]: {e}") from None


ConfigStore.instance().store(name="swap_bench_schema", node=SwapConfig)


def keys_per_query(variant: dict[str, Any], length: int, real: int | None = None) -> float:
    """Key slots of a query's attention row under ``variant`` at (padded) length ``length``; with ``real`` (the
    non-padding tokens), how many of them hold a real key, mean over the real queries: the entry's own
    ``key_slots`` (SMYRF in a swapped encoder clusters the real tokens only: it gets the query padding mask)."""
    return get(variant["name"]).key_slots({k: v for k, v in variant.items() if k != "name"}, length, real)


def _label(variant: dict[str, Any]) -> str:
    opts = ", ".join(f"{k}={v}" for k, v in variant.items() if k != "name")
    return variant["name"] + (f" ({opts})" if opts else "")


@torch.no_grad()
def _encode(model, batches: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden states (N, L, d) and the mask (N, L) of every batch."""
    hs = [model(**b).last_hidden_state for b in batches]
    return torch.cat(hs), torch.cat([b["attention_mask"] for b in batches]).bool()


def _flat(parts: tuple | list) -> torch.Tensor:
    """Batches of (n, L_i, ...) with different L_i -> one (N, max L, ...) tensor, zero-padded (masks: False)."""
    L = max(t.shape[1] for t in parts)
    return torch.cat([torch.nn.functional.pad(t, (0, 0) * (t.ndim - 2) + (0, L - t.shape[1])) for t in parts])


def compare(h: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(relative error over real tokens, mean cosine of the mean-pooled embeddings)."""
    rel = float((h[mask] - ref[mask]).norm() / ref[mask].norm())
    w = mask[..., None].to(h.dtype)
    e, e_ref = (h * w).sum(1) / w.sum(1), (ref * w).sum(1) / w.sum(1)  # (N, d)
    return rel, float(torch.nn.functional.cosine_similarity(e, e_ref, dim=-1).mean())


def run(cfg: SwapConfig, command: str = "python -m attnbench.bench.swap") -> pd.DataFrame:
    from transformers import AutoModel

    from attnbench.data.download import locate
    from attnbench.data.glue import read_glue_tsv
    from attnbench.models.hf_swap import restore_dense, swap_self_attention
    from attnbench.models.hf_text import load_tokenizer, resolve_pretrained

    t0, _, folder, machine = harness.start_sweep("cpu", torch.get_num_threads(), cfg.out_dir, command)
    task = GLUE[cfg.task]
    texts, _ = read_glue_tsv(locate(task.file_key("dev"), task.source("dev"), Path(cfg.data_dir), cfg.verify), task)
    texts = texts[: cfg.n_examples]
    tok = load_tokenizer(cfg.pretrained)
    model = AutoModel.from_pretrained(resolve_pretrained(cfg.pretrained)).eval()
    size = cfg.batch_size if cfg.pad else 1
    batches = [dict(tok(*zip(*texts[i:i + size], strict=True), truncation=True, max_length=cfg.max_length,
                        padding="max_length" if cfg.pad else False, return_tensors="pt"))
               for i in range(0, len(texts), size)]
    ref, mask = zip(*(_encode(model, [b]) for b in batches), strict=True)  # per batch: lengths may differ
    reals = [int(n) for m in mask for n in m.sum(1)]  # real tokens per example
    padded = [m.shape[1] for m in mask for _ in range(m.shape[0])]  # its padded length
    real_len = sum(reals) / len(reals)
    rows = []
    for v in cfg.variants:
        opts = {k: x for k, x in v.items() if k != "name"}
        t1 = time.perf_counter()
        swap_self_attention(model, v["name"], **opts)
        hs = [_encode(model, [b])[0] for b in batches]
        restore_dense(model)
        rel, cos = compare(_flat(hs), _flat(ref), _flat(mask))
        slots = [keys_per_query(v, n) for n in padded]
        real = [keys_per_query(v, n, r) for n, r in zip(padded, reals, strict=True)]
        rows.append({"variant": _label(v), "key_slots": sum(slots) / len(slots),
                     "real_keys": sum(real) / len(real),
                     "attn_memory": sum(s_ / n for s_, n in zip(slots, padded, strict=True)) / len(slots),
                     "rel_error": rel, "cosine": cos, "seconds": time.perf_counter() - t1})
    df = pd.DataFrame(rows)
    df.to_csv(folder / "swap.csv", index=False)
    md = markdown(df, cfg, len(texts), real_len, time.perf_counter() - t0, machine) + f"\n`{command}`\n"
    (folder / "swap.md").write_text(md)
    harness.finish_sweep(machine | {"bench": "swap"}, t0, folder)
    print(md)
    return df


def markdown(df: pd.DataFrame, cfg: SwapConfig, n: int, real_len: float, wall_s: float, info: dict) -> str:
    lines = ["| variant | key slots | real keys | attn memory | rel. error | cosine |", "|---|---|---|---|---|---|"]
    for r in df.itertuples():
        lines.append(f"| {r.variant} | {r.key_slots:.0f} | {r.real_keys:.0f} | {r.attn_memory:.0%} | "
                     f"{r.rel_error:.3f} | {r.cosine:.4f} |")
    how = (f"padded to {cfg.max_length} tokens" if cfg.pad else
           f"one at a time without padding (at most {cfg.max_length} tokens)")
    intro = (f"Pretrained `{cfg.pretrained}`, no retraining: {n} sentence pairs of GLUE {GLUE[cfg.task].folder} dev, "
             f"{how}, {real_len:.0f} real tokens on average. Key slots, real keys: per query row, mean over "
             "examples. rel. error: last hidden states vs dense over real tokens; cosine: mean-pooled embeddings "
             f"vs dense. {info['cpu_model']}, torch {info['torch']}, {wall_s:.0f} s.")
    return "\n".join(["# Swapping a pretrained encoder's attention", "", intro, "", *lines]) + "\n"


main = harness.hydra_main("swap", run)


if __name__ == "__main__":
    main()
