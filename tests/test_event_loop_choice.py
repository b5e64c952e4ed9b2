"""Which loop ``smd proxy`` and ``smd daemon`` run on (smdbus.commands._loop), for real.

The proxy says its loop on its first line; each case serves a publisher and a
subscriber (blocking streams, the lean receive path) through it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from smdbus.classes import user_class
from smdbus.commands import _loop
from smdbus.wire import BlockingStream

SMD = [sys.executable, "-m", "smdbus"]
CLS = user_class(3)

try:
    import uvloop  # noqa: F401

    HAVE_UVLOOP = True
except ImportError:
    HAVE_UVLOOP = False


def _start(*args: str) -> tuple[subprocess.Popen[str], str, str]:
    addr = f"@smdbus-loop-{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen(
        [*SMD, "proxy", "--socket", addr, *args],
        env={k: v for k, v in os.environ.items() if k != _loop.ENV},  # the default is the default
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, addr, proc.stdout.readline()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.terminate()
        p.wait(5)


def _exchange(addr: str) -> list[tuple[int, bytes]]:
    """Three messages from one stream to another, taken on the lean receive path."""
    got: list[tuple[int, bytes]] = []
    with (
        BlockingStream.connect(addr, CLS) as sub,
        BlockingStream.connect(addr, 0) as pub,
    ):
        for i in range(3):
            pub.send(CLS, b"m%d" % i)
        while len(got) < 3:
            n = sub.dispatch(lambda cls, ts, body: got.append((cls, body)), 5.0)
            assert n, "nothing arrived within 5 s"
    return got


@pytest.mark.parametrize(
    "choice",
    [
        "asyncio",
        pytest.param(
            "uvloop", marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop not installed")
        ),
    ],
)
def test_the_proxy_runs_and_serves_on_the_loop_asked_for(
    choice: str, procs: list[subprocess.Popen[str]]
) -> None:
    proc, addr, line = _start("--loop", choice)
    procs.append(proc)
    assert line.rstrip().endswith(f"({choice})"), line
    assert _exchange(addr) == [(CLS, b"m0"), (CLS, b"m1"), (CLS, b"m2")]


def test_uvloop_by_default_when_installed_and_asyncio_when_asked(
    procs: list[subprocess.Popen[str]],
) -> None:
    proc, _, line = _start()
    procs.append(proc)
    assert line.rstrip().endswith("(uvloop)" if HAVE_UVLOOP else "(asyncio)"), line
    proc, _, line = _start("--loop", "asyncio")
    procs.append(proc)
    assert line.rstrip().endswith("(asyncio)"), line


def test_asking_for_uvloop_without_it_stops_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    with pytest.raises(_loop.LoopUnavailable, match=r"smdbus\[fast\]"):
        _loop.loop_factory("uvloop")
    assert _loop.loop_factory("auto") == (None, "asyncio")  # auto: silently asyncio's
    assert _loop.loop_factory("asyncio") == (None, "asyncio")


def test_smd_proxy_loop_uvloop_without_it_exits_2() -> None:
    # a child in which uvloop cannot be imported, as where it is not installed
    code = (
        "import sys; sys.modules['uvloop'] = None; from smdbus.cli import main; "
        "sys.exit(main(['proxy', '--socket', '@x', '--loop', 'uvloop']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2, done
    assert "uvloop is not installed" in done.stderr


@pytest.mark.parametrize("command", ["proxy", "daemon"])
def test_smd_loop_naming_no_loop_stops_with_one_line_and_exit_2(
    command: str, tmp_path: Path
) -> None:
    # A typo in the environment must not silently run another loop than the one meant
    # (SMD_LOOP=asyncoi, meant to turn uvloop off). Each command is given something that
    # would fail otherwise (exit 1: no such directory; --check: exit 0) so that it cannot
    # start serving: the loop is checked before anything starts.
    config = tmp_path / "daemon.toml"
    config.write_text('[bus]\nsocket = "@smdbus-loop-check"\n')
    args = {
        "proxy": ["proxy", "--socket", str(tmp_path / "no" / "such" / "dir" / "s")],
        "daemon": ["daemon", "--check", "--config", str(config)],
    }[command]
    done = subprocess.run(
        [*SMD, *args],
        env=dict(os.environ, **{_loop.ENV: "asyncoi\x1b[2J"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"smd {command}: {_loop.ENV}='asyncoi\\x1b[2J'" in done.stderr, done.stderr
    assert "auto, asyncio, uvloop" in done.stderr, done.stderr


def test_an_empty_smd_loop_is_the_default() -> None:
    parser = argparse.ArgumentParser()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(_loop.ENV, "")
        _loop.add_loop(parser)
    assert parser.parse_args([]).loop == "auto"
