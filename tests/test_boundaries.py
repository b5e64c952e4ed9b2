"""The core runs on a small device with nothing but Python: it imports the standard library only.

The core is bus, wire, proxy, client, system and policy with the helpers they
stand on (docs/architecture.md: the core is stdlib-only). Read from the source (every
``import``, at any depth, TYPE_CHECKING included), so an optional library that
only some code path imports is caught too. import-linter's contracts in
pyproject.toml (``make lint``) check the layers, the private modules and the
cycles; this test is the allow-list that a deny-list of field libraries cannot be.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "smdbus"

CORE = ("bus", "wire", "proxy", "client", "system", "policy")
"""The packages and modules that must run on the standard library alone."""

BELOW_CORE = (
    "scheduler",
    "runtime",
    "classes",
    "errors",
    "_announce",
    "_escape",
    "_wakeup",
    "_lazy",
    "_namedtuple",
)
"""What the core stands on inside smdbus (each stdlib-only too, checked with it)."""


def _files(name: str) -> list[Path]:
    package = SRC / name
    return sorted(package.rglob("*.py")) if package.is_dir() else [SRC / f"{name}.py"]


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("name", CORE + BELOW_CORE)
def test_the_core_imports_the_standard_library_and_the_core_only(name: str) -> None:
    allowed = {f"smdbus.{n}" for n in CORE + BELOW_CORE}
    files = _files(name)
    assert files, f"no source for smdbus.{name}"
    bad = []
    for path in files:
        for line, module in _imports(path):
            top = module.partition(".")[0]
            if top == "smdbus":
                if module != "smdbus" and ".".join(module.split(".")[:2]) not in allowed:
                    bad.append(f"{path.relative_to(SRC)}:{line}: {module}")
            elif top not in sys.stdlib_module_names:
                bad.append(f"{path.relative_to(SRC)}:{line}: {module}")
    assert bad == []
