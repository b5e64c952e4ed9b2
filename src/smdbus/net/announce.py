"""Putting network events on the bus without losing any.

The bus refuses a message when its queue is full (:class:`smdbus.QueueFull`).
A route change or a CPD result must still be told, so the announcer keeps
refused messages, in order, and sends them when the bus says it has room
(``Bus.when_room``). Delays are counted (``delayed``) and logged, never silent.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from smdbus.errors import QueueFull

log = logging.getLogger("smdbus.net")


class Publisher(Protocol):
    """The part of :class:`smdbus.Bus` the network code sends through."""

    def send_json(self, cls: int, obj: Any) -> bool: ...


class BusLike(Publisher, Protocol):
    """The part of :class:`smdbus.Bus` a network component listens with."""

    def register(
        self, mask: int, callback: Callable[[int, int, bytes], None], name: str | None = None
    ) -> Any: ...

    def unregister(self, participant: Any) -> None: ...


class Announcer:
    """Sends JSON messages in order; on a full queue, keeps them until there is room."""

    def __init__(self, bus: Publisher | None, name: str) -> None:
        self.bus = bus
        self.name = name
        self._outbox: deque[tuple[int, Any]] = deque()
        self._waiting = False
        self.sent = 0
        """Messages handed to the bus (``send_json`` returned True)."""
        self.unheard = 0
        """Messages nobody listened to (the bus refused them as lws_smd does)."""
        self.delayed = 0
        """Messages that met a full queue and went out later."""

    def announce(self, cls: int, obj: Any) -> None:
        if self.bus is None:
            return
        self._outbox.append((cls, obj))
        if not self._waiting:
            self._flush()

    @property
    def pending(self) -> int:
        """Messages waiting for room on the bus."""
        return len(self._outbox)

    def _flush(self) -> None:
        self._waiting = False
        bus = self.bus
        assert bus is not None
        while self._outbox:
            cls, obj = self._outbox[0]
            try:
                heard = bus.send_json(cls, obj)
            except QueueFull as e:
                self.delayed += 1
                self._wait_for_room(e)
                return
            self._outbox.popleft()
            if heard:
                self.sent += 1
            else:
                self.unheard += 1

    def _wait_for_room(self, err: QueueFull) -> None:
        when_room: Callable[[Callable[[], None]], None] | None = getattr(
            self.bus, "when_room", None
        )
        if when_room is None:
            log.error("%s: %s; %d message(s) dropped", self.name, err, len(self._outbox))
            self._outbox.clear()
            return
        log.warning("%s: %s; %d message(s) wait for room", self.name, err, len(self._outbox))
        self._waiting = True
        when_room(self._flush)
