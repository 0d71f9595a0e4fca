"""Lazy re-exports (PEP 562): a package's public names, imported on first use.

``import bertconvert`` stays cheap, and commands that never touch PyTorch (``bertconvert
--help``, ``inspect``, ``cache ls``) do not pay for numpy or torch, because a package's
``__init__.py`` re-exports its submodules' names through the module-level ``__getattr__`` and
``__dir__`` that :func:`lazy_exports` builds, instead of importing them.

Standard library only: every package may import it.
"""
import importlib
import sys


def lazy_exports(package, exports, submodules=None, listed=None):
    """``(__getattr__, __dir__)`` for the package named ``package`` (its ``__name__``).

    ``exports`` maps each public name to the submodule (relative to the package) that defines
    it; ``submodules`` maps attribute names to submodules returned whole (aliases included:
    a bare import only sets the attribute of a submodule's own name). A value is stored in
    the package on first use, so later look-ups do not come back here. ``__dir__`` lists the
    exports and submodules with what the package already holds -- or, when ``listed`` (names
    defined eagerly) is given, with those names and the package's dunders only, so that the
    helpers its ``__init__`` imports and the internal submodules Python sets as attributes
    once imported (``lazy``, ``atomic``...) do not show as its API.

    Example, in a package's ``__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__, {"cached_path": "store"})
    """
    submodules = dict(submodules or {})

    def __getattr__(name):
        if name in submodules:
            value = importlib.import_module(f".{submodules[name]}", package)
        elif name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        vars(sys.modules[package])[name] = value  # later look-ups skip this function
        return value

    def __dir__():
        held = set(vars(sys.modules[package]))
        if listed is not None:
            held = {n for n in held if n.startswith("__") and n.endswith("__")} | set(listed)
        return sorted(held | set(exports) | set(submodules))

    return __getattr__, __dir__
