"""Footprint: what smdbus costs in memory, beside mosquitto.

Goal 1 of issue 17, each figure printed as a ratio with "met" or "not met":
``smd daemon`` RSS after boot (READY=1 on its NOTIFY_SOCKET) with the
default configuration (only the socket name is made unique) <= 24 MiB;
``smd proxy`` idle RSS (once its socket listens) <= 16 MiB. mosquitto's
idle RSS in the same run is the anchor. Goal 2 (the one-shot tools' wall
time and RSS against a bare Python) is bench/cli.py's, with the helpers here.

Medians of ``--runs`` runs (at least 3). ``--shares`` also tells where the
daemon's and the proxy's memory go: it boots each, lists the modules it
holds at exit, sorts them into groups, imports the groups in turn in a fresh
interpreter and prints the RSS each adds; what is left is the process's own
objects and buffers. Then what ``import asyncio`` (without ssl) brings, its
dependencies group by group.

    .venv/bin/python bench/footprint.py [--runs 5] [--shares]

The daemon and the proxy run on asyncio's loop here (``SMD_LOOP=asyncio``
unless the environment sets it): the figures are a plain install's. With the
``fast`` extra installed they run on uvloop, which imports ``ssl``: +6.5 MiB
(docs/performance.md); ``SMD_LOOP=auto`` measures that.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

MIB = 1024 * 1024
MOSQUITTO = "/usr/sbin/mosquitto"
TIME = "/usr/bin/time"  # GNU time: %M is the peak RSS in KiB
PY = sys.executable
SMD = str(Path(PY).with_name("smd"))
GOALS = {"daemon": 24 * MIB, "proxy": 16 * MIB, "tool_rss": 12 * MIB, "tool_wall": 1.5}
os.environ.setdefault("SMD_LOOP", "asyncio")  # a plain install's loop (the docstring)


def rss(pid: int) -> int:
    """VmRSS of a live process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _unique(tag: str) -> str:
    return f"smdfp-{tag}-{os.getpid()}-{time.monotonic_ns()}"


def _wait(ready: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:g} s")
        time.sleep(0.01)


def _listening_unix(name: str) -> bool:
    with open("/proc/net/unix") as f:
        return any(line.rstrip().endswith(" @" + name) for line in f)


@contextmanager
def daemon(extra: tuple[str, ...] = ()) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``smd daemon`` with the default config but a unique socket, once it said READY=1.

    ``extra`` goes before ``-m smdbus`` (``-c CODE`` replaces ``-m smdbus``).
    """
    name = _unique("bus")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind("\0" + _unique("notify"))
    notify.settimeout(60)
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "daemon.toml"
        cfg.write_text(f'[bus]\nsocket = "@{name}"\n')
        env = dict(os.environ, NOTIFY_SOCKET="@" + notify.getsockname()[1:].decode())
        entry = list(extra) if "-c" in extra else [*extra, "-m", "smdbus"]
        cmd = [PY, *entry, "daemon", "--config", str(cfg)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while b"READY=1" not in notify.recv(4096):
                pass
            yield proc, "@" + name
        finally:
            proc.terminate()
            proc.wait()
            notify.close()


def daemon_rss() -> int:
    with daemon() as (proc, _):
        return rss(proc.pid)


def proxy_rss() -> int:
    name = _unique("proxy")
    proc = subprocess.Popen(
        [SMD, "proxy", "--socket", "@" + name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(lambda: _listening_unix(name), "smd proxy")
        return rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait()


def mosquitto_rss() -> int | None:
    if not os.path.exists(MOSQUITTO):
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        conf = Path(d) / "m.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def up() -> bool:
            with socket.socket() as c:
                return c.connect_ex(("127.0.0.1", port)) == 0

        try:
            _wait(up, "mosquitto")
            return rss(proc.pid)
        finally:
            proc.terminate()
            proc.wait()


def timed(cmd: list[str]) -> tuple[float, int, float]:
    """(wall seconds, max RSS bytes, CPU seconds) of one run of ``cmd``; it must succeed.

    The peak comes from ``/usr/bin/time``, not from our own ``wait4``: Linux
    keeps a process's peak across ``exec``, so a child forked from this
    (bigger) Python would report our size, not its own. The CPU time (user
    and system, time's own included: well under a millisecond) is our
    ``wait4``'s, in microseconds where time prints hundredths of a second.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        [TIME, "-f", "%M", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {err}")
    return wall, int(err.split()[-1]) * 1024, usage.ru_utime + usage.ru_stime


def verdict(ratio: float, limit: float = 1.0) -> str:
    return "met" if ratio <= limit else "not met"


def med(values: list[float] | list[int]) -> float:
    return float(statistics.median(values))


GROUPS = ("stdlib", "ssl", "asyncio", "h11", "smdbus.net", "smdbus", "other")
"""Imported in this order: a group brings what it imports of the groups after it."""


def group_of(module: str) -> str:
    top = module.split(".")[0]
    if top in ("ssl", "_ssl", "_hashlib"):
        return "ssl"
    if top in ("asyncio", "_asyncio", "concurrent"):
        return "asyncio"
    if module.startswith("smdbus.net"):
        return "smdbus.net"
    if top in ("smdbus", "h11"):
        return top
    if top in sys.stdlib_module_names or top.startswith("_") or top == "encodings":
        return "stdlib"
    return "other"


# Runs ``smd ARGS...``; writes the modules it holds (in import order) when it exits.
_LISTING = (
    "import atexit, sys\n"
    "path = sys.argv[1]\n"
    "def dump():\n"
    "    with open(path, 'w') as f: f.write('\\n'.join(sys.modules))\n"
    "atexit.register(dump)\n"
    "sys.argv = ['smd', *sys.argv[2:]]\n"
    "from smdbus.cli import main\n"
    "main()\n"
)


_IMPORT_GROUPS = (
    "import importlib, sys\n"
    "if sys.argv[1] == 'nossl': sys.modules['ssl'] = None\n"
    "def rss():\n"
    "    for l in open('/proc/self/status'):\n"
    "        if l.startswith('VmRSS:'): return int(l.split()[1]) * 1024\n"
    "print(rss(), flush=True)\n"
    "for line in sys.stdin:\n"
    "    for m in line.split():\n"
    "        try: importlib.import_module(m)\n"
    "        except Exception: pass\n"
    "    print(rss(), flush=True)\n"
)
"""Imports each line's modules in turn in a fresh interpreter; prints RSS first and after each."""


def import_groups(groups: list[list[str]], *, no_ssl: bool) -> list[int]:
    """RSS of a fresh interpreter, then after importing each group in turn (bytes).

    ``no_ssl`` imports as :mod:`smdbus._nossl` does: ``ssl`` refused, so
    asyncio loads without it.
    """
    feed = "".join(" ".join(g) + "\n" for g in groups)
    out = subprocess.run(
        [PY, "-c", _IMPORT_GROUPS, "nossl" if no_ssl else "ssl"],
        input=feed,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [int(line) for line in out.split()]


def print_shares(title: str, labels: list[str], values: list[int], total: int | None) -> None:
    """One line per group: the RSS it adds; ``total`` (a live process's) leaves a remainder."""
    print(f"\n{title}")
    print(f"  {'interpreter':<56} {values[0] / MIB:6.1f} MiB")
    for label, before, after in zip(labels, values, values[1:], strict=False):
        print(f"  {label:<56} {(after - before) / MIB:+6.2f} MiB")
    if total is not None:
        print(f"  {'the rest: objects, buffers':<56} {(total - values[-1]) / MIB:+6.2f} MiB")


def booted_modules(what: str) -> tuple[int, list[str]]:
    """(RSS once ready, the modules it holds at exit, in import order) of the daemon or proxy."""
    with tempfile.TemporaryDirectory() as d:
        listing = Path(d) / "modules"
        if what == "daemon":
            with daemon(("-c", _LISTING, str(listing))) as (proc, _):
                booted = rss(proc.pid)
        else:
            name = _unique("shares")
            cmd = [PY, "-c", _LISTING, str(listing), "proxy", "--socket", "@" + name]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                _wait(lambda: _listening_unix(name), "smd proxy")
                booted = rss(proc.pid)
            finally:
                proc.terminate()
                proc.wait()
        return booted, listing.read_text().split()


ASYNCIO_NEEDS = (
    ("socket, selectors, enum, re (the proxy needs them anyway)", "socket selectors enum re"),
    ("typing (asyncio.timeouts, taskgroups)", "typing"),
    ("inspect, with ast, dis, tokenize", "inspect"),
    ("concurrent.futures, with logging, threading", "concurrent.futures"),
    ("subprocess", "subprocess"),
    ("asyncio's own modules", "asyncio"),
)
"""What ``import asyncio`` (without ssl) loads, group by group, each with what it imports."""


def shares() -> None:
    """Boot, list the modules at exit, then import them group by group; asyncio's needs."""
    for what in ("daemon", "proxy"):
        booted, modules = booted_modules(what)
        by_group: dict[str, list[str]] = {g: [] for g in GROUPS}
        for m in modules:
            by_group[group_of(m)].append(m)
        values = import_groups([by_group[g] for g in GROUPS], no_ssl="ssl" not in modules)
        labels = [f"{g} ({len(by_group[g])} modules)" for g in GROUPS]
        title = f"where the {what}'s {booted / MIB:.1f} MiB go ({len(modules)} modules imported):"
        print_shares(title, labels, values, booted)
    values = import_groups([m.split() for _, m in ASYNCIO_NEEDS], no_ssl=True)
    title = "what import asyncio (without ssl) loads, group by group:"
    print_shares(title, [label for label, _ in ASYNCIO_NEEDS], values, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per figure, median (>= 3)")
    ap.add_argument("--shares", action="store_true", help="where the daemon's and proxy's go")
    args = ap.parse_args()
    runs = max(3, args.runs)
    if shutil.which("mosquitto") is None and not os.path.exists(MOSQUITTO):
        print("mosquitto not installed: no anchor for RSS")

    d_rss = med([daemon_rss() for _ in range(runs)])
    p_rss = med([proxy_rss() for _ in range(runs)])
    m_values = [v for v in (mosquitto_rss() for _ in range(runs)) if v is not None]
    m_rss = med(m_values) if m_values else None
    anchor = f"mosquitto {m_rss / MIB:.1f} MiB" if m_rss else "no mosquitto"
    print(f"goal 1, footprint ({runs} runs, medians; {anchor})")
    for what, value, goal in (
        ("smd daemon after boot", d_rss, GOALS["daemon"]),
        ("smd proxy idle", p_rss, GOALS["proxy"]),
    ):
        vs = f", {value / m_rss:.2f}x mosquitto" if m_rss else ""
        ratio = value / goal
        print(
            f"  {what:<24} {value / MIB:6.1f} MiB{vs}; goal <= {goal / MIB:.0f} MiB: "
            f"{ratio:.2f} of it, {verdict(ratio)}"
        )

    if args.shares:
        shares()


if __name__ == "__main__":
    main()
