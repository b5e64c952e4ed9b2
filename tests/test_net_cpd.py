"""Captive portal detection against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from smdbus import Bus, Class
from smdbus.net import CaptivePortalDetect, RetryPolicy, parse_policy
from smdbus.net._cpd import (
    CaptivePortalDetector,
    CpdResult,
    CpdState,
    classify,
    trigger_reason,
)

REASONS = {200: "OK", 204: "No Content", 301: "Moved", 302: "Found", 500: "Oops"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


Action = Answer | str  # "hang": never answer; "drop": close without answering; "gate": wait


class Portal:
    """A scripted HTTP/1.1 server: each path answers as told, every request is logged."""

    def __init__(self) -> None:
        self.paths: dict[str, list[Action]] = {}
        self.hits: list[tuple[str, str]] = []
        self.gate = asyncio.Event()
        self.hit = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def script(self, path: str, *actions: Action) -> str:
        """Answer ``path`` with the actions in turn (the last one repeats); returns the URL."""
        self.paths[path] = list(actions)
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for w in list(self._open):
            w.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def count(self, path: str) -> int:
        return sum(1 for _, p in self.hits if p == path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
            self.hits.append((method, path))
            self.hit.set()
            actions = self.paths.get(path, [Answer(404)])
            action = actions.pop(0) if len(actions) > 1 else actions[0]
            if action == "hang":
                await asyncio.sleep(3600)
            if action == "drop":
                return
            if action == "gate":
                await self.gate.wait()
                action = Answer(204)
            assert isinstance(action, Answer)
            lines = [f"HTTP/1.1 {action.status} {REASONS.get(action.status, 'X')}"]
            lines += [f"{k}: {v}" for k, v in action.headers.items()]
            lines += [f"Content-Length: {len(action.body)}", "Connection: close", "", ""]
            writer.write("\r\n".join(lines).encode() + action.body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()


@pytest.fixture
async def portal() -> AsyncIterator[Portal]:
    p = Portal()
    await p.start()
    yield p
    await p.stop()


SPEC = CaptivePortalDetect(
    endpoint="connectivitycheck.android.com",
    http_url="generate_204",
    http_expect=204,
    http_fail_redirect=True,
)


class Sleeps:
    """An injected sleeper: records the delays, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(round(seconds, 6))


def detector(url: str, **kw: object) -> CaptivePortalDetector:
    settings = kw.pop("settings", SPEC)
    assert isinstance(settings, CaptivePortalDetect)
    kw.setdefault("sleep", Sleeps())
    return CaptivePortalDetector(settings, url=url, **kw)  # type: ignore[arg-type]


def state_of(d: CaptivePortalDetector) -> CpdState:
    """The state, read through a call (so a type checker does not pin it between awaits)."""
    return d.state


# -- every outcome --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expect", "fail_redirect", "result", "reason"),
    [
        (Answer(204), 204, True, CpdResult.OK, "204 as expected"),
        (
            Answer(200, body=b"<html>portal</html>"),
            204,
            True,
            CpdResult.NO_INTERNET,
            "200 where 204 was expected",
        ),
        (Answer(200), None, True, CpdResult.OK, "200 (2xx)"),
        (Answer(204), None, True, CpdResult.OK, "204 (2xx)"),
        (
            Answer(302, {"Location": "http://portal.test/login"}),
            204,
            True,
            CpdResult.CAPTIVE,
            "302 redirect to http://portal.test/login",
        ),
        (Answer(301, {"Location": "/portal"}), 204, True, CpdResult.CAPTIVE, "301 redirect"),
        (Answer(303, {"Location": "/portal"}), 204, True, CpdResult.CAPTIVE, "303 redirect"),
        (Answer(307, {"Location": "/portal"}), 204, True, CpdResult.CAPTIVE, "307 redirect"),
        (Answer(308, {"Location": "/portal"}), 204, True, CpdResult.CAPTIVE, "308 redirect"),
        (Answer(302), 204, True, CpdResult.NO_INTERNET, "302 redirect without Location"),
        (
            Answer(302, {"Location": "/portal"}),
            204,
            False,
            CpdResult.NO_INTERNET,
            "302 where 204 was expected",
        ),
        (Answer(500), 204, True, CpdResult.NO_INTERNET, "500 where 204 was expected"),
    ],
)
async def test_http_answers_map_to_results(
    portal: Portal,
    answer: Answer,
    expect: int | None,
    fail_redirect: bool,
    result: CpdResult,
    reason: str,
) -> None:
    url = portal.script("/generate_204", answer)
    portal.script("/portal", Answer(204))
    settings = CaptivePortalDetect(
        endpoint="x", http_expect=expect, http_fail_redirect=fail_redirect
    )
    d = detector(url, settings=settings)
    report = await d.check()
    assert report.result is result
    assert reason in report.probes[-1].reason
    assert report.probes[-1].status == answer.status
    assert d.state is CpdState.of(result)
    assert portal.hits == [("GET", "/generate_204")]  # redirects are never followed


async def test_a_server_that_never_answers_times_out(portal: Portal) -> None:
    d = detector(portal.script("/generate_204", "hang"), timeout=0.2)
    report = await d.check()
    probe = report.probes[0]
    assert report.result is CpdResult.NO_INTERNET
    assert probe.reason == "timeout: no answer within 0.2 s"
    assert probe.retryable
    assert 0.15 < probe.elapsed < 2.0


async def test_closed_port_is_no_internet() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    report = await detector(f"http://127.0.0.1:{port}/generate_204").check()
    assert report.result is CpdResult.NO_INTERNET
    assert report.probes[0].reason.startswith("connect: ")


async def test_unresolvable_name_is_no_internet() -> None:
    report = await detector("http://nonexistent.invalid/generate_204", timeout=2.0).check()
    assert report.result is CpdResult.NO_INTERNET
    assert report.probes[0].reason.startswith(("dns: ", "connect: "))


async def test_connection_dropped_before_answer_is_no_internet(portal: Portal) -> None:
    report = await detector(portal.script("/generate_204", "drop")).check()
    assert report.result is CpdResult.NO_INTERNET
    assert report.probes[0].retryable


async def test_method_and_path_come_from_the_policy(portal: Portal) -> None:
    portal.script("/hotspot-detect.html", Answer(200))
    policy = parse_policy(
        {
            "s": [
                {
                    "captive_portal_detect": {
                        "endpoint": "127.0.0.1",
                        "port": portal.port,
                        "http_url": "hotspot-detect.html",
                        "http_method": "HEAD",
                        "timeout_ms": 1500,
                    }
                }
            ]
        }
    )
    d = CaptivePortalDetector.from_policy(policy)
    assert d.timeout == 1.5
    assert d.url == f"http://127.0.0.1:{portal.port}/hotspot-detect.html"
    assert (await d.check()).result is CpdResult.OK
    assert portal.hits == [("HEAD", "/hotspot-detect.html")]


# -- retries ---------------------------------------------------------------------------


async def test_failures_retry_along_the_backoff_table(portal: Portal) -> None:
    sleeps = Sleeps()
    retry = RetryPolicy("r", (1000, 2000), conceal=3, jitter_pc=20)
    d = detector(
        portal.script("/generate_204", "drop"), retry=retry, sleep=sleeps, rand=lambda: 0.5
    )
    report = await d.check()
    assert report.result is CpdResult.NO_INTERNET
    assert report.attempts == 4
    assert portal.count("/generate_204") == 4
    assert sleeps.delays == [1.1, 2.2, 2.2]  # the last entry repeats; +10 % of jitter


async def test_a_retry_can_succeed(portal: Portal) -> None:
    sleeps = Sleeps()
    retry = RetryPolicy("r", (500,), conceal=5)
    d = detector(portal.script("/generate_204", "drop", Answer(204)), retry=retry, sleep=sleeps)
    report = await d.check()
    assert report.result is CpdResult.OK
    assert [p.result for p in report.probes] == [CpdResult.NO_INTERNET, CpdResult.OK]
    assert sleeps.delays == [0.5]


async def test_an_answer_is_believed_without_retrying(portal: Portal) -> None:
    sleeps = Sleeps()
    d = detector(
        portal.script("/generate_204", Answer(200)),
        retry=RetryPolicy("r", (10,), conceal=4),
        sleep=sleeps,
    )
    assert (await d.check()).result is CpdResult.NO_INTERNET
    assert portal.count("/generate_204") == 1
    assert sleeps.delays == []


async def test_timeouts_are_retried_too(portal: Portal) -> None:
    sleeps = Sleeps()
    d = detector(
        portal.script("/generate_204", "hang", Answer(302, {"Location": "http://p/"})),
        retry=RetryPolicy("r", (250,), conceal=1),
        sleep=sleeps,
        # real time: the hanging probe waits it out, and the answered one must beat it
        # on a loaded machine too (0.1 s failed under a load average of 10)
        timeout=0.5,
    )
    report = await d.check()
    assert report.result is CpdResult.CAPTIVE
    assert [p.reason.split(":")[0] for p in report.probes] == ["timeout", "302 redirect to http"]
    assert sleeps.delays == [0.25]


# -- one at a time, state, publication ------------------------------------------------------


async def test_one_check_at_a_time_and_unknown_while_running(portal: Portal) -> None:
    d = detector(portal.script("/generate_204", "gate"))
    assert d.state is CpdState.UNKNOWN
    assert d.trigger() is True
    assert d.trigger("again") is False
    joined = asyncio.ensure_future(d.check("joins"))
    await asyncio.wait_for(portal.hit.wait(), 5)
    assert d.running and d.state is CpdState.UNKNOWN
    portal.gate.set()
    report = await joined
    assert report.result is CpdResult.OK and report.trigger == "call"
    assert state_of(d) is CpdState.OK
    assert (d.checks, d.coalesced) == (1, 2)
    assert portal.count("/generate_204") == 1


async def test_state_goes_unknown_when_a_new_check_starts(portal: Portal) -> None:
    d = detector(portal.script("/generate_204", Answer(302, {"Location": "/p"}), "gate"))
    assert (await d.check()).result is CpdResult.CAPTIVE
    assert d.state is CpdState.CAPTIVE
    d.trigger()
    assert state_of(d) is CpdState.UNKNOWN
    portal.gate.set()
    assert (await d.check()).result is CpdResult.OK
    assert state_of(d) is CpdState.OK


class Collector:
    def __init__(self, bus: Bus, cls: int = Class.NETWORK) -> None:
        self.messages: list[bytes] = []
        self.arrived = asyncio.Event()
        bus.register(cls, self._got, name="collector")

    def _got(self, cls: int, ts: int, payload: bytes) -> None:
        self.messages.append(payload)
        self.arrived.set()

    def results(self) -> list[bytes]:
        return [m for m in self.messages if b'"cpd"' in m]

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0) -> None:
        async def loop() -> None:
            while not pred():
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(loop(), timeout)


async def test_triggers_through_a_real_bus(portal: Portal) -> None:
    url = portal.script(
        "/generate_204", Answer(204), Answer(302, {"Location": "http://p/"}), Answer(200)
    )
    async with Bus() as bus:
        seen = Collector(bus)
        d = detector(url, bus=bus)
        # A message that is not a trigger does nothing.
        bus.send_json(Class.NETWORK, {"rt": "add"})
        await bus.drain()
        assert d.checks == 0

        bus.send_json(Class.NETWORK, {"trigger": "cpdcheck", "src": "test"})
        await seen.wait_for(lambda: len(seen.results()) == 1)
        # lws's own gw-change trigger has a space after the colon: still a trigger.
        bus.send(Class.NETWORK, b'{"trigger": "cpdcheck", "src":"gw-change"}')
        await seen.wait_for(lambda: len(seen.results()) == 2)
        bus.send_json(Class.NETWORK, {"type": "ipacq", "iface": "wlan0"})
        await seen.wait_for(lambda: len(seen.results()) == 3)
        await d.aclose()
    assert seen.results() == [
        b'{"type":"cpd","result":"OK"}',
        b'{"type":"cpd","result":"Captive"}',
        b'{"type":"cpd","result":"No internet"}',
    ]
    assert d.state is CpdState.NO_INTERNET
    assert d.last is not None and d.last.trigger == "ipacq"
    assert d.announcer.sent == 3


class Time:
    """An injected clock and sleeper: a sleep ends when the test moves the clock past it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.asleep = asyncio.Event()
        self._moved = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.asleep.set()
        until = self.now + seconds
        while self.now < until:
            self._moved.clear()
            await self._moved.wait()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.asleep.clear()
        self._moved.set()


async def test_triggers_while_running_owe_one_check_after_it(
    portal: Portal, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway change mid-check is not lost: one check follows, after min_interval."""
    url = portal.script("/generate_204", "gate")
    t = Time()
    caplog.set_level(logging.INFO, logger="smdbus.net.cpd")
    async with Bus() as bus:
        seen = Collector(bus)
        d = detector(url, bus=bus, clock=t, sleep=t.sleep, min_interval=2.0)
        for _ in range(3):
            bus.send_json(Class.NETWORK, {"trigger": "cpdcheck"})
        await bus.drain()
        assert (d.checks, d.deferred, d.coalesced) == (1, 1, 1) and d.owed
        t.advance(0.5)
        portal.gate.set()
        await seen.wait_for(lambda: len(seen.results()) == 1)
        await asyncio.wait_for(t.asleep.wait(), 5)
        assert t.sleeps == [1.5] and d.checks == 1  # 2 s after the first began
        t.advance(1.5)
        await seen.wait_for(lambda: len(seen.results()) == 2)
        await d.aclose()
    assert d.checks == 2 and portal.count("/generate_204") == 2
    assert d.last is not None and d.last.trigger == "cpdcheck, owed; 1 later triggers joined it"
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cpd: cpdcheck")]
    assert said == ["cpd: cpdcheck while check 1 runs: another check follows it"]


async def test_a_flood_of_bus_triggers_costs_one_probe_per_min_interval(
    portal: Portal, caplog: pytest.LogCaptureFixture
) -> None:
    """3 000 cpdcheck triggers right after a check: one more probe, once the interval is over,
    every trigger counted, one log line for them all."""
    url = portal.script("/generate_204", Answer(204))
    t = Time()
    caplog.set_level(logging.INFO, logger="smdbus.net.cpd")
    async with Bus() as bus:
        seen = Collector(bus)
        d = detector(url, bus=bus, clock=t, sleep=t.sleep, min_interval=2.0)
        bus.send_json(Class.NETWORK, {"trigger": "cpdcheck", "src": "flood"})
        await seen.wait_for(lambda: len(seen.results()) == 1)
        t.advance(0.25)
        for _ in range(150):
            for _ in range(20):  # the bus queue holds 40
                bus.send_json(Class.NETWORK, {"trigger": "cpdcheck", "src": "flood"})
            await bus.drain()
        await asyncio.wait_for(t.asleep.wait(), 5)
        assert t.sleeps == [1.75]
        assert (d.checks, d.deferred, d.coalesced) == (1, 1, 2999)
        assert portal.count("/generate_204") == 1
        t.advance(1.75)
        await seen.wait_for(lambda: len(seen.results()) == 2)
        await d.aclose()
    assert portal.count("/generate_204") == 2 and not d.owed
    assert d.last is not None and d.last.trigger.endswith("owed; 2999 later triggers joined it")
    waits = [r.getMessage() for r in caplog.records if "checking in" in r.getMessage()]
    assert waits == [
        "cpd: cpdcheck:flood 0.25 s after check 1 began: checking in 1.75 s (min_interval 2 s)"
    ]


async def test_a_call_serves_an_owed_check(portal: Portal) -> None:
    """The state machine's trigger starts at once (calls are not rate-limited) and is the
    check the bus was owed: no second probe."""
    url = portal.script("/generate_204", Answer(204))
    t = Time()
    async with Bus() as bus:
        seen = Collector(bus)
        d = detector(url, bus=bus, clock=t, sleep=t.sleep, min_interval=2.0)
        assert (await d.check()).result is CpdResult.OK
        bus.send_json(Class.NETWORK, {"type": "ipacq"})
        await asyncio.wait_for(t.asleep.wait(), 5)
        assert d.owed
        assert d.trigger("state") is True and not d.owed
        await seen.wait_for(lambda: len(seen.results()) == 2)
        t.advance(10)
        await bus.drain()
        await d.aclose()
    assert d.checks == 2 and portal.count("/generate_204") == 2


def test_trigger_reasons() -> None:
    assert trigger_reason(b'{"trigger":"cpdcheck","src":"gw-change"}') == "cpdcheck:gw-change"
    assert trigger_reason(b'{"trigger":"cpdcheck"}') == "cpdcheck"
    assert trigger_reason(b'{"type":"ipacq"}') == "ipacq"
    assert trigger_reason(b'{"rt":"del"}') is None
    assert trigger_reason(b'{"type":"cpd","result":"OK"}') is None
    assert trigger_reason(b'{"trigger":"cpdcheck"}\n') == "cpdcheck"  # C appends newlines
    assert trigger_reason(b'{"trigger": "cpdcheck", oops') == "cpdcheck"
    assert trigger_reason(b"\xff\xfe") is None
    # a peer's src reaches the log escaped and cut, unless it is a short plain token
    forged = b'{"trigger":"cpdcheck","src":"x\\n2026-11-27 ERROR forged\\u001b[31m"}'
    assert trigger_reason(forged) == "cpdcheck:'x\\n2026-11-27 ERROR forged\\x1b[31m'"
    assert trigger_reason(b'{"trigger":"cpdcheck","src":"' + b"y" * 99 + b'"}') == (
        f"cpdcheck:'{'y' * 32}'"
    )


def test_classify_is_pure() -> None:
    assert classify(SPEC, 204, None).result is CpdResult.OK
    assert classify(SPEC, 302, "").result is CpdResult.NO_INTERNET  # empty Location
    assert classify(SPEC, 302, "http://x/").retryable is False


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="timeout must be > 0 s, got 0"):
        CaptivePortalDetector(SPEC, timeout=0)
    with pytest.raises(ValueError, match="min_interval must be >= 0 s and finite, got inf"):
        CaptivePortalDetector(SPEC, min_interval=float("inf"))
    with pytest.raises(ValueError, match="CPD url must be http:// or https://"):
        CaptivePortalDetector(SPEC, url="ftp://x/")


async def test_aclose_cancels_a_running_check_without_publishing(portal: Portal) -> None:
    async with Bus() as bus:
        seen = Collector(bus)
        d = detector(portal.script("/generate_204", "hang"), bus=bus)
        d.trigger()
        await asyncio.sleep(0)
        await d.aclose()
        await bus.drain()
    assert seen.results() == []
    assert d.state is CpdState.UNKNOWN


async def test_a_head_past_the_bound_is_not_read_to_its_end(portal: Portal) -> None:
    from smdbus.net._cpd import MAX_HEAD

    huge = Answer(204, {"X-Filler": "a" * (MAX_HEAD * 4)})
    report = await detector(portal.script("/generate_204", huge)).check()
    assert report.result is CpdResult.NO_INTERNET
    assert report.probes[0].reason.startswith("protocol: ")
    assert report.probes[0].retryable


async def test_the_query_and_host_go_out_as_given(portal: Portal) -> None:
    portal.script("/generate_204?x=1", Answer(204))
    url = f"http://127.0.0.1:{portal.port}/generate_204?x=1"
    assert (await detector(url).check()).result is CpdResult.OK
    assert portal.hits == [("GET", "/generate_204?x=1")]


# -- https: TLS over memory BIOs, asyncio imported without ssl ---------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (openssl), as (cert, key) paths."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"),
            *("ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def _tls_portal(cert: str, key: str, status: int) -> asyncio.Server:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)


async def test_https_probes_check_the_certificate(certificate: tuple[str, str]) -> None:
    import ssl

    cert, key = certificate
    server = await _tls_portal(cert, key, 204)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/generate_204"
    try:
        trusting = ssl.create_default_context(cafile=cert)
        assert (await detector(url, tls_context=trusting).check()).result is CpdResult.OK
        # The system's trust store does not know this certificate: a failed connection.
        report = await detector(url).check()
        assert report.result is CpdResult.NO_INTERNET
        assert report.probes[0].reason.startswith("connect: TLS with 127.0.0.1: ")
        assert "CERTIFICATE_VERIFY_FAILED" in report.probes[0].reason
        assert report.probes[0].retryable
    finally:
        server.close()
        await server.wait_closed()


async def test_https_in_a_process_whose_asyncio_has_no_ssl(certificate: tuple[str, str]) -> None:
    """What the daemon does: asyncio imported without ssl, then an https probe (ssl loads then)."""
    import subprocess
    import sys

    cert, key = certificate
    server = await _tls_portal(cert, key, 204)
    port = server.sockets[0].getsockname()[1]
    code = (
        "import sys\n"
        "from smdbus._nossl import import_asyncio_without_ssl\n"
        "assert import_asyncio_without_ssl()\n"
        "import asyncio, smdbus.daemon._app, smdbus.proxy, smdbus.net._routes\n"
        "print('ssl before the probe:', 'ssl' in sys.modules)\n"
        "import ssl\n"
        "from smdbus.net._cpd import CaptivePortalDetector\n"
        "from smdbus.net._policy import CaptivePortalDetect\n"
        "d = CaptivePortalDetector(CaptivePortalDetect(endpoint='x', http_expect=204),\n"
        f"    url='https://127.0.0.1:{port}/', tls_context=ssl.create_default_context("
        f"cafile={cert!r}))\n"
        "print(asyncio.run(d.check()).result.value)\n"
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
    finally:
        server.close()
        await server.wait_closed()
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["ssl before the probe: False", "OK"]
