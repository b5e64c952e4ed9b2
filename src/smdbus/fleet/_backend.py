"""A backend's connection to the broker, for ``smd fleet``: subscribe, follow, send down.

Built on the bridge's :class:`~._mqtt.MqttLink` (one paho client, events on
the loop). Received messages wait in a bounded queue; when it is full the
oldest waiting message is dropped and counted (a monitor that cannot keep
up must not grow without bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from smdbus.fleet._config import BrokerConfig
from smdbus.fleet._mqtt import LinkEvents, MqttLink

MAX_QUEUE = 10_000


class FleetClient:
    def __init__(self, broker: BrokerConfig, client_id: str | None = None) -> None:
        self.broker = broker
        self.client_id = client_id or f"smd-fleet-{uuid.uuid4().hex[:12]}"
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.dropped = 0
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._lost: asyncio.Future[str] | None = None
        self._link: MqttLink | None = None

    async def __aenter__(self) -> FleetClient:
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self._link = MqttLink(
            self.broker,
            self.client_id,
            LinkEvents(self._published, self._message, self._on_lost),
        )
        await self._link.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._link is not None:
            await self._link.close()

    def _published(self, mid: int) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _message(self, topic: str, payload: bytes, _origin: str | None) -> None:
        if self.queue.qsize() >= MAX_QUEUE:
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait((topic, payload))

    def _on_lost(self, why: str) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(why)

    def _require(self) -> MqttLink:
        if self._link is None:
            raise RuntimeError("use FleetClient in 'async with'")
        return self._link

    def subscribe(self, topic: str) -> None:
        self._require().subscribe(topic, 1, no_local=False)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, timeout: float = 10
    ) -> None:
        """Publish and wait for the broker's acknowledgement (QoS 1)."""
        fut = asyncio.get_running_loop().create_future()
        mid = self._require().publish(topic, payload, qos, retain)
        self._acks[mid] = fut
        await asyncio.wait_for(fut, timeout)

    async def sync(self, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        """What the broker had for us on subscribing (the retained messages), in order.

        A sentinel published to a topic of our own after the subscriptions
        comes back after them (``timeout`` bounds the wait when the broker's
        ACL does not let it through); later messages stay in the queue.
        """
        topic = f"smd-fleet-sync/{self.client_id}"
        self.subscribe(topic)
        marker = uuid.uuid4().bytes
        await self.publish(topic, marker, timeout=timeout)
        waiting: list[tuple[str, bytes]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while True:
                    item = await self.queue.get()
                    if item == (topic, marker):
                        break
                    waiting.append(item)
        return waiting

    async def receive(self) -> tuple[str, bytes]:
        """The next message; ConnectionError when the broker went away."""
        assert self._lost is not None
        if not self.queue.empty():
            return self.queue.get_nowait()
        get = asyncio.ensure_future(self.queue.get())
        both: list[asyncio.Future[Any]] = [get, self._lost]
        await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        get.cancel()
        raise ConnectionError(f"{self.broker.url}: connection lost: {self._lost.result()}")
