"""The interface every LRA task module (``attnbench.data.lra.<task>``) provides, and what they share.

A task module defines::

    INFO = LRATask(name="listops", vocab_size=16, num_classes=10, max_len=2000)

    def load_split(root: Path, split: str, max_len: int, **options) -> tuple[Tensor, Tensor]:
        # root = <paths.data_dir>/lra/<folder>; split in SPLITS
        # -> tokens int64 (N, max_len) (two-tower tasks: (N, 2, max_len)), PAD_ID = padding, real ids >= 1
        #    (a smaller integer dtype is accepted too: the datamodule stores tokens in the smallest dtype of the
        #    vocabulary and serves int64, so e.g. AAN's 147k x 2 x 4000 bytes need not pass through int64)
        #    labels int64 (N,) in [0, num_classes)
        # raises attnbench.data.download.DataError (what is missing, where to put it, which command makes it)

As in the official pipelines, padding is id 0 and the key-padding mask is ``tokens != PAD_ID``.
``INFO``'s arguments are literals: ``read_info`` reads them from the source, so the config check and its resolvers
(``${lra_task:...}``) know a task without importing torch.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

PAD_ID = 0
SPLITS = ("train", "val", "test")
TASKS = ("listops", "text", "retrieval", "image", "pathfinder")  # data.task: the modules attnbench.data.lra.<task>


@dataclass(frozen=True)
class LRATask:
    """What a model needs to know about a task before seeing data."""

    name: str
    vocab_size: int  # embedding rows, padding (0) included
    num_classes: int
    max_len: int  # the official sequence length (per tower for two-tower tasks)
    two_tower: bool = False  # retrieval: a pair of documents, one shared encoder
    folder: str = ""  # under <data_dir>/lra/; defaults to the name

    @property
    def dir(self) -> str:
        return self.folder or self.name


@functools.cache
def read_info(task: str) -> LRATask:
    """``attnbench.data.lra.<task>.INFO``, read from the module's source with ``ast`` (no import, no torch)."""
    if task not in TASKS:
        raise ValueError(f"data.task={task!r}; allowed: {', '.join(TASKS)}")
    path = Path(__file__).resolve().parent / f"{task}.py"
    if not path.is_file():
        raise ValueError(f"data.task={task!r}: its module attnbench.data.lra.{task} ({path}) is not written yet")
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["INFO"]
                and isinstance(node.value, ast.Call)):
            try:
                return LRATask(**{k.arg: ast.literal_eval(k.value) for k in node.value.keywords})
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}: INFO = LRATask(...) must take literal keyword arguments ({e})") from e
    raise ValueError(f"{path} defines no INFO = LRATask(...)")
