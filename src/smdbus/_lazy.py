"""A package's public names, imported on first use (PEP 562).

Why: ``import smdbus`` or ``import smdbus.system._query`` runs the package's
``__init__``; one that imported every module it re-exports would make the
``smd`` command take over Ctrl-C late and make a one-shot tool (``smd
state``) pay for asyncio. A package lists where each name lives and gets the
module ``__getattr__`` and ``__dir__`` from :func:`lazy_names`; the name is
imported on first access and kept in the package, so later lookups are plain.
A name in ``submodules`` is the package's own submodule of that name (the
button package's ``sources``), imported as a module, not looked up in one.

``dir()`` lists the public names before they are imported, once each: a
name is both in the namespace and in ``public`` after its first use.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (7 ms)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, MutableMapping, Sequence
    from typing import Any


def lazy_names(
    package: str,
    home: Mapping[str, Sequence[str]],
    public: Sequence[str],
    namespace: MutableMapping[str, Any],
    submodules: Sequence[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``home`` maps each module to its names."""
    module_of = {name: module for module, names in home.items() for name in names}
    module_of.update((name, f"{package}.{name}") for name in submodules)

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        __import__(module)  # importlib.import_module without importing importlib
        value = sys.modules[module]
        if name not in submodules:
            value = getattr(value, name)
        namespace[name] = value  # once: later lookups do not come here
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *public})

    return __getattr__, __dir__
