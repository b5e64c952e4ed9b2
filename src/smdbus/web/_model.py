"""What the web view shows, kept without I/O: messages, classes, boot timeline, peers.

Rules
-----
- :meth:`BusView.message` is called for every bus message (thousands a
  second): it counts the message in the class table and passes it on to the
  page only while the sampler allows (``max_rate`` a second, a token bucket
  with a one-second burst). A message not passed on is counted
  (``skipped``), never silently lost from the figures: the class table and
  ``/metrics`` count every message; the list and the sequence view show a
  sample, and say how many they do not show.
- The hot path reads no clock: the adapter calls :meth:`BusView.advance`
  every 100 ms, which refills the bucket and sets the time the class table
  stamps on the messages that follow (ages are good to that step).
- A message passed on is encoded once (JSON text) and kept in the ring under
  its id; the adapter collects the new ones (:meth:`BusView.take_new`) on its
  own schedule and writes them to the event streams, so the loop is not
  woken per message.
- Time comes from the injected ``clock`` (monotonic seconds); wall times are
  the bus's monotonic timestamps plus ``wall_offset``.
- The sender of a message is the connection that published it (``"#id"``,
  a column of the sequence view) when the adapter has it from the proxy
  (:meth:`BusView.message_from`, :mod:`smdbus.proxy._monitor`), else
  ``"bus"``: sent inside the daemon, or no proxy to say. Receivers
  are the open peers whose mask matches the class, from the last peers
  snapshot, at most :data:`MAX_RECEIVERS`.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from smdbus.web._classes import ClassTable, class_label
from smdbus.web._payload import render
from smdbus.web._ring import EventRing
from smdbus.web._timeline import BootTimeline

MAX_RECEIVERS = 32
SENDER = "bus"


class BusView:
    """The state of the web view (sans I/O)."""

    def __init__(
        self,
        *,
        ring: int,
        max_rate: int,
        clock: Callable[[], float],
        wall_offset: float = 0.0,
        initial_state: str = "CONTEXT_CREATED",
        max_classes: int = 256,
    ) -> None:
        self.clock = clock
        self.wall_offset = wall_offset
        now = clock()
        self.ring: EventRing[str] = EventRing(ring)
        self.classes = ClassTable(max_classes)
        self.timeline = BootTimeline(initial_state, now, wall_offset)
        self.max_rate = max_rate
        self._now = now
        self._budget = float(max_rate)
        self._new: deque[tuple[int, str]] = deque(maxlen=ring)
        self.peers: list[dict[str, Any]] = []
        self._listening: list[tuple[int, int]] = []  # (peer id, mask) of open peers
        self.shown = 0
        self.skipped = 0
        self.changed = True
        """Something a snapshot shows (the state, the timeline) changed since the last one."""

    # -- the hot path --------------------------------------------------------

    def message_from(self, cls: int, timestamp_us: int, payload: bytes, sender: Any) -> None:
        """:meth:`message` with the proxy's sender (a connection's dict, or ``"local"``)."""
        origin = f"#{sender['id']}" if isinstance(sender, dict) else SENDER
        self.message(cls, timestamp_us, payload, origin)

    def message(self, cls: int, timestamp_us: int, payload: bytes, origin: str = SENDER) -> None:
        self.classes.seen(cls, timestamp_us, payload, self._now)
        if self._budget < 1.0:
            self.skipped += 1
            return
        self._budget -= 1.0
        self.shown += 1
        ident = self.ring.last_id + 1
        record = {
            "id": ident,
            "timestamp_us": timestamp_us,
            "wall": round(timestamp_us / 1e6 + self.wall_offset, 6),
            "cls": cls,
            "class": class_label(cls),
            "from": origin,
            "to": [p for p, mask in self._listening if mask & cls][:MAX_RECEIVERS],
            **render(payload),
        }
        text = json.dumps(record, separators=(",", ":"))
        self.ring.append(text)
        self._new.append((ident, text))

    def advance(self, now: float) -> None:
        """Time has moved on (the adapter calls this every 100 ms): refill the sampler."""
        elapsed = max(0.0, now - self._now)
        self._now = now
        self._budget = min(float(self.max_rate), self._budget + elapsed * self.max_rate)

    def take_new(self) -> list[tuple[int, str]]:
        """The messages passed on since the last call (ids and JSON), oldest first."""
        out = list(self._new)
        self._new.clear()
        return out

    # -- the boot ----------------------------------------------------------------

    def attempt(self, current: str, target: str, holder: str | None) -> None:
        self.timeline.attempt(current, target, self.clock(), holder)

    def entered(self, state: str) -> None:
        self.timeline.entered(state, self.clock())
        self.changed = True

    # -- periodic ------------------------------------------------------------------

    def tick(self) -> None:
        """Once a second: the class rates move on."""
        self.classes.tick()

    def set_peers(self, peers: Iterable[dict[str, Any]]) -> None:
        """The latest peers snapshot (dicts as :meth:`Proxy.peers` gives, plus ``command``)."""
        self.peers = list(peers)
        self._listening = [
            (int(p["id"]), int(p["mask"])) for p in self.peers if p.get("state") != "closed"
        ]

    # -- what the API and the page read -------------------------------------------

    def class_rows(self) -> list[dict[str, Any]]:
        return self.classes.rows(self.clock(), render)

    def messages(self, after: int, limit: int) -> dict[str, Any]:
        """``/api/messages``: JSON-ready, the records as raw JSON text (see :func:`join`)."""
        held, missed = self.ring.since(after, limit)
        return {"last_id": self.ring.last_id, "missed": missed, "records": [t for _, t in held]}

    def boot(self, holder: str | None) -> dict[str, Any]:
        return self.timeline.snapshot(self.clock(), holder)

    def counters(self) -> dict[str, int]:
        return {"seen": self.classes.total, "shown": self.shown, "skipped": self.skipped}
