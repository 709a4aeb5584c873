"""The five Long Range Arena tasks as a model sees them (``LRATask``: vocabulary, classes, official length), read by
the config while composing (``${lra_task:<task>,<field>}`` in ``conf/model/lra_encoder.yaml``), so no torch here.

Vocabularies: ListOps 15 tokens + padding; Text and Retrieval bytes + 1 (TFDS ``ByteTextEncoder``: 256 bytes, id 0
= padding); Image and Pathfinder the 8-bit grey level + 1 (vocab 257), so no pixel is padding, as the paper
describes the task. The official code uses the grey level itself as the id with the ``inputs > 0`` mask, so black
pixels are masked as padding: ``data.options.official_zero_pad=true`` (ids 0..255, same vocabulary) reproduces it.
Lengths are the released configs' (Text 1000; the paper says 4K: ``data.max_len=4000``). Each task module's
``INFO`` (``attnbench.data.lra.<task>``) is its entry here: the one place these facts are written.
"""

from __future__ import annotations

from dataclasses import dataclass

PAD_ID = 0  # the padding id of every task; the key-padding mask is tokens != PAD_ID


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


LRA_TASKS: dict[str, LRATask] = {t.name: t for t in (
    LRATask(name="listops", vocab_size=16, num_classes=10, max_len=2000),
    # IMDB at byte level, read from the IMDB folder (<data_dir>/imdb); released config 1000, paper 4K
    LRATask(name="text", vocab_size=257, num_classes=2, max_len=1000, folder="../imdb"),
    LRATask(name="retrieval", vocab_size=257, num_classes=2, max_len=4000, two_tower=True),  # per document
    LRATask(name="image", vocab_size=257, num_classes=10, max_len=1024, folder="../cifar10"),  # CIFAR-10, grey
    LRATask(name="pathfinder", vocab_size=257, num_classes=2, max_len=1024),  # 32x32; 64/128: resolution**2
)}
