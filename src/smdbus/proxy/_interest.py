"""Telling our clients who listens: the proxy's union mask on the control stream.

Why: lws_smd refuses a message at allocation when nobody listens to its
class, and the in-process :class:`~smdbus.bus.Bus` does too (``send``
returns False). A client in another process cannot see the proxy's bus, so
it would send into the void; and after a proxy restart, a client's outage
buffer would flush before its subscribers are back. So the proxy tells
clients that ask (``{"op": "watch"}`` on ``_smdbus_ctl``, see
:mod:`smdbus.wire._control`) the classes somebody listens to, now and on
every change. C clients never ask and never see any of it.

Rules: changes are coalesced to one announcement per loop pass (a burst of
joins costs one frame per watcher); a watcher gets a mask only when it
differs from the last one it was sent; the number of watchers is bounded by
the proxy's connection limit, since each is a connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from smdbus.wire import interest_reply

if TYPE_CHECKING:
    from smdbus.bus import Bus
    from smdbus.proxy._connection import Connection


class InterestWatch:
    """The control connections that asked for the union mask, and what each was told."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.loop: asyncio.AbstractEventLoop | None = None
        self._told: dict[Connection, int] = {}
        self._scheduled = False
        self._watching = False
        self.open()

    def __len__(self) -> int:
        return len(self._told)

    def add(self, conn: Connection) -> None:
        """``conn`` asked to watch: tell it the mask now."""
        self.loop = asyncio.get_running_loop()
        mask = self.bus.union_mask
        self._told[conn] = mask
        conn.on_message(0, time.monotonic_ns() // 1000, interest_reply(mask, conn.denied))

    def discard(self, conn: Connection) -> None:
        self._told.pop(conn, None)

    def open(self) -> None:
        """Watch the bus's union (again: a proxy closed and started anew opens it again)."""
        if not self._watching:
            self._watching = True
            self.bus.watch_union(self._changed)

    def close(self) -> None:
        self._watching = False
        self.bus.unwatch_union(self._changed)
        self._told.clear()

    def _changed(self, union: int) -> None:
        """The bus's union changed (any thread): announce once this loop pass ends."""
        loop = self.loop
        if not self._told or loop is None or self._scheduled or loop.is_closed():
            return
        self._scheduled = True
        loop.call_soon_threadsafe(self._announce)

    def _announce(self) -> None:
        self._scheduled = False
        mask = self.bus.union_mask
        now = time.monotonic_ns() // 1000
        payloads: dict[int, bytes] = {}  # by denied mask: one payload for most
        for conn, told in list(self._told.items()):
            if told != mask:
                payload = payloads.get(conn.denied)
                if payload is None:
                    payload = payloads[conn.denied] = interest_reply(mask, conn.denied)
                self._told[conn] = mask
                conn.on_message(0, now, payload)

    def retell(self) -> None:
        """The policy changed: tell every watcher again (what it may send may have changed)."""
        for conn in self._told:
            self._told[conn] = -1
        if self._told and not self._scheduled and self.loop is not None:
            self._scheduled = True
            self.loop.call_soon(self._announce)
