"""Shared fixtures: network namespaces for the route and daemon tests (we run as root);
a real ``smd proxy`` process for the command-line tests.

The suite runs in parallel (``make test``: pytest-xdist, ``-n 4 --dist loadfile``), so every
test owns what it touches: sockets in its own ``tmp_path`` or under a fresh abstract name,
ports the kernel picks, namespaces named by pid. A module runs whole on one worker, in its
order, so a module-scoped fixture (a built wheel, a browser on one page, the C scenario
program, one soak run) is made once per run, as in a serial run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

# No deadline on a generated example: hypothesis's default (200 ms per example) is a timed
# assertion, and on a machine busy with the other workers a 150 ms example takes 270 ms.
settings.register_profile("smdbus", deadline=None)
settings.load_profile("smdbus")

_names = itertools.count()

# -- the longest modules first ---------------------------------------------------------

_SECONDS_KEY = "smdbus/module-seconds"
_seconds: dict[str, float] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the modules by the time they took in the last run, longest first.

    Under ``make test`` each module runs whole on one worker (``--dist loadfile``) and a
    worker takes the next module when it is done: a module of 8 s handed out last would
    keep one worker busy while the others have finished. Longest first, the last modules
    handed out are the short ones. With nothing recorded yet (a fresh clone) the order is
    the collection's. The sort is stable: within a module, the tests keep their order.
    """
    cache = getattr(config, "cache", None)
    seconds: dict[str, float] = cache.get(_SECONDS_KEY, {}) if cache is not None else {}
    if seconds:
        items.sort(key=lambda item: -seconds.get(item.nodeid.split("::")[0], 0.0))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::")[0]
    _seconds[module] = _seconds.get(module, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Record each module's time (the controller's reports cover every worker's tests)."""
    cache = getattr(session.config, "cache", None)
    if cache is None or hasattr(session.config, "workerinput") or not _seconds:
        return  # a worker sees only its own modules; the controller writes for all
    cache.set(_SECONDS_KEY, {**cache.get(_SECONDS_KEY, {}), **_seconds})


MakeNetns = Callable[..., str]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def make_netns() -> Iterator[MakeNetns]:
    """``make_netns(prefix, *links, lo=True)``: a fresh namespace with ``links`` up, IPv6 off.

    ``lo=False`` leaves the loopback down (and so its local routes out of the tables).

    Each link is a dummy, or a veth pair where the kernel lacks dummy links (its peer
    ``<link>p`` is up too). Skips, naming the reason, where namespaces cannot be made.
    Every namespace made is deleted afterwards.
    """
    if shutil.which("ip") is None:
        pytest.skip("network namespaces need the ip command (iproute2), not installed")
    made: list[str] = []

    def make(prefix: str, *links: str, lo: bool = True) -> str:
        name = f"{prefix}{os.getpid()}x{next(_names)}"
        try:
            _ip("netns", "add", name)
        except subprocess.CalledProcessError as e:
            pytest.skip(f"cannot create a network namespace here: {e.stderr.strip()}")
        made.append(name)
        subprocess.run(
            [
                *("ip", "netns", "exec", name, "sh", "-c"),
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6;"
                "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
            ],
            capture_output=True,
            check=False,
        )
        if lo:
            _ip("-n", name, "link", "set", "lo", "up")
        for link in links:
            try:
                _ip("-n", name, "link", "add", link, "type", "dummy")
            except subprocess.CalledProcessError:
                _ip("-n", name, "link", "add", link, "type", "veth", "peer", "name", f"{link}p")
                _ip("-n", name, "link", "set", f"{link}p", "up")
            _ip("-n", name, "link", "set", link, "up")
        return name

    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


SMD = [sys.executable, "-m", "smdbus"]


@pytest.fixture
def smd_proxy() -> Iterator[str]:
    """A real ``smd proxy`` on a fresh abstract address (yielded as ``@name``), stopped after."""
    addr = f"@smdbus-test-{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen(
        [*SMD, "proxy", "--socket", addr], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert "listening on" in proc.stdout.readline()
    yield addr
    if proc.poll() is None:
        proc.terminate()
    proc.wait(5)
