"""The optional compiled bus (mypyc) must behave exactly as the Python one.

Builds ``smdbus.bus`` with scripts/build-speedups.sh, then runs the bus's own test files
against that build (in a fresh copy of the package) in a child pytest.

The build is the costly part (about 40 s of mypyc and gcc on a small machine) and depends
only on the compiled module's source, the modules it imports for types, mypyc and the
interpreter; so it is cached under that key (:func:`_build_key`) in
``$SMDBUS_BUILD_CACHE`` (default ``~/.cache/smdbus/compiled-bus``) and a second run
with the same sources reuses it. A changed ``bus.py`` (or classes.py, errors.py, mypy,
Python) is a new key and a new build. Entries are written to a temporary directory and
renamed into place, so two runs building at once cannot leave half an entry.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "smdbus"
BUS_TESTS = [
    "tests/test_bus.py",
    "tests/test_bus_model.py",
    "tests/test_bus_c_peer.py",
    "tests/test_bus_threads.py",
    "tests/test_system_state.py",
    "tests/test_proxy.py",
    "tests/test_loops.py",
]


def _mypyc() -> str | None:
    beside = Path(sys.executable).with_name("mypyc")
    return str(beside) if beside.exists() else shutil.which("mypyc")


def _sources(module: Path) -> list[Path]:
    """``module`` and every smdbus module it imports, transitively (what mypyc reads)."""
    seen: dict[Path, None] = {}
    todo = [module]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = None
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if name.startswith("smdbus."):
                dotted = PACKAGE.parent.joinpath(*name.split("."))
                for candidate in (dotted.with_suffix(".py"), dotted / "__init__.py"):
                    if candidate.exists():
                        todo.append(candidate)
    return sorted(seen)


def _build_key() -> str:
    h = hashlib.sha256()
    for path in _sources(PACKAGE / "bus.py"):
        h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    h.update(importlib.metadata.version("mypy").encode())
    h.update(str(sysconfig.get_config_var("EXT_SUFFIX")).encode() + sys.version.encode())
    return h.hexdigest()[:32]


def _cache_dir() -> Path:
    base = os.environ.get("SMDBUS_BUILD_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "smdbus" / "compiled-bus"


def _compiled(mypyc: str) -> list[Path]:
    """The build's extension modules, from the cache or built into it now."""
    entry = _cache_dir() / _build_key()
    if not entry.is_dir():
        entry.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=entry.parent) as scratch:
            build = subprocess.run(
                [str(ROOT / "scripts" / "build-speedups.sh"), scratch],
                capture_output=True,
                text=True,
                env={**os.environ, "MYPYC": mypyc},
                timeout=600,
            )
            assert build.returncode == 0, build.stdout + build.stderr
            staged = Path(scratch) / "entry"
            staged.mkdir()
            # mypyc emits the module and, beside the package, its shared runtime library
            for so in (*Path(scratch).glob("*.so"), *Path(scratch, "smdbus").glob("*.so")):
                rel = so.relative_to(scratch)
                (staged / rel.parent).mkdir(parents=True, exist_ok=True)
                shutil.copy2(so, staged / rel)
            try:
                staged.rename(entry)
            except OSError:
                assert entry.is_dir(), "another run filled the cache entry"
    return sorted(entry.rglob("*.so"))


def test_compiled_bus_passes_the_bus_tests(tmp_path: Path) -> None:
    mypyc = _mypyc()
    if mypyc is None or (shutil.which("gcc") is None and shutil.which("cc") is None):
        pytest.skip("building the compiled bus needs mypyc (the dev extra) and a C compiler")
    shutil.copytree(PACKAGE, tmp_path / "smdbus", ignore=shutil.ignore_patterns("*.so"))
    entry = _cache_dir() / _build_key()
    for so in _compiled(mypyc):
        shutil.copy2(so, tmp_path / so.relative_to(entry))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    probe = subprocess.run(
        [sys.executable, "-c", "import smdbus.bus as b; print(b.COMPILED, b.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert probe.stdout.startswith(f"True {tmp_path}"), probe.stdout + probe.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *BUS_TESTS],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
