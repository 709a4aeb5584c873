"""The five Long Range Arena tasks as a model sees them (``LRATask``: vocabulary, classes, official length), read by
the config while composing (``${lra_task:<task>,<field>}`` in ``conf/model/lra_encoder.yaml``), so no torch here.

Vocabularies follow the official pipelines: ListOps 15 tokens + padding; Text and Retrieval bytes + 1 (TFDS
``ByteTextEncoder``: 256 bytes, id 0 = padding); Image and Pathfinder the 8-bit grey level as the id (vocab 256), so
a black pixel has the padding id 0 (the official ``inputs > 0`` mask treats it as padding; see
``models.lra.LRAEncoder``'s ``key_padding``). Each task module's ``INFO`` (``attnbench.data.lra.<task>``) must equal
its entry here (``tests/test_lra_model.py`` checks).
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
    LRATask(name="text", vocab_size=257, num_classes=2, max_len=4000),  # paper 4K; released config 1000
    LRATask(name="retrieval", vocab_size=257, num_classes=2, max_len=4000, two_tower=True),  # per document
    LRATask(name="image", vocab_size=256, num_classes=10, max_len=1024),
    LRATask(name="pathfinder", vocab_size=256, num_classes=2, max_len=1024),
)}
