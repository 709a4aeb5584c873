"""``python -m attnbench list attention|data|models|experiments`` (see ``attnbench.cli``)."""

import sys

from attnbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
