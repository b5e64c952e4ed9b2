"""The servers load no ssl; the one-shot tools load neither asyncio, ssl nor typing.

asyncio imports ssl unless held back (:mod:`smdbus._nossl`); ssl maps libssl,
4 MiB of RSS. For ``smd proxy`` and ``smd daemon`` (default config) this is
read from the running processes' ``/proc/PID/maps`` after boot. ``smd send``,
``smd state`` and ``smd peers`` run to their end against a real proxy under
``-X importtime``, which names every module the process imported. typing is
the biggest module they would load (about 3 ms and 1 MiB, with the
``NamedTuple`` classes it builds: :mod:`smdbus._namedtuple`).
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SMD = str(Path(sys.executable).with_name("smd"))
_names = itertools.count()


def _name(tag: str) -> str:
    return f"smdtest-lean-{tag}-{os.getpid()}-{next(_names)}"


def _maps_ssl(pid: int) -> list[str]:
    with open(f"/proc/{pid}/maps") as f:
        return sorted({line.split()[-1] for line in f if "libssl" in line or "/_ssl." in line})


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.terminate()
        p.wait()


def test_the_proxy_loads_no_ssl(stop: list[subprocess.Popen[bytes]]) -> None:
    name = _name("proxy")
    proc = subprocess.Popen(
        # asyncio's loop: uvloop (the `fast` extra, auto when installed) imports ssl itself
        [SMD, "proxy", "--socket", "@" + name, "--loop", "asyncio"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    stop.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()  # the sentinel: it listens
    assert f"listening on @{name}" in line
    assert _maps_ssl(proc.pid) == []


def test_the_daemon_loads_no_ssl(tmp_path: Path, stop: list[subprocess.Popen[bytes]]) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind("\0" + _name("notify"))
    notify.settimeout(60)
    config = tmp_path / "daemon.toml"
    config.write_text(f'[bus]\nsocket = "@{_name("bus")}"\n')
    env = dict(os.environ, NOTIFY_SOCKET="@" + notify.getsockname()[1:].decode())
    proc = subprocess.Popen(
        [SMD, "daemon", "--config", str(config), "--loop", "asyncio"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop.append(proc)
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
    finally:
        notify.close()
    assert _maps_ssl(proc.pid) == []


@pytest.mark.parametrize(
    "args",
    [
        ["send", "NETWORK", "x", "--count", "3"],
        ["peers", "--all"],
        ["state", "--no-query", "--timeout", "0.01"],  # no daemon: it times out, status 1
    ],
    ids=lambda a: a[0],
)
def test_one_shot_tools_import_no_asyncio_ssl_or_typing(args: list[str], smd_proxy: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "smdbus", *args, "--socket", smd_proxy],
        capture_output=True,
        text=True,
        timeout=60,
    )
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "smdbus.cli" in imported, proc.stderr  # the listing is there
    assert proc.returncode == (1 if args[0] == "state" else 0), proc.stderr
    heavy = {
        m
        for m in imported
        if m.split(".")[0] in ("asyncio", "ssl", "_ssl", "_asyncio", "typing", "_typing")
    }
    assert heavy == set(), sorted(heavy)
