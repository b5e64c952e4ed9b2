"""The optional compiled bus (mypyc) must behave exactly as the Python one.

Builds ``smdbus.bus`` with scripts/build-speedups.sh into a temporary copy of the
package, then runs the bus's own test files against that build in a child pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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


def test_compiled_bus_passes_the_bus_tests(tmp_path: Path) -> None:
    mypyc = _mypyc()
    if mypyc is None or (shutil.which("gcc") is None and shutil.which("cc") is None):
        pytest.skip("building the compiled bus needs mypyc (the dev extra) and a C compiler")
    env = {**os.environ, "MYPYC": mypyc}
    build = subprocess.run(
        [str(ROOT / "scripts" / "build-speedups.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    env["PYTHONPATH"] = str(tmp_path)
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
