"""Attention mechanisms, one per module, each registered where it is defined.

Every module of this package is imported here so its ``@register`` runs; an ImportError propagates.
"""

import importlib
import pkgutil

from attnbench.attention.registry import (
    AttentionBase,
    Caps,
    available,
    build,
    check_kwargs,
    get,
    register,
    require,
)

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["AttentionBase", "Caps", "available", "build", "check_kwargs", "get", "register", "require"]
