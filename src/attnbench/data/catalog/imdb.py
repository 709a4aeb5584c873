"""IMDB movie reviews (Maas et al., ACL 2011): the Stanford archive and the binary sentiment task."""

from __future__ import annotations

from attnbench.data.catalog.source import Source
from attnbench.data.catalog.text import TextTask

# Maas et al. (ACL 2011), the Stanford archive: aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, 25k + 25k.
# md5 of the official archive (as torchtext pins it); the sha256 is the offline copy in ../shared/data, rebuilt
# from the same reviews without the unlabelled ``unsup`` folder (its README gives the provenance).
IMDB_SOURCE = Source("imdb/aclImdb_v1.tar.gz", "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                     ("b98d87f0ff79a81f44da08232e6f00c4ea291e69c1cb7bc30a4d00f0c3247781",),
                     md5=("7c2ac02c03563afcf9b574c7e56c153a",))
IMDB = TextTask("imdb", ("neg", "pos"), ("acc",))  # labels in class order: neg = 0, pos = 1
