"""The proxy's publishing path and control stream under faults, over real Unix sockets.

A publisher that hangs up keeps what it wrote (read to EOF, a failed write
ends only the delivery to it); held publishers are admitted first, in order;
the control stream's work is bounded per query and per loop pass.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from smdbus.classes import user_class
from smdbus.client import connect
from smdbus.proxy import CONTROL_STREAMTYPE, PeerInfo, Proxy, ProxySettings
from smdbus.proxy._admission import Admission
from smdbus.proxy._connection import RECV_SIZE
from smdbus.proxy._control import MAX_REFUSED, PEERS_PER_PASS
from smdbus.wire import (
    MASK_ZERO_QUIRK,
    Decoder,
    Role,
    RxPayload,
    WireStream,
    stream_type_frame,
    tx_payload_frame,
)
from smdbus.wire._control import GREETING
from test_proxy import open_unix

USER0 = int(user_class(0))


def _address() -> str:
    return f"\0smdbus-flow-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    async with Proxy(ProxySettings(address=_address())) as p:
        yield p


FROZEN = 0.0
"""An injected clock that never moves: a congested subscriber never turns stalled."""


def _frozen() -> float:
    return FROZEN


async def _take(sub: WireStream, n: int) -> list[bytes]:
    return [(await asyncio.wait_for(sub.receive(), 5)).payload[:6] for _ in range(n)]


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until the proxy reaches a state (bounded: fails after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


def _of(proxy: Proxy, mask: int) -> list[PeerInfo]:
    return [p for p in proxy.peers() if p.mask == mask]


def _held(proxy: Proxy, client_pid: int) -> str | None:
    return next((p.held for p in proxy.peers() if p.client_pid == client_pid), None)


# -- issue 17: one loop pass per read ------------------------------------------


async def test_a_read_is_delivered_and_written_within_its_own_callback(proxy: Proxy) -> None:
    """What a read publishes reaches the subscribers' sockets before its callback returns.

    Not in a loop pass scheduled after it: the bus delivers and the groups write
    inside ``data_received`` (``Proxy.read_begins``/``read_ends``). The read is
    driven by hand, so no loop pass runs between it and the look at the socket.
    """
    loop = asyncio.get_running_loop()
    sub = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sub.setblocking(False)
    await loop.sock_connect(sub, proxy.address)
    await loop.sock_sendall(sub, stream_type_frame("_lws_smd", USER0, 4343))
    greeting = b""
    while len(greeting) < len(GREETING):
        greeting += await loop.sock_recv(sub, len(GREETING) - len(greeting))
    pub = await WireStream.connect(proxy.address, 0)
    await _until(lambda: len([c for c in proxy.open_connections() if c.is_smd]) == 2)
    [conn] = [c for c in proxy.open_connections() if c.is_smd and c.mask == 0]
    conn.data_received(tx_payload_frame(USER0, 0, b"at once") * 2)
    decoder = Decoder(Role.CLIENT)
    decoder.feed(sub.recv(4096))  # raises BlockingIOError if nothing was written yet
    got: list[bytes] = []
    assert decoder.dispatch(lambda cls, ts, body: got.append(body)) == 2
    assert got == [b"at once", b"at once"]
    assert proxy.counters["published"] == 2
    sub.close()
    await pub.close()


# -- 3: a publisher that hangs up keeps what it wrote -------------------------


@pytest.mark.parametrize("mask", [USER0, MASK_ZERO_QUIRK], ids=["user0", "c-mask-zero"])
async def test_held_publisher_that_closes_loses_nothing(mask: int) -> None:
    """A raw publisher receiving its own class writes until the proxy holds it, then closes.

    It never reads its echoes, so it congests itself (a frozen clock keeps it from
    being judged stalled) and is held with a message in hand and unread input in
    the kernel; its close makes the proxy's next echo write fail. Everything it
    wrote must still be published, and the echoes it missed counted as dropped.
    """
    settings = ProxySettings(address=_address(), high_water=4096)
    async with Proxy(settings, clock=_frozen) as proxy:
        sub = await WireStream.connect(proxy.address, USER0)
        sock, n = await _echo_flooder_held(proxy, mask)
        sock.close()  # with the greeting and the echoes unread
        assert await _take(sub, n) == [b"%06d" % i for i in range(n)]
        [pub] = [p for p in proxy.peers() if p.client_pid == 4242]
        assert pub.published == n == proxy.counters["published"]
        assert pub.reason == "client closed the connection"
        assert proxy.counters["write_failures"] == 1
        assert 0 < pub.dropped == proxy.counters["dropped_write_failed"]
        # the echoes it missed are counted; later messages were no longer for it
        assert pub.delivered + pub.dropped < n
        await sub.close()


async def _echo_flooder_held(proxy: Proxy, mask: int) -> tuple[socket.socket, int]:
    """A raw publisher of USER0 receiving ``mask``, that never reads: writes until held.

    Returns its socket (non-blocking) and how many messages it wrote.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(proxy.address)
    sock.sendall(stream_type_frame("_lws_smd", mask, 4242))
    sock.setblocking(False)
    n = 0
    while _held(proxy, 4242) != "congestion":
        frame = tx_payload_frame(USER0, 0, b"%06d" % n + bytes(90))
        try:
            assert sock.send(frame) == len(frame)
            n += 1
        except BlockingIOError:
            await asyncio.sleep(0)  # let the proxy run until it holds this publisher
    return sock, n


async def test_flooder_that_closes_with_reads_waiting_is_read_to_its_end() -> None:
    """After the failed write, more than one read is waiting, behind the close's ECONNRESET.

    The flooder of the test above writes on while the proxy holds it (its
    input stays in the kernel), then closes with its echoes unread: the
    proxy's write fails, its socket has an error pending (ECONNRESET) and
    several reads of input before it. On uvloop a reader on such a socket was
    called once and then never again (libuv's poll takes the error as its end),
    so the rest stayed in the kernel and the connection (and its descriptor)
    stayed open. Every message must be published and the connection end at EOF.
    """
    settings = ProxySettings(address=_address(), high_water=4096)
    async with Proxy(settings, clock=_frozen) as proxy:
        sub = await WireStream.connect(proxy.address, USER0)
        sock, n = await _echo_flooder_held(proxy, USER0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        batch = 64
        waiting = 0
        while waiting < 3 * RECV_SIZE:  # three reads at least
            frames = b"".join(
                tx_payload_frame(USER0, 0, b"%06d" % (n + i) + bytes(90)) for i in range(batch)
            )
            assert sock.send(frames) == len(frames)  # the kernel takes it whole, or the test fails
            n += batch
            waiting += len(frames)
        assert _held(proxy, 4242) == "congestion"  # none of it read yet
        sock.close()
        assert await _take(sub, n) == [b"%06d" % i for i in range(n)]
        [pub] = [p for p in proxy.peers() if p.client_pid == 4242]
        assert pub.published == n == proxy.counters["published"]
        # the sentinel of its end: EOF read, the connection closed and its descriptor with it
        await _until(lambda: not any(c.client_pid == 4242 for c in proxy.open_connections()))
        [pub] = [p for p in proxy.peers() if p.client_pid == 4242]
        assert pub.reason == "client closed the connection"
        assert proxy.counters["write_failures"] == 1
        await sub.close()


async def test_client_close_while_held_loses_nothing() -> None:
    """``Client.close()`` while the proxy holds it; a later write to it fails: all it sent goes out.

    A subscriber that reads nothing (a frozen clock: never judged stalled) holds
    USER0 back. The client's messages wait in the kernel and in the proxy's hand
    when it closes; a message of another class it subscribes to then meets a
    closed socket. Once the subscriber reads, every message the client sent
    reaches it, in order.
    """
    user1 = int(user_class(1))
    settings = ProxySettings(address=_address(), high_water=4096)
    async with Proxy(settings, clock=_frozen) as proxy:
        blocker = await WireStream.connect(proxy.address, USER0)
        filler = await WireStream.connect(proxy.address, 0)
        filled = 0
        while not proxy.congested_mask & USER0:
            await filler.send(USER0, b"filler" + bytes(90))
            filled += 1
        mask = USER0 | user1
        client = await connect(proxy.address, mask)
        n = 500
        for i in range(n):
            client.send(USER0, b"%06d" % i)
        await client.close()  # flushes its buffer into the socket, then hangs up
        poker = await WireStream.connect(proxy.address, 0)  # the filler is held: another one
        await poker.send(user1, b"to the closed client")
        # the sentinel: the proxy met the closed socket (and ended the delivery, or hung up)
        await _until(lambda: any(p.dropped or p.state == "closed" for p in _of(proxy, mask)))
        got = await _take(blocker, filled + n)
        assert [b for b in got if b != b"filler"] == [b"%06d" % i for i in range(n)]
        [pub] = _of(proxy, mask)
        assert pub.published == n
        assert proxy.counters["write_failures"] == 1 and pub.dropped == 1
        for s in (blocker, filler, poker):
            await s.close()


# -- 4: held publishers are admitted first, in order --------------------------


def _raw_publisher(address: str, pid: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address)
    sock.sendall(stream_type_frame("_lws_smd", 0, pid))
    _greeted(sock)
    sock.setblocking(False)
    return sock


def _greeted(sock: socket.socket) -> None:
    """Read the proxy's CREATE_RESULT and three CONNSTATEs."""
    got = b""
    while len(got) < len(GREETING):
        chunk = sock.recv(len(GREETING) - len(got))
        assert chunk, "proxy hung up"
        got += chunk


def _frames(tag: bytes, n: int) -> bytes:
    return b"".join(tx_payload_frame(USER0, 0, tag + b"%05d" % i) for i in range(n))


async def _publishers(address: str, n: int) -> list[socket.socket]:
    return [await asyncio.to_thread(_raw_publisher, address, 100 + i) for i in range(n)]


async def test_a_waiting_publisher_goes_before_one_that_just_read() -> None:
    """A is held (queue full); B's input arrives in the pass that frees room: A goes first.

    The loop passes are laid out with the test's own steps: A's burst is read in
    the pass after it is written, B's message (written in that pass) in the
    next one, the one whose delivery frees the queue. Before admission in
    order, B took the room and A resumed a pass later to a full queue again.
    """
    async with Proxy(ProxySettings(address=_address(), queue_depth=2)) as proxy:
        sub = await WireStream.connect(proxy.address, USER0)
        a, b = await _publishers(proxy.address, 2)
        a.send(_frames(b"A", 10))
        await asyncio.sleep(0)  # the proxy reads A's burst in this pass, after this step
        b.send(_frames(b"B", 1))
        got = [m[:1] for m in await _take(sub, 11)]
        assert got[:4] == [b"A"] * 4, got
        assert proxy.counters["published"] == 11
        for s in (a, b):
            s.close()
        await sub.close()


async def test_waiting_publishers_take_turns_in_order() -> None:
    """Three publishers waiting on a queue of one message: strict rotation, nobody twice."""
    async with Proxy(ProxySettings(address=_address(), queue_depth=1)) as proxy:
        sub = await WireStream.connect(proxy.address, USER0)
        socks = await _publishers(proxy.address, 3)
        n = 20
        for tag, sock in zip((b"A", b"B", b"C"), socks, strict=True):
            sock.send(_frames(tag, n))
            await asyncio.sleep(0)  # each joins the line one pass after the previous one
        got = [m[:1] for m in await _take(sub, 3 * n)]
        start = got.index(b"C")  # from here all three wait
        end = min(len(got) - got[::-1].index(t) for t in (b"A", b"B", b"C")) - 1
        assert end - start > 3 * (n // 2)
        for i in range(start, end - 2):
            assert len(set(got[i : i + 3])) == 3, (i, got)
        for s in socks:
            s.close()
        await sub.close()


def test_admission_fifo_and_fair_shares() -> None:
    line: Admission[str] = Admission()
    assert line.next(10) is None
    for who in ("a", "b", "c", "a"):  # a waits already: it keeps its place
        line.wait(who)
    assert line.order() == ["a", "b", "c"]
    assert line.next(0) is None, "no room: nobody's turn"
    assert line.next(10) == ("a", 3)  # a fair share of the room, head first
    line.wait("a")  # more to publish: to the back
    assert line.next(7) == ("b", 2)
    line.discard("c")  # went away
    assert line.next(1) == ("a", 1)
    assert line.next(1) is None and not line
    chunky: Admission[str] = Admission(quantum=64)
    for who in "abcdefgh":
        chunky.wait(who)
    assert chunky.next(256) == ("a", 64), "a turn is a quantum at least"
    assert chunky.next(40) == ("b", 40), "or what room there is"
    assert chunky.next(0) is None


# -- 5: the control stream does not freeze the loop ---------------------------


async def _idle_connections(address: str, n: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(n):
        reader, writer = await open_unix(address)
        writer.write(stream_type_frame("_lws_smd", 0, 7))
        await reader.readexactly(len(GREETING))
        writers.append(writer)
    return writers


def _control(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address)
    sock.sendall(stream_type_frame(CONTROL_STREAMTYPE, 0, 77))
    _greeted(sock)
    return sock


PEERS = tx_payload_frame(0, 0, b'{"op":"peers"}')


async def _replies(sock: socket.socket) -> list[dict[str, Any]]:
    """Every reply until the proxy hangs up."""
    loop = asyncio.get_running_loop()
    decoder = Decoder(Role.CLIENT, max_payload=0xFFFF - 32)
    out: list[dict[str, Any]] = []
    sock.setblocking(False)
    while data := await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 5):
        out += [json.loads(e.payload) for e in decoder.feed(data) if isinstance(e, RxPayload)]
    return out


async def test_asker_that_leaves_stops_the_work() -> None:
    """A peers query over 200 connections whose asker hangs up at once: one record, no more."""
    async with Proxy(ProxySettings(address=_address())) as proxy:
        idle = await _idle_connections(proxy.address, 200)
        asker = await asyncio.to_thread(_control, proxy.address)
        asker.sendall(PEERS)
        asker.close()
        await _until(lambda: proxy.counters.get("control_abandoned", 0) == 1)
        assert proxy.counters["control_records"] <= PEERS_PER_PASS
        assert proxy.stats()["queries"] == 0
        for w in idle:
            w.close()


async def test_query_flood_is_refused_with_a_reason_then_hung_up() -> None:
    """200 queries in one write; a burst of 20 is allowed (the clock frozen: no refill)."""
    async with Proxy(ProxySettings(address=_address()), clock=_frozen) as proxy:
        asker = await asyncio.to_thread(_control, proxy.address)
        asker.sendall(PEERS * 200)
        replies = await _replies(asker)  # to the proxy's hang-up
        ends = [r for r in replies if "count" in r]
        errors = [r["error"] for r in replies if "error" in r]
        assert len(ends) == 20, "one query at a time, each answered in full"
        assert len(errors) == MAX_REFUSED
        assert all(e.startswith("rate limited: over 10 queries a second") for e in errors)
        assert proxy.counters["control_queries"] == 20
        assert proxy.counters["control_refused"] == MAX_REFUSED
        [record] = [p for p in proxy.peers() if p.client_pid == 77]
        assert record.reason is not None and record.reason.startswith("query flood")
        asker.close()


async def test_publisher_flows_while_a_query_waits_for_its_asker() -> None:
    """An asker that does not read: its query waits (backpressure), publishing goes on."""
    n = 1000
    settings = ProxySettings(address=_address(), high_water=4096)
    async with Proxy(settings, clock=_frozen) as proxy:
        idle = await _idle_connections(proxy.address, n)
        asker = await asyncio.to_thread(_control, proxy.address)
        asker.sendall(PEERS)
        await _until(lambda: any(p.congested for p in proxy.peers() if p.client_pid == 77))
        [waiting] = [p for p in proxy.peers() if p.client_pid == 77]
        # a slice at most past high water (a record is ~500 bytes), not the whole reply
        assert waiting.buffered < settings.high_water + PEERS_PER_PASS * 1024
        records = proxy.counters["control_records"]
        assert 0 < records < n
        sub = await WireStream.connect(proxy.address, USER0)
        pub = await WireStream.connect(proxy.address, 0)
        for i in range(100):
            await pub.send(USER0, b"%06d" % i)
            assert (await asyncio.wait_for(sub.receive(), 5)).payload == b"%06d" % i
        assert proxy.stats()["queries"] == 1, "still waiting for its asker"
        assert proxy.counters["control_records"] == records, "and no work done meanwhile"
        decoder = Decoder(Role.CLIENT, max_payload=0xFFFF - 32)
        loop = asyncio.get_running_loop()
        asker.setblocking(False)
        end: dict[str, Any] = {}
        while not end:
            data = await asyncio.wait_for(loop.sock_recv(asker, 1 << 16), 5)
            for e in decoder.feed(data):
                if isinstance(e, RxPayload) and "count" in (reply := json.loads(e.payload)):
                    end = reply
        assert end["count"] >= n and proxy.stats()["queries"] == 0
        asker.close()
        for s in (sub, pub):
            await s.close()
        for w in idle:
            w.close()


def test_a_connection_keeps_its_instance_dict_small() -> None:
    """1 000 connections cost ~1.3 MiB more when Connection passes 29 attributes.

    CPython (3.11) shares the keys of instances' dicts up to that many; past
    it each connection's dict is a full table (~1.6 KB instead of ~300 B).
    """
    import sys

    from smdbus.proxy._connection import Connection

    conn = Connection(Proxy(ProxySettings(address=_address())), 1)
    if not hasattr(conn, "__dict__"):
        pytest.skip("compiled (mypyc): the attributes live in a C struct, no instance dict")
    assert sys.getsizeof(conn.__dict__) < 1024, len(conn.__dict__)
