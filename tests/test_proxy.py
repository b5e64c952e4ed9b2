"""The proxy over real Unix sockets, driven by raw C-style clients speaking golden bytes."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from smdbus.classes import Class, user_class
from smdbus.proxy import Proxy, ProxySettings
from smdbus.proxy._connection import REFUSAL
from smdbus.proxy._flow import Outflow, Verdict
from smdbus.scheduler import ManualScheduler
from smdbus.wire import (
    MASK_ZERO_QUIRK,
    SMD_STREAMTYPE,
    Decoder,
    Destroying,
    OnwardConnect,
    PayloadLengthHint,
    Role,
    RxPayload,
    StreamState,
    TimeoutUpdate,
    TxCreditUpdate,
    WireStream,
    decode,
    encode,
    rx_payload_frame,
    stream_type_frame,
    tx_payload_frame,
)
from smdbus.wire._control import CONTROL_STREAMTYPE, GREETING

GOLDEN_STREAMTYPE = bytes.fromhex("aa0011 01 00003a7e 0000000e") + b"_lws_smd"
# CREATE_RESULT as the C proxy's (result 0, buflen 0, rideshare text) but with our mark,
# ",smdbus" where C says ",(null)"; then CONNSTATE CREATING, CONNECTING, CONNECTED
GOLDEN_GREETING = bytes.fromhex(
    "56000c0000000000 2c736d64627573 5700050100000000 5700050600000000 5700050500000000"
)
BODY = b'{"class":"NETWORK","x":0}'
GOLDEN_TX = (
    bytes.fromhex("ad0039 00000003 2db94914 000000002db94914 0000000000000004 0000000000000000")
    + BODY
)


def _address() -> str:
    return f"\0smdbus-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    async with Proxy(ProxySettings(address=_address(), first_frame_timeout=0.3)) as p:
        yield p


async def open_unix(
    address: str, **kwargs: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_unix_connection`` on a socket connected here, on any loop.

    uvloop's own connect refuses abstract addresses (EINVAL); given a connected
    socket, every loop serves it (test_proxy_uvloop runs these tests on uvloop).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_unix_connection(sock=sock, **kwargs)


class Raw:
    """A client that speaks bytes, as the C client does."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = Decoder(Role.CLIENT)

    @classmethod
    async def open(cls, address: str) -> Raw:
        return cls(*await open_unix(address))

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def exactly(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), 2)

    async def message(self) -> RxPayload:
        while True:
            for event in self.decoder.events():
                if isinstance(event, RxPayload):
                    return event
            data = await asyncio.wait_for(self.reader.read(65536), 2)
            assert data, "proxy hung up"
            self.decoder.feed(data)

    async def closed_by_proxy(self) -> bytes:
        """Everything left until EOF (the proxy must hang up within 2 s)."""
        return await asyncio.wait_for(self.reader.read(), 2)

    async def joined(self, mask: int) -> Raw:
        self.write(stream_type_frame("_lws_smd", mask, 1234))
        assert await self.exactly(len(GOLDEN_GREETING)) == GOLDEN_GREETING
        return self

    def close(self) -> None:
        self.writer.close()


async def test_golden_handshake_and_own_message_back(proxy: Proxy) -> None:
    c = await Raw.open(proxy.address)
    c.write(GOLDEN_STREAMTYPE)
    assert await c.exactly(len(GOLDEN_GREETING)) == GOLDEN_GREETING
    before = time.monotonic_ns() // 1000
    c.write(GOLDEN_TX)
    raw = await c.exactly(3 + 0x39)
    after = time.monotonic_ns() // 1000
    [msg] = decode(raw, Role.CLIENT)
    assert isinstance(msg, RxPayload)
    assert (msg.cls, msg.payload, msg.flags, msg.latency_us) == (4, BODY, 3, 0)
    # stamped at the proxy with real monotonic time (the sender left it 0)
    assert before <= msg.timestamp_us <= msg.time_us <= after
    assert raw[:7] == bytes.fromhex("55003900000003") and raw[7:11] == bytes(4)
    [peer] = proxy.peers()
    assert (peer.pid, peer.uid, peer.client_pid, peer.mask) == (
        os.getpid(),
        os.getuid(),
        0x3A7E,
        14,
    )
    assert (peer.published, peer.delivered) == (1, 1)
    c.close()


async def test_mask_zero_quirk_taken_literally(proxy: Proxy) -> None:
    """A C client asking for mask 0 sends 0x1DCD6500: bit 24 (USER0) is in it, NETWORK is not."""
    quirk = await Raw.open(proxy.address)
    await quirk.joined(MASK_ZERO_QUIRK)
    sender = await WireStream.connect(proxy.address, 0)
    await sender.send(4, b"network")
    await sender.send(1 << 24, b"user0")
    msg = await quirk.message()
    assert (msg.cls, msg.payload) == (1 << 24, b"user0")
    assert proxy.peers()[0].mask == 0x1DCD6500 and proxy.peers()[0].mask_names == "0x1dcd6500"
    await sender.close()
    quirk.close()


async def test_delivery_follows_masks_in_queue_order(proxy: Proxy) -> None:
    net = await (await Raw.open(proxy.address)).joined(4)
    both = await (await Raw.open(proxy.address)).joined(6)
    pub = await (await Raw.open(proxy.address)).joined(0)
    for i in range(100):
        pub.write(tx_payload_frame(2 if i % 3 else 4, 0, b"%d" % i))
    got_both = [await both.message() for _ in range(100)]
    assert [m.payload for m in got_both] == [b"%d" % i for i in range(100)]
    got_net = [await net.message() for _ in range(34)]
    assert [m.payload for m in got_net] == [b"%d" % i for i in range(0, 100, 3)]
    assert all(m.cls == 4 for m in got_net)
    ts = [m.timestamp_us for m in got_both]
    assert ts == sorted(ts)
    for c in (net, both, pub):
        c.close()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("oversize body", tx_payload_frame(4, 0, bytes(384)), "over the limit of 383"),
        ("unknown frame type", b"\x42\x00\x00", "unknown frame type 0x42"),
        ("proxy-bound frame type from client", b"\x55\x00\x00", "never sent by a client"),
        (
            "second streamtype",
            stream_type_frame("_lws_smd", 4),
            "StreamType from the client is not allowed in state OPEN",
        ),
        ("metadata", b"\xae\x00\x03\x01ab", "METADATA"),
        ("frame over max_frame", b"\xb3\x08\x00", "over the limit of 1024"),
    ],
)
async def test_bad_frames_close_only_that_connection(
    proxy: Proxy, caplog: pytest.LogCaptureFixture, name: str, data: bytes, reason: str
) -> None:
    caplog.set_level(logging.WARNING, "smdbus.proxy")
    good = await (await Raw.open(proxy.address)).joined(4)
    bad = await (await Raw.open(proxy.address)).joined(4)
    bad.write(data)
    assert await bad.closed_by_proxy() == b""
    assert reason in caplog.text
    closed = [p for p in proxy.peers() if p.state == "closed"]
    assert len(closed) == 1 and reason in (closed[0].reason or "")
    assert proxy.counters["protocol_errors"] == 1
    # the other connection is undisturbed
    good.write(tx_payload_frame(4, 0, b"still here"))
    assert (await good.message()).payload == b"still here"
    good.close()


@pytest.mark.parametrize(
    "first",
    [tx_payload_frame(4, 0, b"early"), encode(OnwardConnect()), b"\xac\x00\x00"],
    ids=["tx", "onward", "destroying"],
)
async def test_frame_before_streamtype_is_refused(
    proxy: Proxy, caplog: pytest.LogCaptureFixture, first: bytes
) -> None:
    caplog.set_level(logging.WARNING, "smdbus.proxy")
    c = await Raw.open(proxy.address)
    c.write(first)
    assert await c.closed_by_proxy() == b""
    assert "from the client is not allowed in state IDLE" in caplog.text


async def test_unknown_streamtype_gets_failure_result(proxy: Proxy) -> None:
    c = await Raw.open(proxy.address)
    c.write(stream_type_frame("mintest", 0))
    assert await c.closed_by_proxy() == bytes.fromhex("5600050100000000")


async def test_accepted_and_ignored_frames(proxy: Proxy) -> None:
    c = await (await Raw.open(proxy.address)).joined(4)
    for event in (OnwardConnect(), TimeoutUpdate(5000), PayloadLengthHint(40), TxCreditUpdate(9)):
        c.write(encode(event))
    c.write(b"\xb3\x00\x00")  # link validity probe
    c.write(tx_payload_frame(4, 0, b"after"))
    assert (await c.message()).payload == b"after"
    c.close()


async def test_destroying_hangs_up(proxy: Proxy) -> None:
    c = await (await Raw.open(proxy.address)).joined(4)
    c.write(b"\xac\x00\x00")
    assert await c.closed_by_proxy() == b""
    [peer] = proxy.peers()
    assert peer.reason == "client destroyed its stream"


async def _until(cond: Callable[[], bool], what: str) -> None:
    """Let the proxy (in this loop) run until ``cond`` holds; bounded, so a bug fails."""
    async with asyncio.timeout(5):
        while not cond():
            await asyncio.sleep(0)


async def test_first_frame_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """A connection that sends nothing is closed after ``first_frame_timeout`` (C: 3 s), on
    the proxy's scheduler: a manual one here, so the test waits for no time at all."""
    caplog.set_level(logging.WARNING, "smdbus.proxy")
    scheduler = ManualScheduler()
    settings = ProxySettings(address=_address(), first_frame_timeout=3.0)
    async with Proxy(settings, scheduler=scheduler) as p:
        c = await Raw.open(p.address)
        await _until(lambda: scheduler.next_due == 3.0, "the connection's first-frame timer")
        scheduler.advance(2.999)
        assert [peer.state for peer in p.peers()] == ["new"]
        assert p.counters["first_frame_timeouts"] == 0
        scheduler.advance(0.001)
        assert await c.closed_by_proxy() == b""
        assert p.counters["first_frame_timeouts"] == 1
        assert [peer.reason for peer in p.peers()] == ["no STREAMTYPE within 3 s"]
    assert "no STREAMTYPE within 3 s" in caplog.text


async def test_streamtype_in_time_cancels_the_first_frame_timer() -> None:
    scheduler = ManualScheduler()
    async with Proxy(ProxySettings(address=_address()), scheduler=scheduler) as p:
        c = await (await Raw.open(p.address)).joined(4)
        assert scheduler.pending == 0
        scheduler.advance(60.0)
        assert [(peer.state, peer.reason) for peer in p.peers()] == [("smd", None)]
        assert p.counters["first_frame_timeouts"] == 0
        c.close()


async def test_max_connections() -> None:
    async with Proxy(ProxySettings(address=_address(), max_connections=2)) as p:
        a = await (await Raw.open(p.address)).joined(4)
        b = await (await Raw.open(p.address)).joined(4)
        c = await Raw.open(p.address)
        c.write(GOLDEN_STREAMTYPE)
        # refused at accept with the CREATE_RESULT failure, answered after its STREAMTYPE
        assert await c.closed_by_proxy() == bytes.fromhex("5600050100000000")
        assert p.counters["refused_max_connections"] == 1
        assert len(p.peers()) == 2
        a.close()
        b.close()


async def test_filesystem_socket_mode_group_and_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "smd.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on, as a killed proxy leaves
    gid = os.getgroups()[-1] if os.getgroups() else os.getgid()
    async with Proxy(ProxySettings(address=str(path), group=gid)) as p:
        st = path.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == gid
        c = await (await Raw.open(str(path))).joined(4)
        with pytest.raises(OSError, match="in use by a running proxy"):
            await Proxy(ProxySettings(address=str(path))).start()
        c.close()
        assert p.peers()[0].pid == os.getpid()
    assert not path.exists(), "the socket file is removed at close"


async def test_abstract_address_in_use(proxy: Proxy) -> None:
    with pytest.raises(OSError, match="cannot listen on @smdbus-test"):
        await Proxy(ProxySettings(address=proxy.address)).start()


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_buffer"):
        ProxySettings(high_water=10_000, max_buffer=100)


def test_outflow_verdicts_with_an_injected_clock() -> None:
    flow = Outflow(grace=0.2, timeout=2.0)
    flow.start(10.0, sent=1000)
    assert flow.check(10.1, 1000) is Verdict.FLOWING
    assert flow.check(10.25, 1000) is Verdict.STALLED
    assert flow.check(10.3, 1500) is Verdict.FLOWING  # it read something: slow, not stopped
    assert flow.check(12.2, 1500) is Verdict.STALLED
    assert flow.check(12.3, 1500) is Verdict.DEAD
    assert flow.idle(12.3) == pytest.approx(2.0)


async def test_full_bus_queue_pauses_the_publisher_without_loss() -> None:
    """A queue of 4: the publisher is held again and again, nothing is lost or reordered."""
    async with Proxy(ProxySettings(address=_address(), queue_depth=4)) as p:
        sub = await (await Raw.open(p.address)).joined(4)
        pub = await (await Raw.open(p.address)).joined(0)
        pub.write(b"".join(tx_payload_frame(4, 0, b"%d" % i) for i in range(2000)))
        got = [(await sub.message()).payload for _ in range(2000)]
        assert got == [b"%d" % i for i in range(2000)]
        assert p.counters["held_queue"] > 100
        assert p.counters["published"] == 2000
        sub.close()
        pub.close()


async def test_slow_reader_holds_publisher_then_catches_up() -> None:
    """A subscriber that reads late (but reads) gets everything: publishers wait for it."""
    settings = ProxySettings(address=_address(), high_water=16_384, stall_grace=5, stall_timeout=10)
    async with Proxy(settings) as p:
        sub = await (await Raw.open(p.address)).joined(4)
        pub = await (await Raw.open(p.address)).joined(0)
        n = 20_000
        writer = asyncio.create_task(_publish(pub, n))
        deadline = time.monotonic() + 5  # sub reads nothing meanwhile
        while p.congested_mask != 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert p.congested_mask == 4 and p.counters["held_congestion"] >= 1
        assert p.peers()[0].buffered < settings.max_buffer
        got = [(await sub.message()).payload for _ in range(n)]
        assert got == [b"%d" % i for i in range(n)]
        await writer
        assert p.counters["slow_disconnects"] == p.counters["stall_disconnects"] == 0
        sub.close()
        pub.close()


async def _publish(c: Raw, n: int) -> None:
    for i in range(n):
        c.write(tx_payload_frame(4, 0, b"%d" % i))
        if i % 500 == 0:
            await c.writer.drain()
    await c.writer.drain()


async def test_peers_over_the_control_stream(proxy: Proxy) -> None:
    from smdbus.commands._peers import format_table, query_peers

    c = await (await Raw.open(proxy.address)).joined(6)
    peers, summary = await query_peers(proxy.address)
    smd = [p for p in peers if p["streamtype"] == "_lws_smd"]
    assert len(smd) == 1 and smd[0]["pid"] == os.getpid() and smd[0]["mask"] == 6
    assert summary["stats"]["accepted"] == 2
    table = format_table(peers, summary["stats"])
    assert "SYSTEM_STATE|NETWORK" in table and "_smdbus_ctl" in table
    c.close()


class _Sink:
    """A transport stand-in that keeps what is written (for the sans-socket unit tests)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


USER = user_class(0)  # a class the default policy lets anyone send


def _unstarted(streamtype: str, mask: int = USER) -> tuple[Proxy, Any, _Sink]:
    """A proxy connection fed its STREAMTYPE by hand (no loop, no socket)."""
    from smdbus.proxy._connection import Connection

    proxy = Proxy(ProxySettings(address=_address()))
    conn = Connection(proxy, 1)
    sink = _Sink()
    conn.transport = sink  # type: ignore[assignment]
    conn.data_received(stream_type_frame(streamtype, mask))
    return proxy, conn, sink


def _stream_state(conn: Any) -> StreamState:
    """The stream's state now (a call, so the type checker does not pin it across calls)."""
    return conn.stream.state  # type: ignore[no-any-return]


def test_the_connection_state_is_the_wire_stream_state() -> None:
    """The greeting goes through the wire's table: it is what opens the stream."""
    proxy, conn, sink = _unstarted(SMD_STREAMTYPE)
    assert _stream_state(conn) is StreamState.OPEN and conn.state == "smd"
    assert bytes(sink.data) == GREETING
    conn.data_received(tx_payload_frame(USER, 0, b"one") + encode(Destroying()))
    assert conn.published == 1
    assert _stream_state(conn) is StreamState.CLOSED and conn.state == "closed"
    assert conn.close_reason == "client destroyed its stream" and sink.closed
    assert proxy.counters.get("protocol_errors", 0) == 0

    _, ctl, _ = _unstarted(CONTROL_STREAMTYPE, 0)
    assert ctl.stream.state is StreamState.OPEN and ctl.state == "control"


def test_out_of_order_input_is_refused_by_the_wire_table_naming_state_and_event() -> None:
    proxy, conn, sink = _unstarted(SMD_STREAMTYPE)
    conn.data_received(tx_payload_frame(USER, 0, b"ok") + stream_type_frame(SMD_STREAMTYPE, 4))
    assert conn.published == 1, "what came before the bad frame is published"
    assert conn.close_reason == "StreamType from the client is not allowed in state OPEN"
    assert conn.state == "closed" and sink.closed
    assert proxy.counters["protocol_errors"] == 1


def test_an_unknown_streamtype_is_refused_through_the_table() -> None:
    _, conn, sink = _unstarted("mintest")
    assert bytes(sink.data) == REFUSAL and conn.stream.state is StreamState.CLOSED
    assert conn.state == "closed" and "unknown streamtype 'mintest'" in (conn.close_reason or "")
    conn.data_received(tx_payload_frame(USER, 0, b"late"))  # nothing is read once closed
    assert conn.published == 0


def test_fanout_frames_are_the_wire_builders_frames() -> None:
    """The fan-out packs RX_PAYLOAD inline (a call less per message): the same bytes as wire's."""
    from smdbus.proxy._fanout import Group

    proxy = Proxy(ProxySettings(address=_address()))
    group = Group(proxy, 4)
    group.dirty = True  # already marked in this pass: its time is the pass's
    proxy.pass_us = 12345
    for shared in (False, True):
        proxy.shared_frames = shared
        group.on_message(4, 99, b"body")
    assert group.frames == [rx_payload_frame(4, 99, b"body", 12345)] * 2


def test_fanout_group_shares_frames_and_a_late_joiner_gets_only_later_ones() -> None:
    from smdbus.proxy._connection import Connection

    proxy = Proxy(ProxySettings(address=_address()))

    def member(ident: int, mask: int) -> tuple[Connection, _Sink]:
        conn = Connection(proxy, ident)
        sink = _Sink()
        conn.transport = sink  # type: ignore[assignment]
        conn.stream.state, conn.streamtype, conn.mask = StreamState.OPEN, SMD_STREAMTYPE, mask
        conn.group = proxy.join(conn)
        return conn, sink

    a, a_out = member(1, 4)
    group = a.group
    assert group is not None and [p.mask for p in proxy.bus.participants()] == [4]
    group.on_message(4, 10, b"early")  # delivered by the bus, not yet written
    b, b_out = member(2, 4)
    assert b.group is group, "same mask, same group: still one bus participant"
    assert len(proxy.bus.participants()) == 1
    group.on_message(4, 11, b"late")
    group.flush()

    def bodies(out: _Sink) -> list[bytes]:
        return [e.payload for e in decode(bytes(out.data), Role.CLIENT) if isinstance(e, RxPayload)]

    assert bodies(a_out) == [b"early", b"late"]
    assert bodies(b_out) == [b"late"], "nothing delivered before it joined"
    assert (a.msgs_out, b.msgs_out) == (2, 1)
    a._finish("test", error=False)
    b._finish("test", error=False)
    assert proxy.bus.participants() == [], "the last member out unregisters the group"


async def test_close_delivers_what_was_sent_before_it_then_hangs_up() -> None:
    """A shutdown announcement sent just before close() reaches clients before the EOF."""
    p = Proxy(ProxySettings(address=_address()))
    await p.start()
    c = await (await Raw.open(p.address)).joined(int(Class.SYSTEM_STATE))
    p.bus.send_json(Class.SYSTEM_STATE, {"state": "DESTROYING"})
    await p.close()  # no loop pass in between: the message is still queued on the bus
    rest = await c.closed_by_proxy()
    [msg] = decode(rest, Role.CLIENT)
    assert isinstance(msg, RxPayload) and msg.payload == b'{"state":"DESTROYING"}'
    c.close()


async def test_inherited_socket_is_served_and_its_file_left_alone(tmp_path: Path) -> None:
    """Socket activation: systemd binds the file; the proxy serves it and does not unlink it."""
    path = str(tmp_path / "activated.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(8)
    p = Proxy(ProxySettings(address=path), sock=sock)
    await p.start()
    c = await (await Raw.open(path)).joined(int(Class.NETWORK))
    p.bus.send(Class.NETWORK, b"hello")
    assert (await c.message()).payload == b"hello"
    c.close()
    await p.close()
    assert os.path.exists(path)


def test_a_proxy_restarted_on_another_loop_times_its_connections_on_that_loop() -> None:
    """A proxy given no scheduler makes its timers on the loop it runs on, each time it starts.

    It kept the loop scheduler of its first start: started again under a new loop
    (a second ``asyncio.run``), every accepted connection's first-frame timer went to
    the first, closed loop, ``connection_made`` raised, and a client that sends
    nothing held its slot for good (the bound on silent connections was gone).
    """
    address = f"\0smdbus-test-reloop-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    proxy = Proxy(ProxySettings(address=address, first_frame_timeout=0.05))
    errors: list[dict[str, Any]] = []

    async def serve_once() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        await proxy.start()
        try:
            # a client that sends nothing: the proxy hangs up on it (the sentinel: EOF)
            reader, writer = await asyncio.open_unix_connection(address)
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
        finally:
            await proxy.close()

    asyncio.run(serve_once())
    asyncio.run(serve_once())
    assert proxy.counters["first_frame_timeouts"] == 2
    assert errors == []


async def test_a_proxy_restarted_in_the_same_loop_accepts() -> None:
    """close() must take the listener out of the loop's selector before closing it.

    It used to close the socket while the loop still watched its number: the next
    listening socket got that number, the selector thought it was watched already,
    and the second proxy never answered a client.
    """
    address = f"\0smdbus-test-restart-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        async with Proxy(ProxySettings(address=address)):
            stream = await asyncio.wait_for(WireStream.connect(address, int(Class.NETWORK)), 5)
            await stream.close()
