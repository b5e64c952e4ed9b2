"""Recognising our own messages when the proxy sends them back.

Why this exists: a proxy delivers a message to every connection whose mask
matches, *the sender included* (the C test relies on it). A bridge forwards
a local message to the proxy after the local bus has already delivered it
locally; when the proxy echoes it back, forwarding it into the local bus
again would deliver it twice. So the bridge remembers what it sent.

The rule: every message the bridge wrote to the proxy whose class is in the
connection's mask is *expected back*, keyed by ``(class, payload)``. The first
message from the proxy with an expected key is taken as the echo and is not
forwarded; the expectation is used up.

The same structure confirms plain sends (see ``Client.drain(confirm=True)``):
there the echo is still delivered, and an expectation that expires or is
cleared is a message that was not confirmed (:attr:`EchoFilter.expired`).

Expectations expire after ``ttl``
(an echo the proxy dropped must not hide a later message for ever) and are
bounded in number; a reconnect clears them, because echoes of the old
connection will never come.

If another peer sends a byte-identical message of the same class while our
echo is on its way, one of the two is taken as the echo: local participants
still see the content exactly as many times as it was sent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from smdbus.client._outbox import EchoKey


class EchoFilter:
    """Expected echoes: for each key, the times it was written (injected clock, µs)."""

    __slots__ = (
        "_clock",
        "_order",
        "_pending",
        "expired",
        "max_pending",
        "suppressed",
        "ttl_us",
    )

    def __init__(self, ttl_us: int, max_pending: int, clock: Callable[[], int]) -> None:
        self.ttl_us = ttl_us
        self.max_pending = max_pending
        self._clock = clock
        # key -> write times, oldest first; an echo uses up the oldest
        self._pending: dict[EchoKey, deque[int]] = {}
        # every expectation in write order, for expiry (consumed ones are skipped)
        self._order: deque[tuple[int, EchoKey]] = deque()
        self.suppressed = 0
        self.expired = 0
        """Expectations given up (expired, over the bound, or cleared) before their echo came."""

    def __bool__(self) -> bool:
        """Whether any expectation is pending (cheap: the hot path asks per pass)."""
        return bool(self._pending)

    def __len__(self) -> int:
        return sum(len(times) for times in self._pending.values())

    def expect(self, key: EchoKey) -> None:
        """We wrote ``key`` to the proxy: its echo is on the way."""
        now = self._clock()
        times = self._pending.get(key)
        if times is None:
            times = self._pending[key] = deque()
        times.append(now)
        self._order.append((now, key))
        if len(self._order) > self.max_pending:
            self._forget_oldest()

    def is_echo(self, key: EchoKey) -> bool:
        """True (and the expectation used up) when ``key`` is an echo of ours."""
        pending = self._pending
        if not pending:
            if self._order:
                self._order.clear()  # only used-up expectations are left
            return False
        self._expire()
        times = pending.get(key)
        if times is None:
            return False
        times.popleft()
        if not times:
            del pending[key]
        self.suppressed += 1
        return True

    def clear(self) -> int:
        """Give every expectation up (the connection is gone); how many there were."""
        dropped = len(self)
        self.expired += dropped
        self._pending.clear()
        self._order.clear()
        return dropped

    def expire(self) -> None:
        """Give up the expectations older than ``ttl`` now."""
        if self._pending:
            self._expire()

    def _expire(self) -> None:
        order = self._order
        horizon = self._clock() - self.ttl_us
        while order and order[0][0] < horizon:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        t, key = self._order.popleft()
        times = self._pending.get(key)
        # Echoes use up a key's oldest time first, so this expectation is still
        # pending exactly when the key's oldest time is (at least as old as) it.
        if times and times[0] <= t:
            self.expired += 1
            times.popleft()
            if not times:
                del self._pending[key]
