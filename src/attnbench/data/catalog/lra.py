"""The five Long Range Arena tasks as a model sees them (``LRATask``: vocabulary, classes, official length), read by
the config while composing (``${lra_task:<task>,<field>}`` in ``conf/model/lra_encoder.yaml``), so no torch here.

Vocabularies follow the official pipelines: ListOps 15 tokens + padding; Text and Retrieval bytes + 1 (TFDS
``ByteTextEncoder``: 256 bytes, id 0 = padding); Image and Pathfinder the 8-bit grey level as the id (vocab 256), so
a black pixel has the padding id 0 (the official ``inputs > 0`` mask treats it as padding; see
``models.lra.LRAEncoder``'s ``key_padding``). Each task module's ``INFO`` (``attnbench.data.lra.<task>``) must equal
its entry here (``tests/test_lra_model.py`` checks).
"""

from __future__ import annotations

from attnbench.data.lra.common import LRATask

LRA_TASKS: dict[str, LRATask] = {t.name: t for t in (
    LRATask(name="listops", vocab_size=16, num_classes=10, max_len=2000),
    LRATask(name="text", vocab_size=257, num_classes=2, max_len=4000),  # paper 4K; released config 1000
    LRATask(name="retrieval", vocab_size=257, num_classes=2, max_len=4000, two_tower=True),  # per document
    LRATask(name="image", vocab_size=256, num_classes=10, max_len=1024),
    LRATask(name="pathfinder", vocab_size=256, num_classes=2, max_len=1024),
)}
