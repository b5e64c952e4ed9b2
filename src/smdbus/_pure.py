"""``SMDBUS_PURE=1``: run the pure-Python modules even where compiled ones are installed.

Why: a wheel built where mypy and a C compiler were available carries mypyc
extensions of the hot path (setup.py lists them) beside the ``.py`` sources, and
Python's path finder prefers an extension to a source of the same name. To compare
the two builds, to rule the compiled one out when chasing a bug, or to run code that
needs what only the pure modules offer (a debugger stepping into them, monkeypatching
a module-level function), one switch in the environment makes every ``smdbus``
module load from its source.

Rules: the switch is read once, when the ``smdbus`` package is first imported (its
``__init__`` imports this module only when the variable is set, and calls
:func:`install`); it covers the package's own submodules and nothing else; empty or
``0`` means off. A module that exists only compiled (none do)
would still load compiled. Which build a module runs is visible in the module itself:
``smdbus.bus.COMPILED``, or any module's ``__file__`` (``.so`` or ``.py``).
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import ModuleSpec, SourceFileLoader

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

ENV = "SMDBUS_PURE"


def wanted() -> bool:
    """The environment asks for the pure-Python modules."""
    return os.environ.get(ENV, "") not in ("", "0")


class PureFinder:
    """A meta path finder that finds an ``smdbus`` submodule's ``.py``, never an extension."""

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not fullname.startswith("smdbus.") or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, leaf + ".py")
            if os.path.isfile(source):
                spec = ModuleSpec(fullname, SourceFileLoader(fullname, source), origin=source)
                spec.has_location = True
                return spec
        return None  # a package (its __init__ is a source anyway) or no such module


def install() -> None:
    """Put :class:`PureFinder` first on ``sys.meta_path`` when :func:`wanted` (once)."""
    if wanted() and not any(isinstance(f, PureFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, PureFinder())
