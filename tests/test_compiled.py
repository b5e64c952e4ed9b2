"""The compiled build (mypyc) of the hot path must behave exactly as the pure one.

A wheel built where mypy and a C compiler are available carries mypyc extensions of
setup.py's ``COMPILED`` modules (docs/performance.md, "The compiled build"). This
builds that wheel the way a release does (``python -m build --wheel``, through
setup.py), takes its extensions, puts them in a fresh copy of the package, and runs
the bus, wire and proxy test files against it in a child pytest; and checks that
``SMDBUS_PURE=1`` takes the sources again. (The pure build is what the rest of the
suite runs: the development venv is an editable install, which never compiles.)

The build is the costly part (30-60 s of mypy and gcc on a small machine) and depends
only on the compiled modules' sources, the smdbus modules they import (for types),
setup.py, mypy and the interpreter; so its extensions are cached under that key
(:func:`_build_key`) in ``$SMDBUS_BUILD_CACHE`` (default ``~/.cache/smdbus/compiled``)
and a second run with the same sources reuses them. Entries are written to a
temporary directory and renamed into place, so a run killed mid-build cannot leave half
an entry; a lock file beside the entry makes a second run that wants the same key wait for
the first one's build.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "smdbus"
HOT_PATH_TESTS = [
    "tests/test_bus.py",
    "tests/test_bus_model.py",
    "tests/test_bus_threads.py",
    "tests/test_wire_decoder.py",
    "tests/test_wire_golden.py",
    "tests/test_wire_protocol.py",
    "tests/test_proxy.py",
    "tests/test_proxy_flow.py",
    "tests/test_proxy_uvloop.py",  # the default loop where installed: found a compiled-only
    "tests/test_proxy_flow_uvloop.py",  # TypeError (remove_reader's result, proxy._server)
    "tests/test_policy_proxy.py",
    "tests/test_soak_short.py",  # fuzzing, floods, stalls: found a compiled-only TypeError
]


BUILD_INPUTS = ["pyproject.toml", "setup.py", "build_backend.py", "MANIFEST.in", "README.md", "src"]
"""What a wheel is built from (the sdist's contents, less the tests)."""
_NOT_SOURCES = shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info", "build")


def compiled_modules() -> list[Path]:
    """setup.py's ``COMPILED`` (read, not imported: setup.py runs setup() when imported)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "COMPILED":
            return [ROOT / p for p in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no COMPILED list")


def _dotted(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def _sources(modules: list[Path]) -> list[Path]:
    """``modules`` and every smdbus module they import, transitively (what mypyc reads)."""
    seen: dict[Path, None] = {}
    todo = list(modules)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = None
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("smdbus"):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("smdbus")]
            for name in names:
                dotted = PACKAGE.parent.joinpath(*name.split("."))
                for candidate in (dotted.with_suffix(".py"), dotted / "__init__.py"):
                    if candidate.exists():
                        todo.append(candidate)
    return sorted(seen)


def _build_key() -> str:
    h = hashlib.sha256()
    for path in [ROOT / "setup.py", *_sources(compiled_modules())]:
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    h.update(importlib.metadata.version("mypy").encode())
    h.update(str(sysconfig.get_config_var("EXT_SUFFIX")).encode() + sys.version.encode())
    return h.hexdigest()[:32]


def _cache_dir() -> Path:
    base = os.environ.get("SMDBUS_BUILD_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "smdbus" / "compiled"


def _child(
    args: list[str], *, path: Path | None = None, pure: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``python args`` in the checkout: ``path`` first on PYTHONPATH, SMDBUS_PURE only if
    ``pure`` (the caller's own setting of it is not inherited)."""
    env = {k: v for k, v in os.environ.items() if k != "SMDBUS_PURE"}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    if pure:
        env["SMDBUS_PURE"] = "1"
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900
    )


def _extensions() -> Path:
    """A directory with the compiled wheel's extension modules, from the cache or built now."""
    entry = _cache_dir() / _build_key()
    if entry.is_dir():
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    # one build per key at a time: a second run (another worktree, another worker) waits here
    # for the first one's build and reuses it instead of building the same thing beside it
    with (entry.parent / f"{entry.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not entry.is_dir():
            _build_into(entry)
    return entry


def _build_into(entry: Path) -> None:
    """Build the wheel in a scratch directory beside ``entry``; its extensions become ``entry``."""
    with tempfile.TemporaryDirectory(dir=entry.parent) as scratch:
        # from a clean copy: setuptools puts whatever an earlier build left in the
        # checkout's build/lib into the wheel (extensions of renamed modules included)
        tree = Path(scratch) / "tree"
        for name in BUILD_INPUTS:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, tree / name, ignore=_NOT_SOURCES)
            else:
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, tree / name)
        build = _child(["-m", "build", "--wheel", "--no-isolation", "--outdir", scratch, str(tree)])
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        (wheel,) = Path(scratch).glob("smdbus-*.whl")
        staged = Path(scratch) / "entry"
        with zipfile.ZipFile(wheel) as whl:
            for name in whl.namelist():
                if name.endswith(".so"):
                    whl.extract(name, staged)
        try:
            staged.rename(entry)
        except OSError:
            assert entry.is_dir(), "another run filled the cache entry"


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package with the compiled wheel's extensions in it (for PYTHONPATH)."""
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("building the compiled wheel needs a C compiler")
    try:
        importlib.metadata.version("mypy")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("building the compiled wheel needs mypy (the dev extra)")
    tree = tmp_path_factory.mktemp("compiled")
    shutil.copytree(PACKAGE, tree / "smdbus", ignore=shutil.ignore_patterns("*.so"))
    extensions = _extensions()
    found = sorted(extensions.rglob("*.so"))
    assert found, "the wheel carries no extensions: see setup.py's notes in the build's stderr"
    for so in found:
        (tree / so.relative_to(extensions)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(so, tree / so.relative_to(extensions))
    return tree


def _files(tree: Path, pure: bool) -> list[str]:
    """Where each compiled module is loaded from, in a child with ``tree`` first on the path."""
    names = [_dotted(p) for p in compiled_modules()]
    code = (
        "import importlib, sys\nfor n in sys.argv[1:]: print(importlib.import_module(n).__file__)"
    )
    probe = _child(["-c", code, *names], path=tree, pure=pure)
    assert probe.returncode == 0, probe.stderr
    return probe.stdout.split()


def test_every_listed_module_runs_compiled_and_smdbus_pure_takes_the_sources(
    compiled_tree: Path,
) -> None:
    compiled = _files(compiled_tree, pure=False)
    assert len(compiled) == len(compiled_modules())
    for path in compiled:
        assert path.startswith(str(compiled_tree)) and path.endswith(".so"), path
    for path in _files(compiled_tree, pure=True):
        assert path.startswith(str(compiled_tree)) and path.endswith(".py"), path


def test_compiled_build_passes_the_bus_wire_and_proxy_tests(compiled_tree: Path) -> None:
    run = _child(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", *HOT_PATH_TESTS], path=compiled_tree
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
