"""What this machine's CPU runs natively, as torch's oneDNN sees it (imports torch).

Without native instructions a half-precision type is emulated on a CPU: its matmuls run many times slower than
float32's (``make bench-step`` times HOT's step in both and records ``bf16_native`` in its ``machine.json``).
"""

from __future__ import annotations

from typing import Literal

import torch

# the precision prefix Lightning's ``trainer.precision`` uses -> oneDNN's probe and the instructions it looks for
_PROBES = {"bf16": ("_is_mkldnn_bf16_supported", "AVX512-BF16 or AMX-BF16"),
           "16": ("_is_mkldnn_fp16_supported", "AVX512-FP16 or AMX-FP16")}


def cpu_native(half: Literal["bf16", "16"]) -> bool | None:
    """Whether this CPU has native matmuls for ``half`` (bfloat16 or float16); None when this torch build cannot
    tell (no oneDNN)."""
    try:
        return bool(getattr(torch.ops.mkldnn, _PROBES[half][0])())
    except (AttributeError, RuntimeError):
        return None


def instructions(half: Literal["bf16", "16"]) -> str:
    """The CPU instructions that make ``half`` native (for messages)."""
    return _PROBES[half][1]


def amp_precision() -> str:
    """bf16-mixed where the GPU supports it, else 16-mixed: what ``trainer.precision=auto-mixed`` runs with.

    Called when the run starts (it imports torch), not as a resolver: composing and checking stay torch-free.
    """
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
