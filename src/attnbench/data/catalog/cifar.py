"""CIFAR-10 (Krizhevsky, 2009), the python version: the file LRA's Image task is built from."""

from __future__ import annotations

from attnbench.data.catalog.source import Source

# The publisher's md5 (https://www.cs.toronto.edu/~kriz/cifar.html); members cifar-10-batches-py/data_batch_1..5
# (10,000 images each) and test_batch (10,000), pickled dicts of b"data" (N, 3072) uint8 and b"labels".
CIFAR10_SOURCE = Source("cifar10/cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                        (), md5=("c58f30108f718f92721af3b95e74349a",))
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
