"""Lightning callbacks of our own (imported when the run builds its callbacks; this module loads Lightning)."""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.callbacks import ModelSummary as _LightningModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

log = logging.getLogger(__name__)


class ModelSummary(_LightningModelSummary):
    """Lightning's text model summary, into the log (file and console), without the FLOPs column and total when
    nothing was counted: Lightning counts FLOPs only on a module's ``example_input_array`` and shows zeros
    without one."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int,
                  **summarize_kwargs: Any) -> None:
        cols = [c for c in summary_data if total_flops or c[0] != "FLOPs"]
        table = _format_summary_table(total_parameters, trainable_parameters, model_size, total_training_modes,
                                      total_flops, *cols)
        if not total_flops:
            table = "\n".join(line for line in table.splitlines() if not line.endswith("Total Flops"))
        log.info("\n%s", table)
