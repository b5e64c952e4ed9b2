"""The proxy's union mask on the control stream (``{"op": "watch"}``), over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from smdbus.classes import Class
from smdbus.proxy import Proxy, ProxySettings
from smdbus.wire import WireStream, create_result_frame
from smdbus.wire._control import (
    CONTROL_MAX_PAYLOAD,
    CONTROL_STREAMTYPE,
    PROXY_MARK,
    WATCH_QUERY,
    parse_interest,
)


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    address = f"\0smdbus-test-interest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    async with Proxy(ProxySettings(address=address)) as p:
        yield p


async def watch(proxy: Proxy) -> WireStream:
    w = await WireStream.connect(
        proxy.address, 0, streamtype=CONTROL_STREAMTYPE, max_payload=CONTROL_MAX_PAYLOAD
    )
    await w.send(0, WATCH_QUERY)
    return w


async def told(w: WireStream) -> int | None:
    return parse_interest((await asyncio.wait_for(w.receive(), 2)).payload)


async def test_watchers_are_told_the_union_now_and_on_every_change(proxy: Proxy) -> None:
    w = await watch(proxy)
    assert await told(w) == 0
    sub = await WireStream.connect(proxy.address, int(Class.NETWORK))
    assert await told(w) == Class.NETWORK  # an _lws_smd connection joined
    local = proxy.bus.register(Class.METRICS, lambda *_: None, "local")
    assert await told(w) == Class.NETWORK | Class.METRICS  # a local participant counts too
    proxy.bus.unregister(local)
    assert await told(w) == Class.NETWORK
    await sub.close()
    assert await told(w) == 0
    await w.close()
    for _ in range(1000):  # the proxy forgets the watcher when it sees the hang-up
        if not len(proxy.interest):
            break
        await asyncio.sleep(0.001)
    assert len(proxy.interest) == 0


async def test_a_burst_of_joins_is_one_announcement(proxy: Proxy) -> None:
    w = await watch(proxy)
    assert await told(w) == 0
    proxy.bus.register(Class.NETWORK, lambda *_: None, "a")
    proxy.bus.register(Class.METRICS, lambda *_: None, "b")  # same loop pass
    assert await told(w) == Class.NETWORK | Class.METRICS
    await w.close()


async def test_our_create_result_carries_the_mark(proxy: Proxy) -> None:
    reader, writer = await asyncio.open_unix_connection(proxy.address)
    writer.write(bytes.fromhex("aa0011 01 00000001 00000004") + b"_lws_smd")
    head = await asyncio.wait_for(reader.readexactly(3 + 12), 2)
    assert head == create_result_frame(0, rideshare=PROXY_MARK)
    writer.close()


async def test_a_watch_closed_with_its_loop_gone_closes_quietly(proxy: Proxy) -> None:
    """A watch whose coroutine is closed without a loop to run on (its loop ended: a
    client's thread stopped) must not ``await`` on the way out.

    It used to ``await stream.close()`` in its ``finally``: the coroutine then ignored
    GeneratorExit, and Python printed "coroutine ignored GeneratorExit" for each one.
    """
    from smdbus.client._interest import watch_interest

    told = asyncio.Event()
    task = asyncio.ensure_future(watch_interest(proxy.address, lambda mask: told.set()))
    await asyncio.wait_for(told.wait(), 5)
    await asyncio.sleep(0)  # let it go back to waiting for the proxy's next word
    coro = task.get_coro()
    assert coro is not None
    try:
        coro.close()  # what the garbage collector does to a task destroyed with its loop
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def test_watchers_of_a_restarted_proxy_are_told_of_changes() -> None:
    # close() stops watching the bus (a shared bus must not keep a closed proxy's
    # watcher); a start again, of the same proxy, must watch it again
    address = f"\0smdbus-test-interest-again-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    proxy = Proxy(ProxySettings(address=address))
    async with proxy:
        pass
    async with proxy:
        w = await watch(proxy)
        assert await told(w) == 0
        sub = await WireStream.connect(proxy.address, int(Class.NETWORK))
        assert await told(w) == Class.NETWORK
        await sub.close()
        await w.close()
    assert proxy.interest._changed not in proxy.bus._union_watchers  # closed: not watching
