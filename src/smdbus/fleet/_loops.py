"""Loop prevention: what came down is never sent back up.

Why this exists: the bridge sends a downlinked command on the device's bus
through its own proxy connection. The proxy delivers a message to every
connection whose mask matches, the sender included (lws_smd's rule), and
other bridges or peers may repeat it; if the class is also one that goes
up, the bridge would publish the command back to the broker, where another
rule could send it down again.

The rule: every message the bridge puts on the bus is remembered by
``(class, body)`` for ``ttl`` seconds. A message from the bus matching a
remembered one uses the memory up and does not go up (counted). Memories
are bounded in number (the downlink's rate limit bounds them too); at the
bound the oldest is forgotten first. A byte-identical message another peer
sends while our copy is on its way is taken for ours: one of the two does
not go up, which is the price of not tagging bodies that belong to lws.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

Key = tuple[int, bytes]


class DownlinkMemory:
    __slots__ = ("_clock", "_order", "_seen", "max_entries", "suppressed", "ttl")

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self._clock = clock
        self._seen: dict[Key, deque[float]] = {}  # key -> expiries, oldest first
        self._order: deque[tuple[float, Key]] = deque()  # every memory, oldest first
        self.suppressed = 0

    def remember(self, cls: int, body: bytes) -> None:
        now = self._clock()
        self._expire(now)
        while len(self._order) >= self.max_entries:
            self._forget(*self._order.popleft())
        key = (cls, body)
        expiry = now + self.ttl
        self._seen.setdefault(key, deque()).append(expiry)
        self._order.append((expiry, key))

    def is_ours(self, cls: int, body: bytes) -> bool:
        """True (and the memory is used up) when this bus message is one we sent down."""
        if not self._seen:
            return False
        self._expire(self._clock())
        key = (cls, body)
        expiries = self._seen.get(key)
        if not expiries:
            return False
        expiries.popleft()
        if not expiries:
            del self._seen[key]
        self.suppressed += 1
        return True

    def __len__(self) -> int:
        return sum(len(d) for d in self._seen.values())

    def _forget(self, expiry: float, key: Key) -> None:
        # an entry already used up leaves a stale order entry: only remove what is due
        expiries = self._seen.get(key)
        if expiries and expiries[0] <= expiry:
            expiries.popleft()
            if not expiries:
                del self._seen[key]

    def _expire(self, now: float) -> None:
        order = self._order
        while order and order[0][0] <= now:
            self._forget(*order.popleft())
