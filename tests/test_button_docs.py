"""docs/buttons.md shows real output: every ``$ smd button-replay`` block is re-run and compared."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "buttons.md"
BLOCK = re.compile(r"```\n(\$ smd button-replay [^\n]*)\n(.*?)```", re.S)


def sessions() -> list[tuple[str, str]]:
    return [(cmd[2:], out) for cmd, out in BLOCK.findall(DOC.read_text())]


def test_the_doc_has_replay_sessions() -> None:
    assert len(sessions()) >= 8


@pytest.mark.parametrize(("command", "expected"), sessions(), ids=[c for c, _ in sessions()])
def test_replay_output_in_the_doc_is_real(command: str, expected: str) -> None:
    args = shlex.split(command)[1:]  # drop "smd"
    out = subprocess.run(
        [sys.executable, "-m", "smdbus", *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr + out.stdout == expected


def test_the_docs_toml_example_loads(tmp_path: Path) -> None:
    from smdbus.button._config import load_file
    from smdbus.button.sources import GpiodSource

    pytest.importorskip("evdev")
    (toml,) = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    path = tmp_path / "buttons.toml"
    path.write_text(toml)
    bc, panel = load_file(path)
    assert [b.name for b in bc.controller.buttons] == ["user", "power"]
    assert bc.controller.buttons[0].regime.ms_repeat_down == 250
    assert bc.controller.buttons[1].regime.ms_min_down == 30
    assert isinstance(panel.source, GpiodSource)
    assert panel.source.lines[0].debounce_ms == 10
    path.write_text(toml.replace("line = 17", "pin = 17"))
    with pytest.raises(ValueError, match=r"controller\[1\]\.button\[0\]: unknown setting\(s\) pin"):
        load_file(path)
    path.write_text(toml.replace("  line = 17 ", "  #line = 17 "))
    with pytest.raises(ValueError, match=r"controller\[1\]\.button\[0\]: missing 'line' \(an"):
        load_file(path)
