"""The generated sequence-to-sequence tasks (CAB's CS/NC/CC stand-in) as a model sees them: task names and the
token ids (no torch: the model and the config read them without the data layer)."""

from __future__ import annotations

TASKS = ("reverse", "sort", "pairsum")
# tasks whose target token i depends on source tokens <= i only (learnable with causal cross attention)
ALIGNED = ("pairsum",)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
N_SPECIAL = 3  # PAD, BOS, EOS; symbol s has id s + N_SPECIAL


def vocab_size(n_symbols: int) -> int:
    """Embedding rows: the specials then the symbols."""
    return n_symbols + N_SPECIAL
