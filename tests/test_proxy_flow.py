"""The proxy's publishing path and control stream under faults, over real Unix sockets.

A publisher that hangs up keeps what it wrote (read to EOF, a failed write
ends only the delivery to it); held publishers are admitted first, in order;
the control stream's work is bounded per query and per loop pass.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from smdbus.classes import user_class
from smdbus.client import connect
from smdbus.proxy import PeerInfo, Proxy, ProxySettings
from smdbus.wire import MASK_ZERO_QUIRK, stream_type_frame, tx_payload_frame
from smdbus.wire.stream import WireStream

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
    return [(await asyncio.wait_for(sub.receive(), 5)).body[:6] for _ in range(n)]


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until the proxy reaches a state (bounded: fails after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


def _of(proxy: Proxy, mask: int) -> list[PeerInfo]:
    return [p for p in proxy.peers() if p.mask == mask]


def _held(proxy: Proxy, client_pid: int) -> str | None:
    return next((p.held for p in proxy.peers() if p.client_pid == client_pid), None)


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
