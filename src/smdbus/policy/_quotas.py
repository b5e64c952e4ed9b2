"""What one uid may use of the bus: connections, queued bytes, publish rate, queries.

Rules:

- Limits are per *uid*, across all its connections: a user who opens more
  connections gets no more of anything. Root and the daemon's own uid have
  limits of their own (:attr:`Quotas.root`, :attr:`Quotas.daemon`), set
  higher by default: the system's services must not be starved by users.
- Publishing past the rate is *held*, never dropped: :meth:`Ledger.publish`
  grants what the uid's token bucket holds and, when it holds nothing, says
  how long until the next token, so the proxy stops reading that publisher
  (backpressure, as for a full queue) and resumes it then.
- The other limits refuse: a connection over ``connections``, a control
  query over the query rate. ``outbound`` is the bytes queued towards all
  the uid's connections together; past it the proxy disconnects the
  connection that pushed it over (as ``max_buffer`` does for one).
- Every trip is counted per uid and per limit (:attr:`Ledger.trips`); the
  caller logs it with the pid, uid and comm that tripped it.
- A uid's record lives while it holds a connection, so the table is bounded
  by the connections (each bucket refills from full when it comes back:
  reconnecting costs a connection, which is itself limited).

Pure: the clock is passed in on every call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_RATE = 1_000_000.0
"""Largest rate (per second) a limit may say."""


@dataclass(frozen=True)
class Limits:
    """One uid's allowance. Rates per second; ``burst`` is what may go at once."""

    connections: int = 128
    outbound: int = 16 * 1024 * 1024
    publish_rate: float = 5000.0
    publish_burst: int = 1000
    control_rate: float = 10.0
    control_burst: int = 20


PRIVILEGED_LIMITS = Limits(
    connections=65536,
    outbound=64 * 1024 * 1024,
    publish_rate=MAX_RATE,
    publish_burst=100_000,
    control_rate=100.0,
    control_burst=200,
)
"""Root's and the daemon's defaults: far above a user's, still bounded."""


@dataclass(frozen=True)
class Quotas:
    """Limits for every uid: root, the daemon's uid, and everybody else."""

    default: Limits = field(default_factory=Limits)
    root: Limits = PRIVILEGED_LIMITS
    daemon: Limits = PRIVILEGED_LIMITS

    def for_uid(self, uid: int | None, daemon_uid: int) -> Limits:
        if uid == 0:
            return self.root
        if uid == daemon_uid:
            return self.daemon
        return self.default


class Bucket:
    """``rate`` tokens a second up to ``burst``; takes several at once, says when the next comes."""

    __slots__ = ("_last", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self._last = now

    def _refill(self, now: float) -> None:
        elapsed = now - self._last
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self._last = max(self._last, now)

    def take(self, now: float, n: int = 1) -> int:
        """Spend up to ``n`` whole tokens; returns how many were spent."""
        self._refill(now)
        granted = min(n, int(self.tokens))
        self.tokens -= granted
        return granted

    def available(self, now: float) -> int:
        """Whole tokens there now (nothing spent: see :meth:`spend`)."""
        self._refill(now)
        return int(self.tokens)

    def spend(self, n: int) -> None:
        """Spend ``n`` tokens that :meth:`available` said were there."""
        self.tokens -= n

    def wait(self, now: float) -> float:
        """Seconds until one token is there (0 when one is)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class Usage:
    """One uid's use and buckets (the proxy keeps a reference for its hot path)."""

    __slots__ = ("connections", "control", "limits", "outbound", "publish")

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.connections = 0
        self.outbound = 0
        self.publish = Bucket(limits.publish_rate, limits.publish_burst, now)
        self.control = Bucket(limits.control_rate, limits.control_burst, now)


class Ledger:
    """Per-uid usage against :class:`Quotas`."""

    def __init__(self, quotas: Quotas, daemon_uid: int) -> None:
        self.quotas = quotas
        self.daemon_uid = daemon_uid
        self.trips: Counter[tuple[int | None, str]] = Counter()
        self._by_uid: dict[int | None, Usage] = {}

    def limits(self, uid: int | None) -> Limits:
        return self.quotas.for_uid(uid, self.daemon_uid)

    def _trip(self, uid: int | None, limit: str) -> None:
        self.trips[(uid, limit)] += 1

    def connect(self, uid: int | None, now: float) -> str | None:
        """Count a new connection of ``uid``; or, over the limit, why not (nothing counted)."""
        usage = self._by_uid.get(uid)
        if usage is None:
            usage = self._by_uid[uid] = Usage(self.limits(uid), now)
        if usage.connections >= usage.limits.connections:
            self._trip(uid, "connections")
            if usage.connections == 0:  # pragma: no cover - the checker refuses a limit of 0
                del self._by_uid[uid]
            held, limit = usage.connections, usage.limits.connections
            return f"uid {uid} holds {held} connections (quota {limit})"
        usage.connections += 1
        return None

    def disconnect(self, uid: int | None) -> None:
        usage = self._by_uid.get(uid)
        if usage is None:
            return
        usage.connections -= 1
        if usage.connections <= 0:
            del self._by_uid[uid]

    def connections(self, uid: int | None) -> int:
        usage = self._by_uid.get(uid)
        return usage.connections if usage is not None else 0

    def publish(self, uid: int | None, n: int, now: float) -> tuple[int, float]:
        """Messages of the ``n`` wanted that ``uid`` may publish now, and, if none, the wait."""
        usage = self._by_uid.get(uid)
        if usage is None:
            return n, 0.0
        granted = usage.publish.take(now, n)
        if granted:
            return granted, 0.0
        self._trip(uid, "publish_rate")
        return 0, usage.publish.wait(now)

    def query(self, uid: int | None, now: float) -> str | None:
        """A control query of ``uid``: None if it may go, else why not."""
        usage = self._by_uid.get(uid)
        if usage is None or usage.control.take(now):
            return None
        self._trip(uid, "control_rate")
        lim = usage.limits
        return (
            f"uid {uid} is over {lim.control_rate:g} queries a second "
            f"(bursts of {lim.control_burst})"
        )

    def queue(self, uid: int | None, delta: int) -> str | None:
        """Bytes queued towards ``uid`` change by ``delta``; past the limit, why (counted)."""
        usage = self._by_uid.get(uid)
        if usage is None:
            return None
        before = usage.outbound
        usage.outbound = max(0, before + delta)
        if delta > 0 and usage.outbound > usage.limits.outbound:
            if before <= usage.limits.outbound:  # a trip is the crossing, not every write past it
                self._trip(uid, "outbound")
            return (
                f"uid {uid} has {usage.outbound} bytes queued across its connections "
                f"(quota {usage.limits.outbound})"
            )
        return None

    def outbound(self, uid: int | None) -> int:
        usage = self._by_uid.get(uid)
        return usage.outbound if usage is not None else 0

    def usage(self, uid: int | None) -> Usage | None:
        """The record of a uid that holds a connection."""
        return self._by_uid.get(uid)

    def reconfigure(self, quotas: Quotas, now: float) -> None:
        """New limits (a reload): counts are kept, buckets start afresh at the new sizes.

        The records are changed in place: whoever holds one sees the new limits.
        """
        self.quotas = quotas
        for uid, usage in self._by_uid.items():
            limits = usage.limits = self.limits(uid)
            usage.publish = Bucket(limits.publish_rate, limits.publish_burst, now)
            usage.control = Bucket(limits.control_rate, limits.control_burst, now)
