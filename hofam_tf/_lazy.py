"""Lazy re-exports: a package names a few public functions without importing TensorFlow until
one of them is used (the data tools start fast)."""
from __future__ import annotations

import importlib


def lazy_exports(package: str, table: dict[str, str]):
    """``table``: public name -> module that defines it. Returns a module ``__getattr__``."""

    def __getattr__(name):
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
