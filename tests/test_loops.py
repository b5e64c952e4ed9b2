"""The bus and the polled client driven by loops that are not asyncio (docs/loops.md).

The host loops are the examples of docs/loops.md themselves, taken from the file and
run here, so the documented code is the tested code. Time moves only through injected
clocks: a host's timeout is honoured by advancing the clock by it, never by sleeping.
Waits for other threads and processes are waits for a sentinel (a readable descriptor,
a message), bounded.
"""

from __future__ import annotations

import asyncio
import logging
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smdbus import Bus, Class
from smdbus.classes import user_class
from smdbus.client import BufferFull, ClientClosed, ClientState, connect_threaded
from smdbus.hostloop import READ, PolledClient, Wakeup
from smdbus.wire import create_result_frame, rx_payload_frame
from test_client_proxy import ProxyProcess, proxy, unique_address

__all__ = ["proxy"]  # the fixture: a proxy in a child process, as the client tests have it

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "loops.md"
U0 = int(user_class(0))

try:
    from gi.repository import GLib

    GLIB_SKIP = ""
except ImportError as exc:  # pragma: no cover - depends on the machine
    GLib = None
    GLIB_SKIP = f"PyGObject is not installed (pip install 'smdbus[glib]'): {exc}"


def example(name: str) -> str:
    """The code block of docs/loops.md marked ``<!-- example: name -->``."""
    m = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert m, f"no example {name!r} in {DOC}"
    return m.group(1)


def load(name: str) -> dict[str, Any]:
    ns: dict[str, Any] = {"__name__": f"loops_example_{name}"}
    exec(compile(example(name), f"{DOC}:{name}", "exec"), ns)
    return ns


class FakeClock:
    """Monotonic microseconds that move only when told."""

    def __init__(self) -> None:
        self.us = 1_000_000_000

    def __call__(self) -> int:
        return self.us

    def seconds(self) -> float:
        return self.us / 1_000_000

    def advance(self, seconds: float) -> None:
        self.us += round(seconds * 1_000_000)


def bounded(predicate: Callable[[], bool], seconds: float = 30.0) -> Callable[[], bool]:
    """``predicate`` for a host's ``run(until=...)`` that fails the test after ``seconds``
    of wall-clock time instead of hanging (a bound on a wait for a sentinel)."""
    deadline = time.monotonic() + seconds

    def until() -> bool:
        if predicate():
            return True
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {seconds:g} s")
        return False

    return until


def real_select(host: Any) -> Callable[..., Any]:
    """The host's select with a bounded block, so that ``bounded`` gets its turn."""
    return lambda timeout: host.sel.select(1.0 if timeout is None else min(timeout, 1.0))


def fake_select(
    host: Any,
    clock: FakeClock,
    starve: set[int] | None = None,
    advance_if: Callable[[], bool] = lambda: True,
) -> Callable[..., Any]:
    """A select for SelectorsHost: real readiness; a timeout is honoured by moving ``clock``.

    ``starve``: descriptors reported never ready (a host busy with other sources).
    While ``advance_if()`` is false (bytes from another process are on their way), or
    with no timeout, it waits for real readiness instead, a second at a time.
    """

    def select_(timeout: float | None) -> list[Any]:
        ready = [r for r in host.sel.select(0) if not starve or r[0].fd not in starve]
        if ready or timeout == 0:
            return ready
        if timeout is None or not advance_if():
            return list(host.sel.select(1.0))
        clock.advance(timeout)
        return []

    return select_


def send_many(client: PolledClient, n: int) -> None:
    for i in range(n):
        client.send(U0, b"t%d" % i)


# -- the wake-up descriptor --------------------------------------------------------


@pytest.mark.parametrize("pipe", [False, True])
def test_wakeup_is_readable_after_a_set_from_another_thread(pipe: bool) -> None:
    w = Wakeup(pipe=pipe)
    assert w.kind == ("pipe" if pipe else "eventfd")
    try:
        assert select.select([w], [], [], 0)[0] == []
        t = threading.Thread(target=w.set)
        t.start()
        assert select.select([w], [], [], 10)[0] == [w]
        t.join()
        w.clear()
        assert select.select([w], [], [], 0)[0] == []
    finally:
        w.close()


# -- one scenario, every loop ------------------------------------------------------


def scenario(bus: Bus) -> list[tuple[str, int, bytes]]:
    """Mixed classes, a callback that sends, one that registers mid-round, one that leaves."""
    log: list[tuple[str, int, bytes]] = []

    def rec(name: str) -> Callable[[int, int, bytes], None]:
        return lambda cls, ts, payload: log.append((name, cls, payload))

    def a(cls: int, ts: int, payload: bytes) -> None:
        log.append(("a", cls, payload))
        if payload == b"i1":
            bus.send(Class.NETWORK, b"from-a")
            bus.register(Class.NETWORK | U0, rec("late"), name="late")
        if payload == b"i2":
            bus.unregister(pb)

    bus.register(Class.INTERACTION, a, name="a")
    pb = bus.register(Class.INTERACTION | Class.NETWORK, rec("b"), name="b")
    bus.register(U0, rec("c"), name="c")
    for cls, payload in [
        (Class.INTERACTION, b"i1"),
        (U0, b"u1"),
        (Class.INTERACTION, b"i2"),
        (Class.NETWORK, b"n1"),
        (Class.INTERACTION, b"i3"),
    ]:
        bus.send(cls, payload)
    return log


def run_asyncio() -> list[tuple[str, int, bytes]]:
    async def main() -> list[tuple[str, int, bytes]]:
        bus = Bus()
        async with bus:
            log = scenario(bus)
            await bus.drain()
        return log

    return asyncio.run(main())


def run_selectors() -> list[tuple[str, int, bytes]]:
    host = load("selectors")["SelectorsHost"]()
    bus = Bus()
    log = scenario(bus)
    host.add(bus)
    host.run(until=bounded(lambda: bus.queue_length == 0))
    bus.unbind()
    return log


def run_glib() -> list[tuple[str, int, bytes]]:
    host = load("glib")["GLibHost"]()
    bus = Bus()
    log = scenario(bus)
    host.add(bus)
    ctx = GLib.MainContext.default()
    while bus.queue_length:
        ctx.iteration(True)
    host.remove(bus)
    bus.unbind()
    return log


def test_same_delivery_log_on_every_loop() -> None:
    expected = run_asyncio()
    assert ("late", int(Class.NETWORK), b"from-a") in expected  # the scenario does its job
    assert [e for e in expected if e[0] == "b" and e[2] == b"i3"] == []
    assert run_selectors() == expected
    if GLIB_SKIP:
        pytest.skip(GLIB_SKIP)
    assert run_glib() == expected


def test_nothing_is_delivered_inside_send_nor_before_service() -> None:
    bus = Bus()
    got: list[bytes] = []
    bus.register(Class.METRICS, lambda cls, ts, p: got.append(p))
    fd = bus.fileno()
    bus.send(Class.METRICS, b"x")
    assert got == [] and select.select([fd], [], [], 0)[0] == [fd]
    assert bus.service() is None
    assert got == [b"x"] and select.select([fd], [], [], 0)[0] == []
    bus.unbind()


def test_when_room_is_called_from_service() -> None:
    bus = Bus()
    fd = bus.fileno()
    called: list[int] = []
    bus.when_room(lambda: called.append(1))
    assert called == [] and select.select([fd], [], [], 0)[0] == [fd]
    assert bus.service() is None
    assert called == [1]
    bus.unbind()


def test_asyncio_only_calls_say_why_on_a_host_bound_bus() -> None:
    bus = Bus()
    bus.fileno()
    with pytest.raises(RuntimeError, match="host loop"):
        bus.drain_sync()
    with pytest.raises(RuntimeError, match="host loop"):
        bus.bind(asyncio.new_event_loop())
    bus.unbind()


# -- sends from other threads --------------------------------------------------------


def test_a_send_from_another_thread_wakes_a_selectors_loop() -> None:
    host = load("selectors")["SelectorsHost"]()
    host.select = real_select(host)
    bus = Bus(queue_depth=100)
    got: list[bytes] = []
    bus.register(Class.METRICS, lambda cls, ts, p: got.append(p))
    host.add(bus)
    t = threading.Thread(target=lambda: [bus.send(Class.METRICS, b"%d" % i) for i in range(100)])
    t.start()
    host.run(until=bounded(lambda: len(got) == 100))  # blocks in poll() with no timeout until woken
    t.join()
    assert got == [b"%d" % i for i in range(100)]
    bus.unbind()


@pytest.mark.skipif(bool(GLIB_SKIP), reason=GLIB_SKIP)
def test_a_send_from_another_thread_wakes_a_glib_loop() -> None:
    host = load("glib")["GLibHost"]()
    bus = Bus(queue_depth=100)
    got: list[bytes] = []
    loop = GLib.MainLoop()

    def cb(cls: int, ts: int, p: bytes) -> None:
        got.append(p)
        if len(got) == 100:
            loop.quit()

    bus.register(Class.METRICS, cb)
    host.add(bus)
    bound = GLib.timeout_add_seconds(30, loop.quit)  # a bound, should the test fail
    t = threading.Thread(target=lambda: [bus.send(Class.METRICS, b"%d" % i) for i in range(100)])
    t.start()
    loop.run()
    t.join()
    GLib.source_remove(bound)
    host.remove(bus)
    bus.unbind()
    assert got == [b"%d" % i for i in range(100)]


def test_unregister_from_another_thread_is_recounted_by_service() -> None:
    bus = Bus()
    p = bus.register(Class.METRICS, lambda cls, ts, payload: None)
    bus.fileno()
    bus.send(Class.METRICS, b"x")
    t = threading.Thread(target=bus.unregister, args=(p,))
    t.start()
    t.join()
    assert bus.service() is None
    s = bus.stats()[int(Class.METRICS)]
    assert (s.sent, s.delivered, s.discarded, s.queued) == (1, 0, 1, 0)
    bus.unbind()


# -- TTL through the returned timeout ------------------------------------------------


def test_ttl_expiry_happens_at_the_returned_timeout() -> None:
    clock = FakeClock()
    bus = Bus(ttl=2.0, clock=clock)
    got: list[bytes] = []

    def cb(cls: int, ts: int, p: bytes) -> None:
        got.append(p)
        if p == b"first":
            bus.send(Class.METRICS, b"second")  # queued at the same instant

    bus.register(Class.METRICS, cb)
    host = load("selectors")["SelectorsHost"](clock=clock.seconds)
    host.select = fake_select(host, clock, starve={bus.fileno()})  # the host never sees the fd
    bus.send(Class.METRICS, b"first")
    timeout = bus.service(rounds=1)  # a budget: "second" is left queued
    assert got == [b"first"] and timeout == pytest.approx(2.000001)
    assert timeout is not None
    t0 = clock.us
    host.deadlines[bus] = clock.seconds() + timeout
    host.run(until=bounded(lambda: bus.queue_length == 0))
    assert clock.us - t0 == 2_000_001  # expired at the deadline, not before, not later
    s = bus.stats()[int(Class.METRICS)]
    assert (s.sent, s.delivered, s.expired, s.queued) == (2, 1, 1, 0)
    assert got == [b"first"]
    bus.unbind()


def test_a_message_older_than_the_ttl_expires_instead_of_being_delivered() -> None:
    clock = FakeClock()
    bus = Bus(ttl=2.0, clock=clock)
    got: list[bytes] = []
    bus.register(Class.METRICS, lambda cls, ts, p: got.append(p))
    bus.fileno()
    bus.send(Class.METRICS, b"old")
    clock.advance(1.0)
    bus.send(Class.METRICS, b"new")
    assert bus.next_deadline() == pytest.approx(1.000001)
    clock.advance(1.000001)
    assert bus.service() is None
    assert got == [b"new"] and bus.stats()[int(Class.METRICS)].expired == 1
    bus.unbind()


# -- the polled client against a real proxy -------------------------------------------


def test_polled_client_joins_the_proxy_from_a_selectors_loop(proxy: ProxyProcess) -> None:
    host = load("selectors")["SelectorsHost"]()
    host.select = real_select(host)
    got: list[tuple[int, bytes]] = []
    client = PolledClient(proxy.address, U0, on_message=lambda c, ts, p: got.append((c, p)))
    client.start()
    host.add(client)
    host.run(until=bounded(lambda: client.state is ClientState.READY))
    peer = connect_threaded(proxy.address, U0)
    try:
        peer.send(U0, b"from-peer")
        host.run(until=bounded(lambda: (U0, b"from-peer") in got))
        # a send from another thread wakes the loop, which writes it
        t = threading.Thread(target=send_many, args=(client, 50))
        t.start()
        host.run(until=bounded(lambda: len(got) == 51))  # the proxy sends them back to us too
        t.join()
        assert [p for _, p in got[1:]] == [b"t%d" % i for i in range(50)]
        seen = [peer.receive(timeout=10).payload for _ in range(51)]
        assert seen == [b"from-peer", *[b"t%d" % i for i in range(50)]]
        assert client.sent == 50 and client.received == 51 and client.refused == 0
    finally:
        peer.close()
        client.close()


def test_polled_client_reconnects_at_the_returned_timeout() -> None:
    address = unique_address()
    clock = FakeClock()
    client = PolledClient(address, U0, clock=clock)
    client.start()  # nobody listens yet
    assert client.state is ClientState.WAITING
    assert client.service() == pytest.approx(1.0)
    client.send(U0, b"kept")  # buffered through the outage
    proxy = ProxyProcess(address)
    proxy.start()
    try:
        host = load("selectors")["SelectorsHost"](clock=clock.seconds)
        waiting = lambda: client.state is ClientState.WAITING  # noqa: E731
        host.select = fake_select(host, clock, advance_if=waiting)
        t0 = clock.us
        host.add(client)
        peer = connect_threaded(address, U0)
        try:
            host.run(until=bounded(lambda: client.sent == 1))
            assert clock.us - t0 == 1_000_000  # the attempt came at the returned timeout
            assert peer.receive(timeout=10).payload == b"kept"
        finally:
            peer.close()
    finally:
        client.close()
        proxy.stop()


class FakeProxy:
    """A listening socket the test answers by hand (real sockets, scripted bytes)."""

    def __init__(self) -> None:
        self.address = unique_address()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind("\0" + self.address[1:])
        self.listener.listen(4)
        self.conn: socket.socket | None = None

    def accept(self) -> socket.socket:
        self.listener.settimeout(10)
        self.conn = self.listener.accept()[0]
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


def test_polled_client_gives_up_an_attempt_at_the_create_timeout() -> None:
    """A listener that never answers STREAMTYPE: the attempt ends after 3 s (clock time)."""
    fake = FakeProxy()
    clock = FakeClock()
    client = PolledClient(fake.address, U0, clock=clock)
    try:
        client.start()
        assert client.state.value == "creating"
        assert client.service() == pytest.approx(3.0)
        clock.advance(3.0)
        assert client.service() == pytest.approx(1.0)
        assert client.state is ClientState.WAITING
        assert client.last_error == "no CREATE_RESULT within 3 s"
    finally:
        client.close()
        fake.close()


def test_polled_client_hangs_up_on_a_bad_frame_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeProxy()
    clock = FakeClock()
    client = PolledClient(fake.address, U0, clock=clock)
    try:
        client.start()
        conn = fake.accept()
        conn.sendall(create_result_frame() + b"\x99\x00\x01\x1b")  # an unknown frame type
        until = bounded(lambda: client.state is ClientState.WAITING)
        while not until():
            select.select([fd for fd, _ in client.watches()], [], [], 1.0)
            client.service()
        assert client.connects == 1 and client.disconnects == 1
        assert client.last_error is not None and "bad frame" in client.last_error
        assert "\x1b" not in caplog.text  # what the peer sent is escaped in the log
        assert client.service() == pytest.approx(1.0)  # the next attempt's timeout
    finally:
        client.close()
        fake.close()


def test_a_callback_that_closes_the_client_stops_the_stream() -> None:
    fake = FakeProxy()
    got: list[bytes] = []
    client = PolledClient(fake.address, U0)

    def on_message(cls: int, ts: int, payload: bytes) -> None:
        got.append(payload)
        client.close()

    client.on_message = on_message
    try:
        client.start()
        conn = fake.accept()
        frames = b"".join(rx_payload_frame(U0, 1, b"m%d" % i) for i in range(3))
        conn.sendall(create_result_frame() + frames)
        until = bounded(lambda: client.closed)
        while not until():
            select.select([fd for fd, _ in client.watches()], [], [], 1.0)
            client.service()
        assert got == [b"m0"]
        assert client.watches() == [] and client.service() is None
        with pytest.raises(ClientClosed):
            client.send(U0, b"late")
    finally:
        client.close()
        fake.close()


def test_the_outage_buffer_is_bounded_and_what_is_left_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = PolledClient(unique_address(), U0, max_buffered=2)
    client.start()  # nobody listens
    client.send(U0, b"a")
    client.send(U0, b"b")
    with pytest.raises(BufferFull, match="unreachable"):
        client.send(U0, b"c")
    assert client.refused == 1 and client.buffered == 2
    with caplog.at_level(logging.WARNING, logger="smdbus.client.polled"):
        client.close()
    assert "2 unsent messages" in caplog.text


@pytest.mark.skipif(bool(GLIB_SKIP), reason=GLIB_SKIP)
def test_bus_and_polled_client_in_a_glib_loop(proxy: ProxyProcess) -> None:
    host = load("glib")["GLibHost"]()
    loop = GLib.MainLoop()
    bus = Bus()
    local: list[bytes] = []

    def on_local(cls: int, ts: int, p: bytes) -> None:
        local.append(p)
        if len(local) == 20:
            loop.quit()

    bus.register(U0, on_local)
    client = PolledClient(proxy.address, U0, on_message=lambda c, ts, p: bus.forward(c, ts, p))
    client.start()
    host.add(bus)
    host.add(client)
    peer = connect_threaded(proxy.address, U0)
    try:
        for i in range(10):
            peer.send(U0, b"p%d" % i)
        t = threading.Thread(target=send_many, args=(client, 10))
        t.start()
        bound = GLib.timeout_add_seconds(30, loop.quit)  # a bound, should the test fail
        loop.run()
        t.join()
        GLib.source_remove(bound)
        assert sorted(local) == sorted(
            [b"p%d" % i for i in range(10)] + [b"t%d" % i for i in range(10)]
        )
    finally:
        host.remove(client)
        host.remove(bus)
        peer.close()
        client.close()
        bus.unbind()


@pytest.mark.skipif(bool(GLIB_SKIP), reason=GLIB_SKIP)
def test_polled_client_reconnects_through_a_glib_timeout() -> None:
    address = unique_address()
    clock = FakeClock()
    armed: list[int] = []

    def timeout_add(ms: int, callback: Callable[..., bool], *args: Any) -> int:
        """GLib.timeout_add on the fake clock while the client waits to reconnect: the time
        passes at once, then it fires. Otherwise (bytes from the proxy are on their way)
        a real timer, which the bytes beat."""
        armed.append(ms)
        if client.state is not ClientState.WAITING:
            return int(GLib.timeout_add(ms, callback, *args))
        clock.advance(ms / 1000)
        return int(GLib.idle_add(callback, *args))

    client = PolledClient(address, U0, clock=clock)
    client.start()  # nobody listens yet
    client.send(U0, b"kept")
    proxy_ = ProxyProcess(address)
    proxy_.start()
    host = load("glib")["GLibHost"](timeout_add=timeout_add)
    peer = connect_threaded(address, U0)
    try:
        t0 = clock.us
        host.add(client)
        assert armed[0] == 1000  # the reconnect delay, as the client returned it
        ctx = GLib.MainContext.default()
        until = bounded(lambda: client.sent == 1)
        while not until():
            ctx.iteration(True)
        assert clock.us - t0 == 1_000_000
        assert peer.receive(timeout=10).payload == b"kept"
    finally:
        host.remove(client)
        peer.close()
        client.close()
        proxy_.stop()


# -- the examples' own programs ------------------------------------------------------


def test_selectors_example_program_runs(proxy: ProxyProcess, tmp_path: Path) -> None:
    script = tmp_path / "selectors_example.py"
    script.write_text(example("selectors"))
    done = subprocess.run(
        [sys.executable, str(script), proxy.address], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'b\'{"hello":"from selectors"}\''


@pytest.mark.skipif(bool(GLIB_SKIP), reason=GLIB_SKIP)
def test_glib_example_program_runs(tmp_path: Path) -> None:
    script = tmp_path / "glib_example.py"
    script.write_text(example("glib"))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'b\'{"hello":"from GLib"}\''


def test_watches_say_read_for_the_bus() -> None:
    bus = Bus()
    assert bus.watches() == [(bus.fileno(), READ)]
    bus.unbind()
