"""The ``smd`` subcommands, one private module each (see smdbus.cli).

Each ``_<command>.py`` exposes ``configure(parser)`` and ``run(args) -> int``
and is imported by :mod:`smdbus.cli` only when its command runs. A command
uses only the other packages' surfaces (their ``__init__``), never their
private modules: the import-linter contracts in pyproject.toml check it.
What :mod:`smdbus.cli` itself needs from here is below, imported on first use.
"""

from __future__ import annotations

from smdbus._lazy import lazy_names

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from smdbus.commands._failure import connect_failure
    from smdbus.commands._options import examples

_HOME = {
    "smdbus.commands._failure": ("connect_failure",),
    "smdbus.commands._options": ("examples",),
}

__all__ = ["connect_failure", "examples"]


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals())
