"""One bus across processes: a local :class:`~smdbus.Bus` joined to the proxy's.

Directions:

- *In*: every message from the proxy is forwarded into the local bus with
  its original timestamp, excluding the bridge's own participant, so it is
  never sent back out.
- *Out*: the bridge is a participant of the local bus (mask ``export_mask``,
  by default the connection's mask); every local message it receives is sent
  to the proxy, with the local message's timestamp.

The no-loop rule: the proxy echoes a message to its sender when the
sender's mask matches (lws_smd's rule). The local bus has already delivered
our own message locally, so its echo must not be forwarded in again. The
client remembers what the bridge wrote (see :mod:`smdbus.client._echo`) and
the first matching message from the proxy is dropped as the echo. The result:
each local participant gets each message once, whoever sent it.

Backpressure: a local bus that is full (:class:`~smdbus.errors.QueueFull`)
makes the client stop reading the proxy until the bus has room again, so
nothing is lost here. In the other direction a local message that the
client cannot buffer (outage bound reached) cannot be refused to its sender,
who sent it on the local bus long ago: it is logged and counted in
``Client.stats().bridge_dropped``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from smdbus.classes import format_mask
from smdbus.client._errors import ClientError, NotNow
from smdbus.errors import PayloadTooLarge, QueueFull
from smdbus.wire import format_address

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from smdbus.bus import Bus, Participant

log = logging.getLogger("smdbus.client.bridge")


class BridgedClient(Protocol):
    """What a bridge uses of its client (:class:`~smdbus.client.Client` is one).

    A protocol, not an import: the client makes its bridge, so the bridge
    names only what it calls and the two modules do not import each other.
    """

    address: str
    bridge_dropped: int

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...

    def set_sink(self, sink: Callable[[int, int, bytes], bool]) -> None: ...

    def send_bridged(self, cls: int, ts: int, payload: bytes) -> bool: ...

    def is_echo(self, cls: int, payload: bytes) -> bool: ...

    def resume_input(self) -> None: ...


class Bridge:
    """The join between one client and one local bus (made by ``Client.bridge``)."""

    def __init__(self, client: BridgedClient, bus: Bus, export_mask: int, name: str | None) -> None:
        self.client = client
        self.bus = bus
        self.export_mask = export_mask
        self.forwarded_in = 0
        self.forwarded_out = 0
        self._waiting_room = False
        self.participant: Participant | None = None
        if export_mask:
            self.participant = bus.register(
                export_mask,
                self._from_local,
                name or f"bridge to {format_address(client.address)}",
            )
        client.set_sink(self._from_proxy)

    def detach(self) -> None:
        """Leave the local bus (the client's close does this)."""
        if self.participant is not None:
            self.bus.unregister(self.participant)
            self.participant = None

    def _from_local(self, cls: int, ts: int, payload: bytes) -> None:
        """A local message: on to the proxy (runs on the bus's loop)."""
        try:
            heard = self.client.send_bridged(cls, ts, payload)
        except (ClientError, PayloadTooLarge) as exc:
            self.client.bridge_dropped += 1
            log.warning("local %s message not bridged: %s", format_mask(cls), exc)
            return
        if heard:  # else nobody listens at the proxy: refused there, as lws_smd does
            self.forwarded_out += 1

    def _from_proxy(self, cls: int, ts: int, payload: bytes) -> bool:
        """A message from the proxy: into the local bus unless it is our echo."""
        if self.client.is_echo(cls, payload):
            return True
        try:
            self.bus.forward(cls, ts, payload, exclude=self.participant)
        except QueueFull:
            if not self._waiting_room:
                self._waiting_room = True
                self.bus.when_room(self._room)
            raise NotNow from None
        except PayloadTooLarge as exc:
            self.client.bridge_dropped += 1
            log.warning("message from the proxy not bridged: %s", exc)
            return True
        self.forwarded_in += 1
        return True

    def _room(self) -> None:
        """The local bus has room again (called on its loop): read the proxy again."""
        self._waiting_room = False
        loop = self.client.loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self.client.resume_input)
