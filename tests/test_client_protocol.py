"""The client's side of the wire against a scripted proxy on a real Unix socket.

The scripted proxy lets a test decide when CREATE_RESULT comes (or whether),
so the ordering rules are checked byte for byte: STREAMTYPE first, nothing
before CREATE_RESULT, TX_PAYLOAD layout, reconnect and re-creation.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time

import pytest

from smdbus.classes import Class, user_class
from smdbus.client import (
    BufferFull,
    Client,
    ClientClosed,
    ClientState,
    ProxyUnavailable,
    connect,
)
from smdbus.errors import PayloadTooLarge
from smdbus.scheduler import ManualScheduler
from smdbus.wire import (
    ConnStateCode,
    Decoder,
    Role,
    StreamType,
    TxPayload,
    conn_state_frame,
    create_result_frame,
    rx_payload_frame,
)
from smdbus.wire._control import CONTROL_STREAMTYPE, PROXY_MARK

_names = itertools.count()

CONNSTATES = (
    conn_state_frame(ConnStateCode.CREATING)
    + conn_state_frame(ConnStateCode.CONNECTING)
    + conn_state_frame(ConnStateCode.CONNECTED)
)
GREETING = create_result_frame(0) + CONNSTATES
"""A C proxy's greeting, minimal: no mark, so the client paces."""
OUR_GREETING = create_result_frame(0, rideshare=PROXY_MARK) + CONNSTATES
"""Our proxy's greeting: the mark lets the client batch."""


def unique_address() -> str:
    return f"@smdbus-test-client-{os.getpid()}-{next(_names)}"


class ScriptedProxy:
    """A Unix server that decodes what clients send and answers only when told."""

    def __init__(self, address: str, *, greet: bool = True, ours: bool = False) -> None:
        self.address = address
        self.greet = greet
        self.greeting = OUR_GREETING if ours else GREETING
        self.events: list[object] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.accepted = 0
        self.hung_up = 0  # connections the client closed: all it wrote has been read
        self.changed = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> ScriptedProxy:
        self.server = await asyncio.start_unix_server(self._serve, "\0" + self.address[1:])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for w in self.writers:
                w.close()
            await self.server.wait_closed()
            self.server = None
            self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        decoder = Decoder(Role.PROXY)
        while data := await reader.read(65536):
            for ev in decoder.feed(data):
                if isinstance(ev, StreamType) and ev.name == CONTROL_STREAMTYPE:
                    self.accepted -= 1  # no control stream here: the interest watch is refused
                    self.writers.remove(writer)
                    writer.write(create_result_frame(1))
                    writer.close()
                    return
                self.events.append(ev)
                if isinstance(ev, StreamType) and self.greet:
                    writer.write(self.greeting)
                self.changed.set()
        self.hung_up += 1
        self.changed.set()

    async def wait_for(self, predicate: object, timeout: float = 3.0) -> None:
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while not predicate():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; events so far: {self.events!r}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    def payloads(self) -> list[TxPayload]:
        return [e for e in self.events if isinstance(e, TxPayload)]


async def test_streamtype_first_and_payload_layout() -> None:
    address = unique_address()
    async with ScriptedProxy(address) as proxy:
        client = await connect(address, Class.NETWORK | Class.METRICS)
        client.send(Class.NETWORK, b'{"x":0}', timestamp_us=1234)
        await proxy.wait_for(lambda: proxy.payloads())
        first = proxy.events[0]
        assert first == StreamType("_lws_smd", 0x0C, os.getpid(), 1)
        (tx,) = proxy.payloads()
        assert (tx.cls, tx.timestamp_us, tx.payload, tx.flags) == (4, 1234, b'{"x":0}', 3)
        now_us = time.monotonic_ns() // 1000
        assert 0 <= now_us - tx.time_us < 5_000_000
        await client.close()


async def test_no_payload_before_create_result() -> None:
    address = unique_address()
    async with ScriptedProxy(address, greet=False) as proxy:
        client = await connect(address, Class.NETWORK, wait=False)
        client.send(Class.NETWORK, b"early")
        await proxy.wait_for(lambda: proxy.events)
        assert client.state is ClientState.CREATING
        await client.close()  # the hang-up comes after anything a wrong client wrote
        await proxy.wait_for(lambda: proxy.hung_up == 1)
        assert [type(e) for e in proxy.events] == [StreamType]
        proxy.events.clear()
        client = await connect(address, Class.NETWORK, wait=False)
        client.send(Class.NETWORK, b"early")
        await proxy.wait_for(lambda: proxy.events)
        proxy.writers[1].write(GREETING)
        await proxy.wait_for(lambda: proxy.payloads())
        assert proxy.payloads()[0].payload == b"early"
        await client.close()


async def test_create_result_timeout_reconnects_and_recreates() -> None:
    address = unique_address()
    async with ScriptedProxy(address, greet=False) as proxy:
        client = Client(address, Class.NETWORK, create_timeout=0.05, reconnect_delay=0.01)
        await client.start(wait=False)
        await proxy.wait_for(lambda: proxy.accepted >= 3)
        streamtypes = [e for e in proxy.events if isinstance(e, StreamType)]
        assert len(streamtypes) >= 3  # a fresh STREAMTYPE on every connection
        assert "CREATE_RESULT" in (client.stats().last_error or "")
        await client.close()


async def test_first_connect_fails_clearly() -> None:
    address = unique_address()
    with pytest.raises(ProxyUnavailable, match=address[1:]):
        await connect(address, Class.NETWORK)


async def test_refused_stream_is_an_error() -> None:
    address = unique_address()
    async with ScriptedProxy(address, greet=False) as proxy:
        task = asyncio.create_task(connect(address, Class.NETWORK))
        await proxy.wait_for(lambda: proxy.events)
        proxy.writers[0].write(create_result_frame(1))
        with pytest.raises(ProxyUnavailable, match="refused"):
            await task


async def test_receives_in_order_with_timestamps() -> None:
    address = unique_address()
    async with ScriptedProxy(address) as proxy:
        client = await connect(address, Class.NETWORK)
        frames = b"".join(rx_payload_frame(4, 1000 + i, b"m%d" % i, 5) for i in range(500))
        # split awkwardly: frames cut across writes
        for i in range(0, len(frames), 777):
            proxy.writers[0].write(frames[i : i + 777])
            await asyncio.sleep(0)
        got = [await client.receive() for _ in range(500)]
        assert [(m.cls, m.timestamp_us, m.payload) for m in got] == [
            (4, 1000 + i, b"m%d" % i) for i in range(500)
        ]
        await client.close()
        with pytest.raises(ClientClosed):
            await client.receive()


async def test_bad_frame_from_proxy_drops_connection_and_reconnects() -> None:
    address = unique_address()
    async with ScriptedProxy(address) as proxy:
        client = await connect(address, Class.NETWORK, reconnect_delay=0.01)
        proxy.writers[0].write(b"\x99\x00\x00")
        await proxy.wait_for(lambda: proxy.accepted == 2)
        await client.wait_connected(3)
        assert "unknown frame type 0x99" in (client.stats().last_error or "")
        await client.close()


async def test_oversize_and_bad_class_refused_at_send() -> None:
    address = unique_address()
    async with ScriptedProxy(address):
        client = await connect(address, Class.NETWORK)
        with pytest.raises(PayloadTooLarge, match="384 bytes"):
            client.send(Class.NETWORK, bytes(384))
        client.send(Class.NETWORK, bytes(383))
        with pytest.raises(ValueError, match="class"):
            client.send(0, b"x")
        await client.close()
        with pytest.raises(ClientClosed):
            client.send(Class.NETWORK, b"x")


async def test_outage_buffer_bound_and_delivery_after_reconnect() -> None:
    address = unique_address()
    proxy = ScriptedProxy(address)
    client = Client(address, user_class(1), reconnect_delay=0.02, max_buffered=5)
    await client.start(wait=False)
    for i in range(5):
        client.send(user_class(1), b"%d" % i)
    with pytest.raises(BufferFull) as info:
        client.send(user_class(1), b"over")
    err = info.value
    assert (err.count, err.max_messages, err.connected) == (5, 5, False)
    assert "unreachable" in str(err) and "USER1" in str(err)
    assert client.stats().refused == 1
    async with proxy:
        await proxy.wait_for(lambda: len(proxy.payloads()) == 5)
        assert [p.payload for p in proxy.payloads()] == [b"0", b"1", b"2", b"3", b"4"]
    await client.close()


async def test_byte_bound() -> None:
    client = Client(unique_address(), Class.NETWORK, max_buffered_bytes=400)
    await client.start(wait=False)
    client.send(Class.NETWORK, bytes(300))
    with pytest.raises(BufferFull, match="bytes"):
        client.send(Class.NETWORK, bytes(100))
    await client.close(timeout=0)


async def test_lone_send_is_written_at_once_and_a_burst_is_batched() -> None:
    address = unique_address()
    async with ScriptedProxy(address, ours=True) as proxy:
        client = await connect(address, Class.NETWORK)
        client.send(Class.NETWORK, b"lone")
        assert client.stats().sent == 1, "written before the loop turns"
        for i in range(50):
            client.send(Class.NETWORK, b"%d" % i)
        assert client.stats().sent == 1, "the rest of the pass waits for one write"
        await asyncio.sleep(0)
        assert client.stats().sent == 51
        await proxy.wait_for(lambda: len(proxy.payloads()) == 51)
        assert [p.payload for p in proxy.payloads()] == [b"lone", *(b"%d" % i for i in range(50))]
        await client.close()


async def test_inbox_bound_stops_reading_and_nothing_is_lost() -> None:
    address = unique_address()
    async with ScriptedProxy(address) as proxy:
        client = await connect(address, Class.NETWORK, max_inbox=10)
        proxy.writers[0].write(b"".join(rx_payload_frame(4, i, b"%d" % i) for i in range(100)))
        deadline = time.monotonic() + 2
        while not client._input_paused and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # paused: the client reads nothing more until its inbox drains, so no wait for more
        assert client.stats().received == 10, "stopped at the bound"
        got = [(await client.receive()).payload for _ in range(100)]
        assert got == [b"%d" % i for i in range(100)]
        await client.close()


async def test_on_message_errors_are_logged_and_delivery_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    address = unique_address()
    got: list[bytes] = []

    def on_message(cls: int, ts: int, payload: bytes) -> None:
        got.append(payload)
        if payload == b"2":
            raise RuntimeError("handler bug")

    async with ScriptedProxy(address) as proxy:
        client = await connect(address, Class.NETWORK, on_message=on_message)
        proxy.writers[0].write(b"".join(rx_payload_frame(4, i, b"%d" % i) for i in range(5)))
        deadline = time.monotonic() + 2
        while len(got) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert got == [b"0", b"1", b"2", b"3", b"4"]
        assert "on_message failed on a NETWORK message" in caplog.text
        assert client.stats().received == 5
        await client.close()


async def test_confirm_counts_what_a_lost_connection_never_sent_back() -> None:
    """Echoes that a dead connection never brought are reported, not waited for."""
    address = unique_address()
    async with ScriptedProxy(address, ours=True) as proxy:  # takes messages, echoes none
        client = await connect(address, Class.NETWORK, reconnect_delay=60)
        for i in range(10):
            client.send(Class.NETWORK, b"%d" % i)
        await proxy.wait_for(lambda: len(proxy.payloads()) == 10)
        assert client.stats().awaiting_confirmation == 10
        await proxy.stop()  # hangs up: the proxy passed nothing back
        assert await client.drain(confirm=True, timeout=5) == 10
        stats = client.stats()
        assert (stats.confirmed, stats.awaiting_confirmation, stats.unconfirmed) == (0, 0, 10)
        assert await client.drain(confirm=True, timeout=0) == 0, "each is reported once"
        await client.close(timeout=0)


def _raw_proxy(address: str) -> asyncio.Task[socket.socket]:
    """One connection of a C proxy on a raw socket: what it reads and writes is the test's.

    The task accepts one client, reads its STREAMTYPE of ``_lws_smd`` and not
    a byte more, greets as a C proxy (the client paces) and returns the socket.
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + address[1:])
    listener.listen(1)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()

    async def serve() -> socket.socket:
        try:
            conn, _ = await loop.sock_accept(listener)
        finally:
            listener.close()
        await loop.sock_recv(conn, 20)
        await loop.sock_sendall(conn, GREETING)
        return conn

    return asyncio.create_task(serve())


async def test_paced_client_stops_spinning_on_a_proxy_that_stopped_reading() -> None:
    """On a C proxy the client waits for each frame to be read; not by burning the CPU."""
    address = unique_address()
    serving = _raw_proxy(address)
    timers = ManualScheduler()
    client = await connect(address, 0, scheduler=timers)
    for i in range(5):
        client.send(Class.NETWORK, b"%d" % i)
    deadline = time.monotonic() + 5
    while not timers.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.001)  # bounded poll: the loop passes the client spins through
    assert timers.pending == 1, "after its spin budget the client looks again on a timer"
    assert client.stats().sent == 1, "one frame out, unread: the next waits"
    (await serving).close()
    await client.close(timeout=0)


_SO_SNDBUFFORCE = 32  # Linux's; Python's socket module does not name it


async def test_a_dead_proxys_bytes_past_one_callback_and_its_end_are_read() -> None:
    """Messages of more than one reader callback wait behind ECONNRESET: all are read, and the end.

    A loop that drops a reader once its socket reports an error (uvloop; the
    module doc of ``smdbus.client._link``) calls it once more: the client
    reads on within that call, a few reads at most, then registers afresh so
    the rest is read on the next pass. The proxy here dies with our last write
    unread and more queued for us than that call reads (``test_client_uvloop``
    runs this test on uvloop).
    """
    address = unique_address()
    serving = _raw_proxy(address)
    timers = ManualScheduler()
    client = await connect(address, Class.NETWORK, scheduler=timers)
    conn = await serving
    client.send(Class.NETWORK, b"never read")  # written at once: the proxy never reads it
    assert client.stats().sent == 1
    # from here the client's loop is busy (no await) while the proxy writes and dies
    try:
        conn.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, 4 << 20)
    except PermissionError:
        pytest.skip("SO_SNDBUFFORCE needs CAP_NET_ADMIN: more than a default buffer to queue")
    n = 4000
    frames = b"".join(rx_payload_frame(4, i, b"%06d" % i + bytes(60), 5) for i in range(n))
    assert len(frames) > 6 * 64 * 1024  # more than the reads of one callback (4 of 64 KiB)
    conn.setblocking(False)
    assert conn.send(frames) == len(frames)  # the kernel took it whole, or the test is wrong
    conn.close()  # our write unread: the client's socket has ECONNRESET behind the messages
    got = [await asyncio.wait_for(client.receive(), 5) for _ in range(n)]
    assert [m.payload[:6] for m in got] == [b"%06d" % i for i in range(n)]
    deadline = time.monotonic() + 5
    while client.state is ClientState.READY and time.monotonic() < deadline:
        await asyncio.sleep(0.001)  # bounded poll for the client to notice the end
    assert client.state is ClientState.WAITING
    assert client.stats().last_error == "read failed: [Errno 104] Connection reset by peer"
    await client.close(timeout=0)
