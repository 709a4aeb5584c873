"""Facts about each data set, one catalogue per domain: where the files come from (URL, digests), how they look on
disk and how they are split. No torch, no I/O: ``config`` reads the names and sizes while composing.

- ``timeseries``: the long-term forecasting sets (ETT, weather, ...);
- ``medmnist``: MedMNIST v2's 3D classification sets;
- ``glue``: the GLUE tasks;
- ``imdb``: IMDB sentiment;
- ``cifar``: CIFAR-10 (LRA Image);
- ``seq2seq``: the generated sequence-to-sequence tasks (task names, token ids);
- ``source``: ``Source``, a file as every catalogue describes it; ``text``: ``TextTask``, what a text classifier
  needs of any task (GLUE's and IMDB's).

The names below are the public ones (scripts/prepare_data.py, ``python -m attnbench list data``).
"""

from __future__ import annotations

from attnbench.data.catalog.cifar import CIFAR10_LABELS, CIFAR10_SOURCE
from attnbench.data.catalog.glue import GLUE, MRPC_SOURCE_URL, GlueTask, glue_files
from attnbench.data.catalog.imdb import IMDB, IMDB_SOURCE
from attnbench.data.catalog.medmnist import MEDMNIST3D, VolumeSpec, medmnist_files, volume_spec
from attnbench.data.catalog.source import Source
from attnbench.data.catalog.text import TextTask
from attnbench.data.catalog.timeseries import TIME_SERIES, TimeSeriesSpec, spec

TEXT_TASKS: dict[str, TextTask] = {**GLUE, IMDB.name: IMDB}  # every task the text classifier trains on

__all__ = ["GLUE", "IMDB", "IMDB_SOURCE", "MEDMNIST3D", "MRPC_SOURCE_URL", "TEXT_TASKS", "TIME_SERIES", "GlueTask",
           "Source", "TextTask", "TimeSeriesSpec", "VolumeSpec", "glue_files", "medmnist_files", "spec",
           "volume_spec"]
__all__ += ["CIFAR10_LABELS", "CIFAR10_SOURCE"]
