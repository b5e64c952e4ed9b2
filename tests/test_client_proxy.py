"""The client against the real proxy, each in its own process, on real Unix sockets.

The proxy runs as a subprocess (so it can be killed with SIGKILL and started
again); peers are asyncio clients in this process, threaded clients, or
separate Python processes.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from smdbus.bus import Bus
from smdbus.classes import Class, user_class
from smdbus.client import BufferFull, Client, ClientState, Message, connect, connect_threaded
from smdbus.commands._peers import query_peers
from smdbus.scheduler import ManualScheduler

_names = itertools.count()

PROXY_SCRIPT = """
import asyncio, sys
from smdbus.proxy import Proxy, ProxySettings
from smdbus.wire import parse_address
async def main():
    async with Proxy(ProxySettings(address=parse_address(sys.argv[1]))) as proxy:
        await proxy.serve_forever()
asyncio.run(main())
"""


def unique_address() -> str:
    return f"@smdbus-test-proxy-{os.getpid()}-{next(_names)}"


def _kernel(address: str) -> str:
    return "\0" + address[1:]


def _answers(address: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(_kernel(address))
        return True
    except OSError:
        return False
    finally:
        s.close()


class ProxyProcess:
    """``smdbus.proxy`` in a child process on an abstract socket."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PROXY_SCRIPT, self.address])
        deadline = time.monotonic() + 10
        while not _answers(self.address):  # bounded poll for a real process start
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("proxy did not start listening within 10 s")
            time.sleep(0.01)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def proxy() -> Iterator[ProxyProcess]:
    p = ProxyProcess(unique_address())
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with Bus() as b:
        yield b


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Bounded poll for something another process does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def take(client: Client, n: int, timeout: float = 5.0) -> list[Message]:
    return [await asyncio.wait_for(client.receive(), timeout) for _ in range(n)]


# -- basic traffic -----------------------------------------------------------


async def test_send_and_receive_sender_included(proxy: ProxyProcess) -> None:
    a = await connect(proxy.address, Class.NETWORK)
    b = await connect(proxy.address, Class.NETWORK | Class.METRICS)
    c = await connect(proxy.address, Class.INTERACTION)
    a.send_json(Class.NETWORK, {"up": True})
    b.send(Class.METRICS, b"m1")
    got_b = await take(b, 2)
    assert sorted(m.payload for m in got_b) == sorted([b'{"up":true}', b"m1"])
    (echo,) = await take(a, 1)  # the sender gets its own message back
    assert (echo.cls, echo.payload) == (Class.NETWORK, b'{"up":true}')
    now = time.monotonic_ns() // 1000
    assert 0 <= now - echo.timestamp_us < 2_000_000  # real monotonic µs, comparable here
    a.send(Class.INTERACTION, b"sentinel")  # after the others: c would have them first
    (first,) = await take(c, 1)
    assert first.payload == b"sentinel" and c.stats().received == 1
    for x in (a, b, c):
        await x.close()


async def test_many_messages_in_order(proxy: ProxyProcess) -> None:
    pub = await connect(proxy.address, 0)
    sub = await connect(proxy.address, user_class(0))
    await pub.wait_listeners(user_class(0), timeout=5)  # the proxy told pub that sub listens
    n = 20_000
    for i in range(n):
        pub.send(user_class(0), i.to_bytes(4, "big") + bytes(96))
        if i % 256 == 255:
            await pub.drain()
    seqs = [int.from_bytes(m.payload[:4], "big") for m in await take(sub, n, timeout=20)]
    assert seqs == list(range(n))
    assert pub.stats().sent == n
    await pub.close()
    await sub.close()


async def test_threaded_client(proxy: ProxyProcess) -> None:
    def work() -> tuple[list[bytes], str]:
        with connect_threaded(proxy.address, Class.SYSTEM_STATE) as t:
            for i in range(100):
                t.send(Class.SYSTEM_STATE, b"s%d" % i)
            got = [t.receive(timeout=5).payload for _ in range(100)]
            try:
                t.receive(timeout=0.01)
                extra = "got an extra message"
            except TimeoutError as exc:
                extra = str(exc)
            return got, extra

    got, extra = await asyncio.to_thread(work)
    assert got == [b"s%d" % i for i in range(100)]
    assert "no message within" in extra


# -- separate processes ------------------------------------------------------

PEER_SCRIPT = """
import asyncio, json, sys
from smdbus.client import connect
from smdbus.classes import user_class

async def main():
    address, index, peers, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    c = await connect(address, user_class(3))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for i in range(count):
        c.send(user_class(3), json.dumps([index, i]).encode())
    c.send(user_class(3), json.dumps([index, "end"]).encode())  # after all of ours, in order
    seen = {}
    order_ok = True
    ended = set()
    while len(ended) < peers:  # a copy or a straggler from a sender comes before its "end"
        m = await asyncio.wait_for(c.receive(), 20)
        who, seq = json.loads(m.payload)
        if seq == "end":
            ended.add(who)
            continue
        order_ok &= seq == seen.get(who, -1) + 1
        seen[who] = seq
    extra = c.stats().received - peers * (count + 1)
    seen_n = {str(k): v + 1 for k, v in seen.items()}
    print(json.dumps({"seen": seen_n, "order": order_ok, "extra": extra}), flush=True)
    await c.close()

asyncio.run(main())
"""


def test_n_processes_each_receive_everything(proxy: ProxyProcess) -> None:
    """The C multi-process test's shape: 4 processes, 64 messages each, all see 256."""
    peers, count = 4, 64
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PEER_SCRIPT, proxy.address, str(i), str(peers), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for i in range(peers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == b"ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        results: list[dict[str, Any]] = []
        for p in procs:
            out, _ = p.communicate(timeout=30)
            results.append(json.loads(out.splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r in results:
        assert r["seen"] == {str(i): count for i in range(peers)}
        assert r["order"] is True
        assert r["extra"] == 0


# -- bridging ----------------------------------------------------------------


async def test_bridge_both_ways_no_double_delivery(proxy: ProxyProcess, bus: Bus) -> None:
    local: list[tuple[int, int, bytes]] = []
    bus.register(Class.NETWORK, lambda c, t, p: local.append((c, t, p)), name="local")
    bridged = await connect(proxy.address, Class.NETWORK, bus=bus)
    remote = await connect(proxy.address, Class.NETWORK)

    remote.send(Class.NETWORK, b"from-remote")
    (r_echo,) = await take(remote, 1)
    await until(lambda: len(local) == 1)
    # the remote message arrives with the timestamp the proxy gave it
    assert local[0] == (Class.NETWORK, r_echo.timestamp_us, b"from-remote")

    assert bus.send(Class.NETWORK, b"from-local")
    (got,) = await take(remote, 1)
    assert got.payload == b"from-local"
    await until(lambda: bridged.stats().echoes_suppressed == 1)
    remote.send(Class.NETWORK, b"sentinel")  # the proxy sent any second copy before it
    await until(lambda: any(p == b"sentinel" for _, _, p in local))
    assert [p for _, _, p in local] == [b"from-remote", b"from-local", b"sentinel"]  # each once
    assert bridged.bridge_obj is not None
    assert (bridged.bridge_obj.forwarded_in, bridged.bridge_obj.forwarded_out) == (
        2,
        1,
    )  # the sentinel came in too
    await bridged.close()
    await remote.close()


async def test_two_bridged_buses_see_each_message_once(proxy: ProxyProcess) -> None:
    """Two local buses joined through the proxy: no loops, no duplicates, both directions."""
    async with Bus() as bus_a, Bus() as bus_b:
        seen_a: list[bytes] = []
        seen_b: list[bytes] = []
        bus_a.register(user_class(2), lambda c, t, p: seen_a.append(p))
        bus_b.register(user_class(2), lambda c, t, p: seen_b.append(p))
        ca = await connect(proxy.address, user_class(2), bus=bus_a)
        cb = await connect(proxy.address, user_class(2), bus=bus_b)
        for i in range(100):
            while True:
                try:
                    bus_a.send(user_class(2), b"a%d" % i)
                    bus_b.send(user_class(2), b"b%d" % i)
                    break
                except Exception:  # QueueFull: let the loop deliver
                    await asyncio.sleep(0.001)
        expected = sorted([b"a%d" % i for i in range(100)] + [b"b%d" % i for i in range(100)])
        # each side's last message, sent after the rest: a copy would cross before it
        bus_a.send(user_class(2), b"za")
        bus_b.send(user_class(2), b"zb")
        await until(lambda: {b"za", b"zb"} <= {*seen_a} and {b"za", b"zb"} <= {*seen_b}, 10)
        expected = sorted([*expected, b"za", b"zb"])
        assert sorted(seen_a) == expected
        assert sorted(seen_b) == expected
        # order per sender is kept on both sides
        assert [p for p in seen_b if p[:1] == b"a"] == [b"a%d" % i for i in range(100)]
        assert ca.stats().echoes_suppressed == 101 and cb.stats().echoes_suppressed == 101
        await ca.close()
        await cb.close()


async def test_bridge_backpressure_on_small_local_queue(proxy: ProxyProcess) -> None:
    """A local bus much smaller than the burst: the bridge waits for room, nothing is lost."""
    async with Bus(queue_depth=4) as small:
        seen: list[bytes] = []
        small.register(Class.METRICS, lambda c, t, p: seen.append(p))
        await connect(proxy.address, Class.METRICS, bus=small, export_mask=0)
        pub = await connect(proxy.address, 0)
        for i in range(2000):
            pub.send(Class.METRICS, b"%d" % i)
            if i % 200 == 199:
                await pub.drain()
        await until(lambda: len(seen) == 2000, timeout=10)
        assert seen == [b"%d" % i for i in range(2000)]


# -- the proxy dies ------------------------------------------------------------


async def test_kill9_proxy_reconnect_and_outage_buffer(proxy: ProxyProcess) -> None:
    cls = user_class(5)
    sub = await connect(proxy.address, cls, reconnect_delay=0.05)
    pub = await connect(proxy.address, 0, max_buffered=50)  # default 1 s reconnect, as C
    got: list[int] = []

    async def collect() -> None:
        async for m in sub:
            got.append(int(m.payload))

    collector = asyncio.create_task(collect())
    for i in range(20):
        pub.send(cls, b"%d" % i)
    await until(lambda: len(got) == 20)

    proxy.kill9()  # mid-stream: the same streams go on after the restart
    await until(lambda: pub.state is not ClientState.READY and sub.state is not ClientState.READY)
    accepted = 20
    with pytest.raises(BufferFull) as info:
        for i in range(20, 200):
            pub.send(cls, b"%d" % i)
            accepted += 1
    assert accepted == 70  # exactly the outage bound of 50 was taken
    assert "unreachable" in str(info.value)

    proxy.start()  # how long the publisher takes to be back: bench/proxy_recovery.py
    await until(lambda: pub.connected and sub.connected, timeout=5)
    await until(lambda: pub.stats().buffered == 0)  # held until the proxy says USER5 is heard
    for i in range(70, 81):
        pub.send(cls, b"%d" % i)
    await until(lambda: 80 in got)  # the last one sent: a duplicate would come before it
    assert got == list(range(81))  # every accepted message once, in order
    assert pub.stats().disconnects == 1 and pub.stats().connects == 2
    collector.cancel()
    await pub.close()
    await sub.close()


async def test_default_reconnect_delay_is_one_second(proxy: ProxyProcess) -> None:
    timers = ManualScheduler()
    c = await connect(proxy.address, Class.NETWORK, scheduler=timers)
    proxy.kill9()
    await until(lambda: c.state is ClientState.WAITING and timers.pending == 1)
    proxy.start()  # back at once: the client waits its 1 s anyway
    assert timers.advance(0.999) == 0 and c.state is ClientState.WAITING
    assert timers.advance(0.001) == 1  # the reconnect, at 1 s as the C proxy's clients
    await until(lambda: c.connected and c.stats().connects == 2, timeout=5)
    c.send(Class.NETWORK, b"again")
    (m,) = await take(c, 1)
    assert m.payload == b"again"
    await c.close()


def test_injected_settings_validated() -> None:
    with pytest.raises(ValueError, match="mask"):
        Client("@x", 1 << 40)
    with pytest.raises(ValueError, match="reconnect_delay"):
        Client("@x", 1, reconnect_delay=-1)
    with pytest.raises(ValueError, match="abstract"):
        Client("@", 1)


# -- one failure, one reconnect ------------------------------------------------


async def smd_streams(address: str) -> list[dict[str, Any]]:
    """The proxy's ``_lws_smd`` connections, open and closed (``smd peers``)."""
    peers, _ = await query_peers(address)
    return [p for p in peers if p["streamtype"] == "_lws_smd"]


@pytest.mark.parametrize("sends", [1, 2, 50])
async def test_failed_writes_lead_to_one_reconnect_that_stays_up(
    proxy: ProxyProcess, sends: int
) -> None:
    """SIGKILL the proxy, send (each write fails), restart: one join, and it stays READY.

    Every timer of the client runs on a manual scheduler, so "3 s later" is one
    ``advance`` call: a stray create timer would close the connection there.
    """
    cls = user_class(3)
    timers = ManualScheduler()
    c = await connect(proxy.address, cls, scheduler=timers)
    proxy.kill9()
    for i in range(sends):  # the first write meets the dead socket
        c.send(cls, b"%d" % i)
    await until(lambda: c.state is ClientState.WAITING and timers.pending == 1)
    proxy.start()
    timers.advance(1.0)  # the reconnect delay: one attempt
    await c.wait_connected(5)
    got = [m.payload for m in await take(c, sends)]  # the outage buffer, echoed to us
    assert got == [b"%d" % i for i in range(sends)]
    timers.advance(60.0)  # every timer the client could have left falls due now
    c.send(cls, b"still up")
    assert [m.payload for m in await take(c, 1)] == [b"still up"]
    stats = c.stats()
    assert (stats.state, stats.connects, stats.disconnects) == ("ready", 2, 1)
    streams = await smd_streams(proxy.address)
    assert [(p["client_pid"], p["state"]) for p in streams] == [(os.getpid(), "smd")]
    await c.close()


async def test_proxy_that_dies_with_our_writes_unread_is_noticed(proxy: ProxyProcess) -> None:
    """The proxy dies with our last write unread and messages for us in our socket.

    Our socket then holds the messages, then ECONNRESET (the proxy closed with
    our bytes unread), then EOF, and polls with POLLERR. The client's loop is
    busy throughout (this test does not await), as a loop can be. On uvloop the
    reader was called once, read the messages and was dropped (libuv's poll
    takes POLLERR as its end), so the client stayed READY on a dead socket and
    never reconnected; ``test_client_uvloop`` runs this test on uvloop.
    """
    cls = user_class(3)
    timers = ManualScheduler()
    c = await connect(proxy.address, cls, scheduler=timers)
    with connect_threaded(proxy.address, cls) as t:
        n = 5
        for i in range(n):  # to c, whose loop is busy here: they wait in c's socket
            t.send(cls, b"m%d" % i)
        # the sentinel of their delivery: t has its own back (one fan-out, one pass)
        assert [t.receive(timeout=5).payload for _ in range(n)] == [b"m%d" % i for i in range(n)]
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGSTOP)
        c.send(cls, b"never read")  # written at once (nothing pending): the proxy cannot read it
        assert c.stats().sent == 1
        proxy.kill9()
        await until(lambda: c.state is not ClientState.READY)
    assert [m.payload for m in await take(c, n)] == [b"m%d" % i for i in range(n)]
    assert c.stats().last_error == "read failed: [Errno 104] Connection reset by peer"
    assert c.state is ClientState.WAITING and timers.pending == 1  # one reconnect, waiting
    proxy.start()
    timers.advance(1.0)  # the reconnect delay
    await c.wait_connected(5)
    c.send(cls, b"up again")
    assert [m.payload for m in await take(c, 1)] == [b"up again"]
    stats = c.stats()
    assert (stats.state, stats.connects, stats.disconnects) == ("ready", 2, 1)
    await c.close()


# -- who listens -----------------------------------------------------------------


async def test_send_returns_false_when_nobody_listens(proxy: ProxyProcess) -> None:
    cls = user_class(1)
    pub = await connect(proxy.address, 0)
    assert pub.interest is None, "a client learns who listens from its first send on"
    assert pub.send(cls, b"first") is True  # not known yet: sent (the proxy refuses it)
    await until(lambda: pub.interest is not None)
    assert pub.interest == 0 and pub.stats().proxy == "smdbus"
    assert pub.send(cls, b"into the void") is False  # as Bus.send: refused, nothing queued
    assert pub.stats().unheard == 1 and pub.stats().buffered == 0
    sub = await connect(proxy.address, cls)
    await pub.wait_listeners(cls, timeout=5)
    assert pub.send(cls, b"heard") is True
    assert [m.payload for m in await take(sub, 1)] == [b"heard"]
    await sub.close()
    await until(lambda: pub.interest == 0)  # the last listener left
    assert pub.send(cls, b"again") is False
    await pub.close()


async def test_outage_buffer_waits_for_its_listeners_after_a_restart(proxy: ProxyProcess) -> None:
    """The publisher is back long before the subscriber: nothing goes into an empty proxy."""
    cls = user_class(6)
    sub = await connect(proxy.address, cls, reconnect_delay=0.5)  # comes back late
    pub = await connect(proxy.address, 0, reconnect_delay=0.05, listen_grace=5.0)
    await pub.wait_listeners(cls, timeout=5)
    got: list[int] = []

    async def collect() -> None:
        async for m in sub:
            got.append(int(m.payload))

    collector = asyncio.create_task(collect())
    pub.send(cls, b"-1")
    await until(lambda: got == [-1])
    proxy.kill9()
    await until(lambda: pub.state is not ClientState.READY and sub.state is not ClientState.READY)
    n = 500
    for i in range(n):
        assert pub.send(cls, b"%d" % i)  # buffered: the proxy is gone
    proxy.start()
    await until(lambda: len(got) == n + 1, timeout=10)
    assert got == [-1, *range(n)]
    assert pub.stats().buffered == 0 and sub.stats().connects == 2
    collector.cancel()
    await pub.close()
    await sub.close()


async def test_outage_buffer_goes_out_after_the_grace_without_listeners(
    proxy: ProxyProcess, caplog: pytest.LogCaptureFixture
) -> None:
    cls = user_class(7)
    timers = ManualScheduler()
    pub = await connect(proxy.address, 0, scheduler=timers, listen_grace=2.0)
    proxy.kill9()
    await until(lambda: pub.state is ClientState.WAITING and timers.pending == 1)
    for i in range(5):
        pub.send(cls, b"%d" % i)
    proxy.start()
    timers.advance(1.0)
    await pub.wait_connected(5)
    await until(lambda: pub.interest is not None)
    assert pub.stats().buffered == 5, "held: nobody listens to USER7 yet"
    timers.advance(2.0)  # the grace is over
    assert pub.stats().buffered == 0
    assert "nobody listens to USER7" in caplog.text and "5 buffered messages" in caplog.text
    await pub.close()


# -- confirmation ------------------------------------------------------------------


async def test_drain_confirm_counts_our_echoes(proxy: ProxyProcess) -> None:
    cls = user_class(2)
    c = await connect(proxy.address, cls, on_message=lambda *_: None)
    for i in range(1000):
        c.send(cls, b"%d" % i)
    assert await c.drain(confirm=True, timeout=10) == 0
    stats = c.stats()
    assert (stats.confirmed, stats.awaiting_confirmation, stats.unconfirmed) == (1000, 0, 0)
    c.send(cls, b"last")
    assert await c.close(confirm=True) == 0


def test_threaded_client_confirms(proxy: ProxyProcess) -> None:
    cls = user_class(2)
    with connect_threaded(proxy.address, cls, on_message=lambda *_: None) as t:
        for i in range(50):
            t.send(cls, b"%d" % i)
        assert t.drain(5, confirm=True) == 0
        t.send(cls, b"last")
        assert t.close(5, confirm=True) == 0
        assert t.stats().confirmed == 51


def test_smd_send_count_100_confirms_on_our_proxy(proxy: ProxyProcess) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "smdbus",
            "send",
            "user2",
            "x",
            "--count",
            "100",
            "--socket",
            proxy.address,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


async def test_close_leaves_no_watch_running(proxy: ProxyProcess) -> None:
    """close() waits for the interest watch it cancels: a program whose loop ends right
    after close() left the task pending ("Task was destroyed but it is pending!")."""
    pub = await connect(proxy.address, 0)
    pub.send(user_class(2), b"x")  # the first send opens the watch
    await until(lambda: pub.interest is not None)
    watches = [t for t in asyncio.all_tasks() if "watch_interest" in repr(t.get_coro())]
    assert len(watches) == 1
    await pub.close()
    assert watches[0].done()


def test_a_reconnected_client_closed_leaves_no_task_pending(
    proxy: ProxyProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Every task the client started (interest watches of lost links too) has ended once
    close() returns: a loop closed right after, as a LoopThread's is, destroys none pending.
    Also catches a cancellation swallowed by 3.11's wait_for (the watch cancelled just as its
    control stream was created went on watching)."""
    unraisable: list[object] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    timers = ManualScheduler()

    async def main() -> None:
        c = await connect(proxy.address, 0, scheduler=timers)
        c.send(user_class(2), b"x")  # opens the watch of this link
        proxy.kill9()
        await until(lambda: c.state is ClientState.WAITING and timers.pending == 1)
        proxy.start()
        timers.advance(1.0)
        await until(lambda: c.connected and c.stats().connects == 2, timeout=5)
        for _ in range(5):  # sends open the new link's watch; close cancels it at once
            c.send(user_class(2), b"y")
        await c.close()
        for _ in range(3):  # a fresh client closed while its watch is being created
            d = await connect(proxy.address, 0)
            d.send(user_class(2), b"z")
            await d.close()

    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            loop.run_until_complete(main())
            left = [repr(t) for t in asyncio.all_tasks(loop) if not t.done()]
            loop.close()
            gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert left == []
    assert "Task was destroyed" not in caplog.text
    assert unraisable == []
