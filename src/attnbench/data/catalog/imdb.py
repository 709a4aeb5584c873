"""IMDB movie reviews (Maas et al., ACL 2011): the Stanford archive and the binary sentiment task."""

from __future__ import annotations

from attnbench.data.catalog.source import HubSource, Source
from attnbench.data.catalog.text import TextTask

# Maas et al. (ACL 2011), the Stanford archive: aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, 25k + 25k.
# md5 of the official archive (as torchtext pins it); the sha256 is the offline copy in ../shared/data, rebuilt
# from the same reviews without the unlabelled ``unsup`` folder (its README gives the provenance).
IMDB_SOURCE = Source("imdb/aclImdb_v1.tar.gz", "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                     ("b98d87f0ff79a81f44da08232e6f00c4ea291e69c1cb7bc30a4d00f0c3247781",),
                     md5=("7c2ac02c03563afcf9b574c7e56c153a",))
# The same reviews on the Hub (columns text, label: 0 = neg, 1 = pos; rows in the Hub's order, not the archive's).
# The revision is the commit other public code pins for stanfordnlp/imdb; it could not be checked against the Hub from
# here (no network): one constant to change if it is wrong.
IMDB_HUB = HubSource("stanfordnlp/imdb", "e6281661ce1c48d982bc483cf8a173c1bbeb5d31", "plain_text")
IMDB = TextTask("imdb", ("neg", "pos"), ("acc",))  # labels in class order: neg = 0, pos = 1
