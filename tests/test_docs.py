"""The docs' examples run: every Python block and every ``$ smd`` command line.

- Every ```python block of docs/*.md and README.md compiles (top-level ``await``
  allowed: many show the body of a coroutine) and every name it imports from
  smdbus exists, so a renamed or deleted API fails here, not in a reader's hands.
- A block that is a whole program (every name it reads, it defines or imports; it
  touches no device or installed file under /dev, /etc or /run) is run, in a
  network namespace of its own where ``smd proxy`` serves the default address
  ``@proxy.ss.lws`` (abstract sockets are per namespace, so nothing else on the
  machine is disturbed). It must exit 0, or, for an example that serves or
  listens for ever, still be running without an error when the test stops it.
- Every ``$ smd ...`` line in a fenced block runs against that proxy and must not
  be refused as a usage error (exit 2) or end in a traceback. (docs/buttons.md's
  replay sessions are compared with their output in tests/test_button_docs.py.)

Blocks that are fragments (they use a ``bus`` or ``client`` the text introduced)
are covered by the first check only.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SMD = str(Path(sys.executable).with_name("smd"))
Results = dict[str, tuple[int | None, str]]
QUIET_FOR = 2.5  # seconds a never-ending example runs before it is stopped (a bound, not a figure)


def _blocks(lang: str) -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if m.group(1) == lang:
                line = text[: m.start()].count("\n") + 1
                out.append((f"{doc.name}:{line}", m.group(2)))
    return out


PYTHON = _blocks("python")


def _tree(source: str) -> ast.Module:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = compile(source, "<doc>", "exec", flags=flags, dont_inherit=True)
    assert isinstance(tree, ast.Module)
    return tree


def _unbound(tree: ast.Module) -> set[str]:
    """Names the block reads but neither defines nor imports (nor are builtins)."""
    bound: set[str] = set(dir(builtins))
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return read - bound


def _awaits_at_top(tree: ast.Module) -> bool:
    try:
        compile(tree, "<doc>", "exec", dont_inherit=True)
    except SyntaxError:
        return True
    return False


def _whole_program(source: str) -> bool:
    tree = _tree(source)
    if _unbound(tree) or _awaits_at_top(tree):
        return False
    return not re.search(r"[\"'](/dev/|/etc/|/run/)", source)


def test_the_docs_have_examples() -> None:
    assert len(PYTHON) >= 20
    assert sum(_whole_program(src) for _, src in PYTHON) >= 10


@pytest.mark.parametrize(("where", "source"), PYTHON, ids=[w for w, _ in PYTHON])
def test_python_block_compiles_and_imports_what_exists(where: str, source: str) -> None:
    tree = _tree(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("smdbus"):
            module = importlib.import_module(node.module or "")
            missing = [a.name for a in node.names if not hasattr(module, a.name)]
            assert not missing, f"{where}: {node.module} has no {missing}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("smdbus"):
                    importlib.import_module(alias.name)


# -- run what can run, beside a proxy of its own -----------------------------------------


class Namespace:
    """A fresh network namespace (``unshare -n``) holding ``smd proxy`` on the default address."""

    def __init__(self) -> None:
        script = f"ip link set lo up; exec {shlex.quote(SMD)} proxy"
        self.proxy = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proxy.stdout is not None
        line = self.proxy.stdout.readline()
        assert "listening on" in line, line
        self.pid = self.proxy.pid  # unshare execs sh, which execs smd: one process

    def run(self, argv: list[str], *, cwd: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["nsenter", "-t", str(self.pid), "-n", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env={**os.environ, "NO_COLOR": "1"},
        )

    def close(self) -> None:
        self.proxy.terminate()
        try:
            self.proxy.wait(5)
        except subprocess.TimeoutExpired:
            self.proxy.kill()
            self.proxy.wait()


@pytest.fixture(scope="module")
def netns() -> Iterator[Namespace]:
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("running the examples beside their own proxy needs root, unshare and nsenter")
    ns = Namespace()
    yield ns
    ns.close()


def _finish_all(procs: dict[str, subprocess.Popen[str]]) -> Results:
    """Exit code (None: still running after QUIET_FOR s, then stopped) and stderr of each.

    The examples run side by side, so the ones that never end cost QUIET_FOR once.
    """
    deadline = time.monotonic() + QUIET_FOR
    results: Results = {}
    for key, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=max(deadline - time.monotonic(), 0.01))
            results[key] = (proc.returncode, err)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            results[key] = (None, err)
    return results


RUNNABLE = [(w, s) for w, s in PYTHON if _whole_program(s)]


@pytest.fixture(scope="module")
def ran(
    netns: Namespace, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int | None, str]]:
    """Every runnable example and every ``$ smd`` line, run at once in the namespace."""
    cwd = tmp_path_factory.mktemp("examples")
    procs = {where: netns.run([sys.executable, "-c", src], cwd=cwd) for where, src in RUNNABLE}
    for where, command in SMD_LINES:
        procs[where] = netns.run([SMD, *shlex.split(command)[1:]], cwd=cwd)
    return _finish_all(procs)


def _missing_modules(source: str) -> list[str]:
    """Top-level modules the block imports that this machine does not have (optional ones)."""
    names: set[str] = set()
    for node in ast.walk(_tree(source)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


@pytest.mark.parametrize("where", [w for w, _ in RUNNABLE])
def test_whole_program_runs(where: str, ran: Results) -> None:
    missing = _missing_modules(dict(RUNNABLE)[where])
    if missing:
        pytest.skip(f"{where} needs {', '.join(missing)}, not installed here")
    code, err = ran[where]
    assert code in (0, None), f"{where} exited {code}:\n{err}"
    assert "Traceback" not in err, f"{where}:\n{err}"


def _smd_lines() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        if doc.name == "buttons.md":
            continue  # compared with their output in test_button_docs.py
        text = doc.read_text()
        for m in FENCE.finditer(text):
            for line in m.group(2).splitlines():
                if line.startswith("$ smd "):
                    command = line[2:].split("  #")[0].strip()
                    out.append((f"{doc.name}: {command}", command))
    return out


SMD_LINES = _smd_lines()


def test_the_docs_have_smd_commands() -> None:
    assert len(SMD_LINES) >= 4


@pytest.mark.parametrize("where", [w for w, _ in SMD_LINES])
def test_smd_command_line_is_understood(where: str, ran: Results) -> None:
    code, err = ran[where]
    assert code != 2, f"{where}: usage error:\n{err}"
    assert "Traceback" not in err, f"{where}:\n{err}"
