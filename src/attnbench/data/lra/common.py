"""The interface every LRA task module (``attnbench.data.lra.<task>``) provides, and what they share.

A task module defines::

    INFO = LRA_TASKS["listops"]  # its LRATask in data.catalog.lra (vocabulary, classes, official length)

    def load_split(root: Path, split: str, max_len: int, limit: int | None = None, **options) -> tuple[Tensor, Tensor]:
        # root = <paths.data_dir>/lra/<folder>; split in SPLITS; limit: only the split's first `limit` examples are
        #   read and tokenized (data.limit_examples, debug=fast), the same rows as the whole split's first `limit`
        # -> tokens int64 (N, max_len) (two-tower tasks: (N, 2, max_len)), PAD_ID = padding, real ids >= 1
        #    (a smaller integer dtype is accepted too: the datamodule stores tokens in the smallest dtype of the
        #    vocabulary and serves int64, so e.g. AAN's 147k x 2 x 4000 bytes need not pass through int64)
        #    labels int64 (N,) in [0, num_classes)
        # raises attnbench.data.download.DataError (what is missing, where to put it, which command makes it)

As in the official pipelines, padding is id 0 and the key-padding mask is ``tokens != PAD_ID``.
"""

from __future__ import annotations

# the task record and the padding id live in the catalogue (config and models read them without the data layer)
from attnbench.data.catalog.lra import PAD_ID, LRATask

__all__ = ["PAD_ID", "SPLITS", "LRATask"]

SPLITS = ("train", "val", "test")
