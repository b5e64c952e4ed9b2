"""What a producer does when the bus is full: one announcer for every producer of the daemon.

The bus refuses a message when its queue is full (:class:`~smdbus.errors.QueueFull`)
and when nobody listens to its class (``send`` returns False, as lws_smd). A
producer that is not itself a peer (the state manager, the route monitor, CPD,
the button driver) cannot be made to wait, so it hands its messages to an
:class:`Announcer`, which applies one of two policies:

- **keep** (the default): refused messages are kept, in order, and sent when the
  bus has room: on :meth:`smdbus.Bus.when_room` when the publisher offers it
  (:class:`RoomNotifier`), else on a timer every ``retry`` seconds of the
  injected scheduler (a remote client as publisher, a test's fake). Every
  message that could not go out at once is counted (``delayed``). The backlog is
  bounded (``limit``): past it a message is dropped, counted (``refused``) and
  logged, never silently.
- **drop** (``keep=False``): a refused message is counted (``refused``), logged
  and gone. For producers whose messages are about *now* and lose their meaning
  when late.

A message the bus can never take (too large) is counted in ``refused`` and
logged under either policy. Messages nobody listens to are counted in
``unheard``: not an error, the bus's normal answer.

Who does what (docs/bus.md has the same table for users):

==================  ======  ==============================================================
producer            policy  why
==================  ======  ==============================================================
state manager       keep    every move is announced, in order; a late state still tells
route monitor       keep    a route change must be told, or listeners keep a stale table
CPD                 keep    a result decides the boot and the apps' connections
button driver       drop    a press replayed late misleads; the count and log show it
bridge (client)     --      not an announcer: it stops reading the proxy (backpressure)
                            until ``when_room``, so nothing is dropped or kept here
==================  ======  ==============================================================
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from smdbus.classes import format_mask
from smdbus.errors import QueueFull, SmdError

if TYPE_CHECKING:  # smdbus.system imports this module: its scheduler is imported on need
    from smdbus.scheduler import Scheduler

log = logging.getLogger("smdbus.announce")

DEFAULT_LIMIT = 1024
"""Messages an announcer keeps while the bus is full (a full backlog refuses more)."""


class Publisher(Protocol):
    """What an announcer sends through: :meth:`smdbus.Bus.send` and the clients' ``send`` fit."""

    def send(self, cls: int, payload: bytes) -> bool: ...


@runtime_checkable
class RoomNotifier(Protocol):
    """A publisher that says when its queue has room again (:meth:`smdbus.Bus.when_room`)."""

    def when_room(self, callback: Callable[[], None]) -> None: ...


def encode(obj: Any) -> bytes:
    """A message as compact JSON (no spaces, as lws's own messages); bytes pass as they are."""
    if isinstance(obj, bytes):
        return obj
    return json.dumps(obj, separators=(",", ":")).encode()


class Announcer:
    """Sends messages in order through ``bus`` with one policy for a full queue (see above).

    ``timers`` gives the scheduler for the retry timer, asked for only when a
    publisher without ``when_room`` is full (the state manager passes its own;
    without one, the running loop's is used).
    """

    def __init__(
        self,
        bus: Publisher | None,
        name: str,
        *,
        keep: bool = True,
        limit: int = DEFAULT_LIMIT,
        retry: float = 0.05,
        timers: Callable[[], Scheduler] | None = None,
    ) -> None:
        if limit < 1 or retry <= 0:
            raise ValueError(f"limit must be >= 1 and retry > 0 s, got {limit} and {retry}")
        self.bus = bus
        self.name = name
        self.keep = keep
        self.limit = limit
        self.retry = retry
        self._timers = timers
        self._outbox: deque[tuple[int, bytes]] = deque()
        self._waiting = False
        self._full = False  # in a wait for room (logged once per wait)
        self.sent = 0
        """Messages handed to the bus (``send`` returned True)."""
        self.unheard = 0
        """Messages nobody listened to (the bus refused them as lws_smd does)."""
        self.delayed = 0
        """Messages that met a full queue and went out later (or are still waiting)."""
        self.refused = 0
        """Messages lost, each logged: too large, dropped on a full queue, or over ``limit``."""

    @property
    def pending(self) -> int:
        """Messages waiting for room on the bus."""
        return len(self._outbox)

    def announce(self, cls: int, message: Any) -> None:
        """Send ``message`` (bytes as they are, anything else as compact JSON) on ``cls``."""
        if self.bus is None:
            return
        payload = encode(message)
        if self._outbox:  # others wait for room: keep the order
            if len(self._outbox) >= self.limit:
                self.refused += 1
                log.error(
                    "%s: %d messages already wait for room; a %d-byte message dropped",
                    self.name,
                    len(self._outbox),
                    len(payload),
                )
                return
            self._outbox.append((cls, payload))
            self.delayed += 1
            return
        self._outbox.append((cls, payload))
        self._flush()
        if self._outbox:  # it met a full queue and waits
            self.delayed += 1

    def _flush(self) -> None:
        self._waiting = False
        bus = self.bus
        while self._outbox and bus is not None:
            cls, payload = self._outbox[0]
            try:
                heard = bus.send(cls, payload)
            except QueueFull as e:
                if not self.keep:
                    self._lose(e)
                    continue
                if not self._full:
                    self._full = True
                    log.warning(
                        "%s: %s; %d message(s) wait for room", self.name, e, len(self._outbox)
                    )
                self._wait_for_room(bus)
                return
            except SmdError as e:  # too large: never sendable
                self._lose(e)
                continue
            self._outbox.popleft()
            if heard:
                self.sent += 1
            else:
                self.unheard += 1
        self._full = False

    def _lose(self, err: SmdError) -> None:
        cls, payload = self._outbox.popleft()
        self.refused += 1
        log.warning(
            "%s: a %d-byte %s message not published: %s",
            self.name,
            len(payload),
            format_mask(cls),
            err,
        )

    def _wait_for_room(self, bus: Publisher) -> None:
        self._waiting = True
        if isinstance(bus, RoomNotifier):
            bus.when_room(self._flush)
            return
        if self._timers is not None:
            self._timers().call_later(self.retry, self._flush)
            return
        import asyncio  # here: the state's names are read without asyncio (smd state)

        from smdbus.scheduler import LoopScheduler

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            dropped = len(self._outbox)
            self.refused += dropped
            self._outbox.clear()
            self._waiting = False
            log.error(
                "%s: bus full and no loop to retry on; %d message(s) dropped", self.name, dropped
            )
            return
        self._timers = lambda: LoopScheduler(loop)
        self._timers().call_later(self.retry, self._flush)
