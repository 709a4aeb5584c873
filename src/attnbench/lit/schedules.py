"""Learning-rate schedules that torch does not ship, as ``LambdaLR`` multipliers of the optimizer's ``lr``.

``lra_schedule``: the Long Range Arena / Tensor2Tensor product of factors (``create_learning_rate_scheduler`` in
``lra_benchmarks/utils/train_utils.py``), stepped once per optimizer step from step 0::

    lr(step) = lr * prod(factor(step))     # the optimizer's lr is the official base_learning_rate ("constant")
      linear_warmup: min(1, step / warmup)
      rsqrt_decay:   1 / sqrt(max(step, warmup))                 -> peak lr / sqrt(warmup) at step = warmup
      cosine_decay:  max(0, (1 + cos(pi * (p mod 1))) / 2),  p = max(0, step - warmup) / steps_per_cycle

ListOps/Text/Retrieval use ``linear_warmup * rsqrt_decay`` (peak 0.05 / sqrt(1000) = 1.58e-3 for ListOps),
Image/Pathfinder ``linear_warmup * cosine_decay``. The multiplier is a plain-attribute object, so the scheduler's
state (and a checkpoint) holds only numbers and strings.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

LRA_FACTORS = ("linear_warmup", "rsqrt_decay", "cosine_decay")


class LRAFactors:
    """``step -> prod(factor(step))`` for ``factors`` joined by ``*`` (module docstring)."""

    def __init__(self, factors: str, warmup_steps: int, steps_per_cycle: int | None = None) -> None:
        self.factors = [f.strip() for f in factors.split("*") if f.strip()]
        bad = [f for f in self.factors if f not in LRA_FACTORS]
        if bad or not self.factors:
            raise ValueError(f"model.scheduler.factors={factors!r}: unknown factor {bad[0] if bad else '(none)'!r}; "
                             f"allowed: {', '.join(LRA_FACTORS)} joined by '*' (the optimizer's lr is 'constant')")
        if warmup_steps < 1:
            raise ValueError(f"model.scheduler.warmup_steps={warmup_steps} must be >= 1")
        if "cosine_decay" in self.factors and (steps_per_cycle is None or steps_per_cycle < 1):
            raise ValueError(f"model.scheduler.steps_per_cycle={steps_per_cycle}: cosine_decay needs a cycle >= 1 "
                             "step (the official: the whole run)")
        self.warmup_steps, self.steps_per_cycle = warmup_steps, steps_per_cycle

    def __call__(self, step: int) -> float:
        out = 1.0
        for f in self.factors:
            if f == "linear_warmup":
                out *= min(1.0, step / self.warmup_steps)
            elif f == "rsqrt_decay":
                out /= math.sqrt(max(step, self.warmup_steps))
            else:  # cosine_decay
                progress = max(0.0, (step - self.warmup_steps) / self.steps_per_cycle)
                out *= max(0.0, 0.5 * (1.0 + math.cos(math.pi * (progress % 1.0))))
        return out


def lra_schedule(optimizer: Optimizer, factors: str, warmup_steps: int, steps_per_cycle: int | None = None
                 ) -> LambdaLR:
    """The LRA schedule (module docstring) on ``optimizer``; step it every optimizer step (``interval: step``)."""
    return LambdaLR(optimizer, LRAFactors(factors, warmup_steps, steps_per_cycle))
