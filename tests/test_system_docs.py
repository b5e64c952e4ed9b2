"""The runnable examples in docs/system.md run and print what the text says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "system.md"


def _example(marker: str) -> str:
    if not DOC.exists():
        pytest.skip(f"{DOC} not found")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"expected one example containing {marker!r}"
    return str(found[0])


def _run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_hold_the_boot_example() -> None:
    out = _run(_example("class Dhcp")).splitlines()
    assert out[:2] == [
        "holding before DHCP until a lease comes",
        "now IFACE_COLDPLUG held by <NotifyLink 'dhcp'>",
    ]
    states = [line for line in out if line.startswith('{"state"')]
    assert len(states) == 14
    assert states[0] == '{"state":"PRE_PRIV_DROP"}' and states[-1] == '{"state":"OPERATIONAL"}'
    assert out[-1] == "operational with lease 192.0.2.10/24"


def test_attach_from_a_worker_thread_example() -> None:
    out = _run(_example("def worker")).splitlines()
    assert len(out) == 1 and out[0].startswith("uploading to https://example.com/metrics from ")
    thread = out[0].rsplit(" ", 1)[1]
    assert thread not in ("worker", "MainThread")  # ran on the bus's loop thread
