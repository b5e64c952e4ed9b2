"""The boot gates with the real state manager, and ``smd cpd`` as a user runs it.

The portal here is the standard library's threading HTTP server on
127.0.0.1, whose answer the test changes as it goes (a user logging in).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from smdbus import Bus, Class
from smdbus.daemon._gates import ColdplugGate, CpdGate
from smdbus.net import CaptivePortalDetect, CaptivePortalDetector, CpdState
from smdbus.system import State, StateManager

SPEC = CaptivePortalDetect(
    endpoint="127.0.0.1", http_url="generate_204", http_expect=204, http_fail_redirect=True
)
PORTAL_302 = (302, {"Location": "http://portal.lan/login"})
OK_204: tuple[int, dict[str, str]] = (204, {})


class PortalServer(ThreadingHTTPServer):
    answer: tuple[int, dict[str, str]] = PORTAL_302
    hits = 0


class Handler(BaseHTTPRequestHandler):
    server: PortalServer

    def do_GET(self) -> None:
        self.server.hits += 1
        status, headers = self.server.answer
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def portal() -> Iterator[PortalServer]:
    server = PortalServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server: PortalServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/generate_204"


class Record:
    """Every SYSTEM_STATE and NETWORK message, in bus order, as compact text."""

    def __init__(self, bus: Bus) -> None:
        self.lines: list[str] = []
        self._new = asyncio.Event()
        bus.register(Class.SYSTEM_STATE | Class.NETWORK, self._got, name="record")

    def _got(self, cls: int, ts: int, payload: bytes) -> None:
        self.lines.append(payload.decode())
        self._new.set()

    async def until(self, pred: Callable[[list[str]], bool], timeout: float = 5.0) -> None:
        async def wait() -> None:
            while not pred(self.lines):
                self._new.clear()
                await self._new.wait()

        await asyncio.wait_for(wait(), timeout)


def states(lines: list[str]) -> list[str]:
    return [json.loads(x)["state"] for x in lines if x.startswith('{"state"')]


CAPTIVE = '{"type":"cpd","result":"Captive"}'
OK = '{"type":"cpd","result":"OK"}'


async def test_cpd_gate_holds_a_captive_device_until_a_check_says_ok(
    portal: PortalServer,
) -> None:
    async with Bus() as bus:
        rec = Record(bus)
        detector = CaptivePortalDetector(SPEC, url=url_of(portal), bus=bus)
        gate = CpdGate(detector)
        manager = StateManager(bus, notifiers=[("cpd", gate)])

        assert manager.steps(State.OPERATIONAL) is False
        assert manager.state == State.DHCP
        assert detector.running  # the state machine started the first check
        await rec.until(lambda lines: CAPTIVE in lines)
        await bus.drain()
        # Captive: the gate asked the manager to go on, and refused again.
        assert manager.state == State.DHCP
        assert detector.state is CpdState.CAPTIVE
        assert gate.refusals == 2
        assert detector.checks == 1  # and no check loop against the portal
        assert portal.hits == 1

        portal.answer = OK_204  # the user logged in through the portal
        bus.send_json(Class.NETWORK, {"trigger": "cpdcheck", "src": "ui"})
        assert await asyncio.wait_for(manager.wait_for(State.OPERATIONAL), 5) == State.OPERATIONAL
        await bus.drain()
        await detector.aclose()

    assert states(rec.lines)[-9:] == [
        "CPD_PRE_TIME",
        "TIME_VALID",
        "CPD_POST_TIME",
        "POLICY_VALID",
        "REGISTERED",
        "AUTH1",
        "AUTH2",
        "ONE_TIME_UPDATES",
        "OPERATIONAL",
    ]
    i = rec.lines.index
    assert i('{"state":"DHCP"}') < i(CAPTIVE) < i('{"trigger":"cpdcheck","src":"ui"}') < i(OK)
    assert i(OK) < i('{"state":"CPD_PRE_TIME"}')


async def test_cpd_gate_lets_through_when_already_ok(portal: PortalServer) -> None:
    portal.answer = OK_204
    async with Bus() as bus:
        detector = CaptivePortalDetector(SPEC, url=url_of(portal), bus=bus)
        gate = CpdGate(detector)
        await detector.check()
        manager = StateManager(bus, notifiers=[("cpd", gate)])
        assert manager.steps(State.OPERATIONAL) is True
        await detector.aclose()
    assert gate.refusals == 0
    assert detector.checks == 1


async def test_cpd_gate_no_internet_holds_too(portal: PortalServer) -> None:
    portal.answer = (200, {})  # a portal that answers 200 where 204 is expected
    async with Bus() as bus:
        rec = Record(bus)
        detector = CaptivePortalDetector(SPEC, url=url_of(portal), bus=bus)
        manager = StateManager(bus, notifiers=[("cpd", CpdGate(detector))])
        manager.steps(State.OPERATIONAL)
        await rec.until(lambda lines: '{"type":"cpd","result":"No internet"}' in lines)
        await bus.drain()
        assert manager.state == State.DHCP
        await detector.aclose()


class FakeDump:
    """Stands in for the route monitor: the dump finishes when the test says."""

    def __init__(self) -> None:
        self.dump_done = False
        self._listeners: list[Callable[[object], None]] = []

    def add_dump_listener(self, listener: Callable[[object], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: None

    def finish(self) -> None:
        self.dump_done = True
        for listener in self._listeners:
            listener(self)


async def test_boot_from_coldplug_through_cpd_to_operational(portal: PortalServer) -> None:
    """The sequence docs/network.md shows: both gates, a captive portal, a login."""
    async with Bus() as bus:
        rec = Record(bus)
        dump = FakeDump()
        detector = CaptivePortalDetector(SPEC, url=url_of(portal), bus=bus)
        manager = StateManager(
            bus, notifiers=[("cpd", CpdGate(detector)), ("coldplug", ColdplugGate(dump))]
        )
        manager.steps(State.OPERATIONAL)
        await bus.drain()
        assert manager.state == State.COLLECTING_STDIN
        assert not detector.running

        dump.finish()
        await rec.until(lambda lines: CAPTIVE in lines)
        portal.answer = OK_204
        # What the route monitor says when DHCP installs a new default route:
        bus.send_json(Class.NETWORK, {"rt": "add"})
        bus.send_json(Class.NETWORK, {"trigger": "cpdcheck", "src": "gw-change"})
        await asyncio.wait_for(manager.wait_for(State.OPERATIONAL), 5)
        await bus.drain()
        await detector.aclose()

    assert rec.lines == [
        '{"state":"PRE_PRIV_DROP"}',
        '{"state":"INITIALIZED"}',
        '{"state":"COLLECTING_STDIN"}',
        '{"state":"IFACE_COLDPLUG"}',
        '{"state":"DHCP"}',
        CAPTIVE,
        '{"rt":"add"}',
        '{"trigger":"cpdcheck","src":"gw-change"}',
        OK,
        '{"state":"CPD_PRE_TIME"}',
        '{"state":"TIME_VALID"}',
        '{"state":"CPD_POST_TIME"}',
        '{"state":"POLICY_VALID"}',
        '{"state":"REGISTERED"}',
        '{"state":"AUTH1"}',
        '{"state":"AUTH2"}',
        '{"state":"ONE_TIME_UPDATES"}',
        '{"state":"OPERATIONAL"}',
    ]


def test_gates_answer_confirmations_and_other_moves_with_zero() -> None:
    dump = FakeDump()
    cold = ColdplugGate(dump)
    cpd = CpdGate(CaptivePortalDetector(SPEC))
    fake: object = object()
    for gate in (cold, cpd):
        for current, target in [(5, 5), (7, 7), (3, 4), (8, 9), (15, 16)]:
            assert gate(fake, None, current, target) == 0  # type: ignore[arg-type]
    assert cold(fake, None, 4, 5) == 1  # type: ignore[arg-type]


# -- smd cpd ------------------------------------------------------------------------------


def smd_cpd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smdbus", "cpd", *args], capture_output=True, text=True, timeout=30
    )


def test_smd_cpd_reports_each_result(portal: PortalServer) -> None:
    portal.answer = OK_204
    r = smd_cpd("--url", url_of(portal), "--no-retry")
    assert (r.returncode, r.stdout.split(" (")[0]) == (0, "OK: 204 as expected")
    portal.answer = PORTAL_302
    r = smd_cpd("--url", url_of(portal), "--no-retry", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 3
    assert out["result"] == "Captive"
    assert out["probes"][0]["location"] == "http://portal.lan/login"


def test_smd_cpd_timeout_and_no_internet() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()  # accepts (in the kernel) and never answers
        port = s.getsockname()[1]
        r = smd_cpd("--url", f"http://127.0.0.1:{port}/", "--timeout", "0.3", "--no-retry")
    assert r.returncode == 4
    assert r.stdout.startswith("No internet: timeout: no answer within 0.3 s")


def test_smd_cpd_bad_policy_names_the_field(tmp_path: Path) -> None:
    f = tmp_path / "policy.json"
    f.write_text('{"s": [{"captive_portal_detect": {"endpoint": "x", "port": "80"}}]}')
    r = smd_cpd("--policy", str(f))
    assert r.returncode == 2
    assert f'{f}: s[0].captive_portal_detect.port: expected int 1..65535, got "80"' in r.stderr


async def test_lws_41_rule_lets_a_captive_device_through(portal: PortalServer) -> None:
    async with Bus() as bus:
        rec = Record(bus)
        detector = CaptivePortalDetector(SPEC, url=url_of(portal), bus=bus)
        manager = StateManager(bus, notifiers=[("cpd", CpdGate(detector, require_ok=False))])
        manager.steps(State.OPERATIONAL)
        await asyncio.wait_for(manager.wait_for(State.OPERATIONAL), 5)
        await bus.drain()
        await detector.aclose()
    assert detector.state is CpdState.CAPTIVE
    assert rec.lines.index(CAPTIVE) < rec.lines.index('{"state":"CPD_PRE_TIME"}')
