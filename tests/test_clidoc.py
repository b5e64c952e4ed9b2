"""The man page and the shell completions: generated from the parser, and up to date.

``make man`` writes them into the package data; these tests regenerate them
and compare, so a changed option without ``make man`` fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from smdbus import _clidoc as clidoc
from smdbus.commands import _loop

DATA = Path(clidoc.__file__).parent / "data"


@pytest.mark.parametrize("kind", sorted(clidoc.OUTPUTS))
def test_shipped_files_match_the_parser(kind: str) -> None:
    shipped = (DATA / clidoc.FILES[kind]).read_text()
    assert shipped == clidoc.OUTPUTS[kind](), f"run `make man`: {clidoc.FILES[kind]} is stale"


@pytest.mark.parametrize("kind", sorted(clidoc.OUTPUTS))
def test_the_environment_does_not_reach_the_shipped_files(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SMD_LOOP sets --loop's default for --help; the manual says the default as shipped
    monkeypatch.setenv(_loop.ENV, "asyncio")
    assert clidoc.LOOP_ENV == _loop.ENV
    shipped = (DATA / clidoc.FILES[kind]).read_text()
    assert shipped == clidoc.OUTPUTS[kind]()
    assert os.environ[_loop.ENV] == "asyncio"  # put back


def test_every_command_and_option_is_in_the_manual() -> None:
    page = clidoc.man_page()
    _, commands = clidoc.model()
    for cmd in commands:
        assert f'.SS "smd {cmd.name}"' in page
        for option in cmd.options:
            for flag in option.flags:
                roff = flag.replace("-", "\\-")
                assert f"\\fB{roff}\\fR" in page, (cmd.name, flag)
    assert "smd monitor \\-\\-class NETWORK" in page  # the examples come along


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_the_manual_renders_without_warnings() -> None:
    out = subprocess.run(
        ["groff", "-man", "-ww", "-z"], input=clidoc.man_page(), capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stderr == ""


def _bash_complete(*words: str) -> list[str]:
    script = (
        f"source {DATA / clidoc.FILES['bash']}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        '_smd; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_bash_completes_commands_options_and_choices() -> None:
    assert _bash_complete("smd", "mon") == ["monitor"]
    assert _bash_complete("smd", "-v", "monitor", "--co") == ["--color", "--count"]
    assert _bash_complete("smd", "monitor", "--color", "") == ["auto", "always", "never"]
    assert "--all" in _bash_complete("smd", "peers", "--")
    assert "--open" not in _bash_complete("smd", "peers", "--")  # hidden stays hidden


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_loads_the_completion(tmp_path: Path) -> None:
    shutil.copy(DATA / clidoc.FILES["zsh"], tmp_path / "_smd")
    assert subprocess.run(["zsh", "-n", str(tmp_path / "_smd")]).returncode == 0
    script = f"fpath=({tmp_path} $fpath); autoload -Uz compinit; compinit -u -D; print $_comps[smd]"
    out = subprocess.run(
        ["zsh", "-f", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert out.stdout.strip() == "_smd", out.stderr
