"""Our ``attention.bigbird`` beside HF transformers' ``BigBirdBlockSparseAttention`` (the port of the official
google-research/bigbird ``bigbird_block_sparse_attention``, ITC) on identical q, k, v and random blocks.

    python scripts/official/compare_bigbird.py                                # the installed transformers
    git clone https://github.com/huggingface/transformers /tmp/transformers
    python scripts/official/compare_bigbird.py --official /tmp/transformers   # a checkout (src/ first on sys.path)

HF's module projects one hidden state into q, k, v; here its ``query`` returns the hidden state itself (the hidden
state *is* our q, (B, L, H D)) and its ``key`` / ``value`` return our k, v, so its kernel runs on our tensors
unchanged. Its masks come from ``BigBirdModel.create_masks_for_block_sparse_attn`` (1 = real token).

Random blocks: HF draws them with numpy in training mode (``np.random.seed(seed)`` on every call, seed = the layer
index; in eval mode it uses block 0 everywhere, below). While its forward runs, its two drawing methods are wrapped
(run unchanged, their result recorded), and the recorded blocks are passed to our ``bigbird_attention`` as ``rand``
(rows 1 .. nb - 2; the global rows have none). Each line (``max |ours - official|``; float64, batch 2, 2 heads, head
size 8; a second batch row padded where stated, compared on its real queries, HF zeroes its padded ones):

- ``train L=.. b=.. r=..``: training mode (dropout 0), HF's random blocks injected into ours. Lengths 1024 / 3072 /
  4096 take HF's "old plan" (random blocks among the first 1024 tokens), the others its per-head plan.
- ``eval L=.. b=.. r=.. vs ours r=0``: HF in eval mode sets every random block to block 0, which its kernel then
  gathers r more times beside the global block 0 (block 0's keys weigh 1 + r times in each middle row): not a
  sparsity pattern ours can express; the difference to ours without random blocks is printed to show its size.

HF's random blocks are checked to be legal in our sense (outside the window and the global blocks, distinct;
``illegal random blocks``). Its per-head plan draws legal ones; its old plan at 1024 tokens (block 64) draws a few
that repeat the last (global) block, the slicing its own "Missing -3 / -4" comments admit. Both kernels gather such
a block twice (ours takes ``rand`` as given), so the outputs still agree; our own draws (``random_blocks``) are
always legal, and the dense pattern (``bigbird_mask``) counts every key once.

Measured 2026-12-07 (torch 2.13 CPU, transformers 5.25.0): training mode <= 1.3e-15 on outputs up to 1.9 in all 7
cases (0 illegal random blocks in the 5 per-head-plan cases; 5 and 8 in the two old-plan cases at 1024); eval mode
vs ours without random blocks 6.6e-1 (the block-0 reweighting).
"""

from __future__ import annotations

import torch
from _shared import HF_CHECKOUT, Given, Same, check, import_hf, parser, rand, report  # scripts/official/_shared.py
from torch import Tensor

from attnbench.attention.bigbird import bigbird_attention

B, H, D = 2, 2, 8


def hf_rand_to_ours(rand_attn: list, nb: int) -> Tensor:
    """HF's random blocks (per head, rows 1 .. nb - 2) -> ours (H, nb, r), -1 in the global rows 0 and nb - 1."""
    per_head = torch.stack([torch.as_tensor(r, dtype=torch.long) for r in rand_attn])  # (H, nb - 2, r)
    out = per_head.new_full((per_head.shape[0], nb, per_head.shape[2]), -1)
    out[:, 1:nb - 1] = per_head
    return out


def illegal(rand: Tensor, nb: int) -> int:
    """Random blocks of rows 1 .. nb - 2 inside the window, global, out of range or repeated in their row."""
    n = torch.arange(nb)[None, :, None]  # (1, nb, 1)
    r = rand[:, 1:nb - 1]
    bad = ((r - n[:, 1:nb - 1]).abs() <= 1) | (r <= 0) | (r >= nb - 1)
    repeated = (r[..., :, None] == r[..., None, :]).sum(-1) > 1
    return int((bad | repeated).sum())


def official_forward(hf: object, q: Tensor, k: Tensor, v: Tensor, real: Tensor, block_size: int, n_random: int,
                     train: bool, seed: int) -> tuple[Tensor, Tensor | None]:
    """HF's BigBirdBlockSparseAttention on q, k, v (B, H, L, D) -> (B, H, L, D) and its random blocks (H, nb, r)
    as ours takes them (None in eval mode)."""
    L = q.shape[2]
    cfg = hf.BigBirdConfig(hidden_size=H * D, num_attention_heads=H, block_size=block_size, use_bias=False,
                           num_random_blocks=n_random, attention_type="block_sparse", attention_probs_dropout_prob=0.0,
                           max_position_embeddings=4096)
    att = hf.BigBirdBlockSparseAttention(cfg, seed=seed).double().train(train)
    flat = [x.transpose(1, 2).reshape(B, L, H * D) for x in (q, k, v)]  # (B, L, H D)
    att.query, att.key, att.value = Same(), Given(flat[1]), Given(flat[2])
    drawn = []
    for name in ("_bigbird_block_rand_mask", "_bigbird_block_rand_mask_with_head"):
        method = getattr(att, name)

        def record(*args: object, _method=method, **kwargs: object) -> object:
            out = _method(*args, **kwargs)
            drawn.append(out)
            return out

        setattr(att, name, record)
    blocked, band, from_mask, to_mask = hf.BigBirdModel.create_masks_for_block_sparse_attn(real.double(), block_size)
    with torch.no_grad():
        out, _ = att(flat[0], band_mask=band, from_mask=from_mask, to_mask=to_mask, from_blocked_mask=blocked,
                     to_blocked_mask=blocked)  # (B, L, H D)
    nb = L // block_size
    # per-head plan: one call returning every head's rows; old plan: one call per head at max_seqlen, cut to nb - 2
    rand_attn = drawn[0] if len(drawn) == 1 else [r[:nb - 2] for r in drawn]
    ours_rand = hf_rand_to_ours(rand_attn, nb) if train else None
    return out.view(B, L, H, D).transpose(1, 2), ours_rand


def compare(hf: object, L: int, block_size: int, n_random: int, real_len: int, train: bool, seed: int) -> float:
    """Print and return the largest difference over the real queries of one case."""
    q, k, v = rand(B, H, L, D, seed=seed), rand(B, H, L, D, seed=seed + 1), rand(B, H, L, D, seed=seed + 2)
    real = torch.arange(L)[None] < torch.tensor([L, real_len])[:, None]  # (B, L)
    want, hf_rand = official_forward(hf, q, k, v, real, block_size, n_random, train, seed)
    nb = L // block_size
    mode = "train" if train else "eval"
    ours_rand = hf_rand if train else torch.full((H, nb, 0), -1, dtype=torch.long)
    note = f", illegal random blocks {illegal(hf_rand, nb)}" if train else " vs ours r=0"
    with torch.no_grad():
        got = bigbird_attention(q, k, v, block_size, ours_rand, key_padding_mask=real)
    rows = "" if real_len == L else f", row 1 padded to {real_len}"
    return report(f"{mode} L={L} b={block_size} r={n_random}{rows}{note}", got, want,
                  real[:, None, :, None].expand_as(got))


def main() -> None:
    ap = parser(__doc__, HF_CHECKOUT, 1e-12, "largest accepted training-mode difference", required=False)
    args = ap.parse_args()
    hf = import_hf(args.official, "big_bird", "BigBirdConfig")
    diffs = []
    for i, (L, b, r, real_len) in enumerate(((64, 4, 2, 64), (64, 4, 2, 41), (96, 8, 3, 96), (160, 8, 3, 123),
                                             (128, 16, 1, 128), (1024, 64, 3, 1024), (1024, 64, 3, 700))):
        diffs.append(compare(hf, L, b, r, real_len, train=True, seed=10 * i))
    compare(hf, 160, 8, 3, 160, train=False, seed=100)
    check(diffs, args.tol, "training-mode comparisons")


if __name__ == "__main__":
    main()
