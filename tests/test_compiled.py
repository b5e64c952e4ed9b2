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
the first one's build. The cache is bounded: each run keeps the :data:`KEEP` entries
used last and removes the others, with their locks and whatever killed builds left
(:func:`_prune`).
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
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


KEEP = 3
"""Cache entries kept (~2.3 MiB each here): the current sources' and those of two other
branches or worktrees, which would otherwise each cost a build (30-60 s) when run again."""

_KEY = re.compile(r"[0-9a-f]{32}")
"""A cache key, the start of every name in the cache (entries, their locks, scratch)."""


@contextmanager
def _extensions() -> Iterator[Path]:
    """A directory with the compiled wheel's extension modules, from the cache or built now.

    Held (a shared lock on the entry's lock file) while the caller copies from it, so a
    run pruning the cache meanwhile leaves it alone; marked as used (its mtime), so it is
    among the entries the pruning keeps."""
    cache = _cache_dir()
    entry = cache / _build_key()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{entry.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        if not entry.is_dir():
            # one build per key at a time: a second run (another worktree, another worker)
            # waits here for the first one's build and reuses it instead of building beside it
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not entry.is_dir():
                _build_into(entry)
            fcntl.flock(lock, fcntl.LOCK_SH)
        os.utime(entry)
        yield entry
    _prune(cache, KEEP)


def _prune(cache: Path, keep: int) -> list[str]:
    """Remove all but the ``keep`` entries used last, and what killed runs left; return the
    names removed.

    Only names that start with a key are touched (``$SMDBUS_BUILD_CACHE`` may be a
    directory with other things in it): an entry, its ``.lock`` and scratch directories
    (``key.*``, :func:`_build_into`'s). A key whose lock another run holds (building it,
    copying from it) is left for a later run. An entry is renamed away before it is
    deleted, so a run killed meanwhile cannot leave half an entry under its key.
    """
    names: dict[str, list[Path]] = {}
    for path in cache.iterdir():
        if (found := _KEY.match(path.name)) is not None:
            names.setdefault(found.group(), []).append(path)
    used: dict[str, float] = {}
    for key in names:
        try:
            if (cache / key).is_dir():
                used[key] = (cache / key).stat().st_mtime
        except FileNotFoundError:  # another run's pruning got there first
            pass
    kept = set(sorted(used, key=used.__getitem__, reverse=True)[:keep])
    removed = []
    for key, paths in sorted(names.items()):
        lock_path = cache / f"{key}.lock"
        doomed = [p for p in paths if key not in kept or p.name not in (key, lock_path.name)]
        if not doomed:
            continue
        with lock_path.open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            removed += [p.name for p in doomed if p != lock_path and _remove(p, key)]
            if key not in kept:
                lock_path.unlink(missing_ok=True)
                removed += [lock_path.name] if lock_path in doomed else []
    return removed


def _remove(path: Path, key: str) -> bool:
    """Remove ``path`` (an entry of ``key``, or a scratch directory); False if it was gone."""
    try:
        if path.name == key:  # renamed away first: no half entry under the key, ever
            scratch = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=path.parent))
            path.rename(scratch / "entry")
            path = scratch
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:  # another run's pruning got there first
        return False
    return True


def _build_into(entry: Path) -> None:
    """Build the wheel in a scratch directory beside ``entry``; its extensions become ``entry``."""
    with tempfile.TemporaryDirectory(prefix=f"{entry.name}.", dir=entry.parent) as scratch:
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
    with _extensions() as extensions:
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


def test_the_cache_keeps_the_entries_used_last_and_those_in_use(tmp_path: Path) -> None:
    """Bounded: ``KEEP`` entries stay, with their locks; the others go, with their locks and
    what killed builds left, except an entry another run holds; other names stay."""
    keys = [f"{n:032x}" for n in range(6)]
    for age, key in enumerate(keys):  # keys[0] was used last
        (tmp_path / key / "smdbus").mkdir(parents=True)
        (tmp_path / key / "smdbus/bus.so").write_bytes(b"")
        (tmp_path / f"{key}.lock").touch()
        os.utime(tmp_path / key, (1e9 - age, 1e9 - age))
    (tmp_path / f"{keys[0]}.x1").mkdir()  # a killed build's scratch, beside a kept entry
    (tmp_path / f"{'f' * 32}.x2").mkdir()  # a killed build's scratch, its key never built
    (tmp_path / "notes.txt").write_text("not the cache's\n")
    with (tmp_path / f"{keys[4]}.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_SH)  # another run copying from keys[4]
        removed = _prune(tmp_path, keep=3)
    kept = [*keys[:3], keys[4]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*kept, *(f"{key}.lock" for key in kept), "notes.txt"]
    )
    assert sorted(removed) == sorted(
        [f"{keys[0]}.x1", keys[3], f"{keys[3]}.lock", keys[5], f"{keys[5]}.lock", f"{'f' * 32}.x2"]
    )
    assert _prune(tmp_path, keep=3) == [keys[4], f"{keys[4]}.lock"]  # no longer held
