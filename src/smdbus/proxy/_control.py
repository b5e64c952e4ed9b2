"""The control stream (``_smdbus_ctl``): queries from tools, answered without freezing the loop.

Rules:

- A ``peers`` reply is made in *slices*: at most :data:`PEERS_PER_PASS`
  records per loop pass across all queries (15-40 µs each), the queries
  served in turn; the loop runs publishers, timers and everything else
  between slices. It used to serialize every peer in one go: with 1 000
  connections, 50 queries held the loop for 2.95 s.
- The asker's side is respected: a query whose asker has gone (closed, or a
  write to it failed) is abandoned at its next slice (``control_abandoned``);
  one whose asker is behind (its buffer over high water) waits until it
  reads, and one that stops reading is disconnected by the stall rules like
  any other client.
- One query at a time per connection: until a ``peers`` reply is complete
  the proxy reads nothing more from that connection (what the tool sent
  waits in the socket, as a held publisher's messages do).
- Queries are rate-limited per connection by a token bucket
  (``control_rate`` a second, bursts of ``control_burst``); one over the
  limit is answered with an error reply and counted (``control_refused``);
  past :data:`MAX_REFUSED` refusals the connection is closed.
- Queries are also limited per *uid*, across all its connections (the
  policy's ``control_rate`` quota, :mod:`smdbus.policy`): opening more
  connections buys no more queries.
- ``stats`` is O(1) and answered at once (within the rate limit).
- ``describe`` (see :mod:`smdbus.wire._control`) labels the asker's own
  ``_lws_smd`` connections, found by the SO_PEERCRED pid and uid both
  connections showed at accept (a walk of the open connections, as a
  ``peers`` slice is). A label is at most ``MAX_LABEL`` characters, stored as
  sent and escaped by whoever shows it; each described connection takes
  :data:`DESCRIBE_BURST` changes at once and :data:`DESCRIBE_RATE` a second
  (a change over it is refused like a query over the rate); the label goes
  with the connection, into the closed ones' record.

A ``peers`` reply is a live view, not a snapshot: open connections are
walked in id order (a cursor on the id, so a query holds no copy of the
table), then the recently closed ones. A connection that closes while the
reply is being made may appear twice (open, then closed); one that opens
meanwhile appears once it is reached.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from smdbus.classes import ALL_CLASSES
from smdbus.policy import Bucket
from smdbus.proxy._fanout import rx_frame
from smdbus.proxy._owner import Owner
from smdbus.wire import MAX_LABEL

if TYPE_CHECKING:
    from collections.abc import Iterable

    from smdbus.proxy._access import Access
    from smdbus.proxy._connection import Connection
    from smdbus.proxy._interest import InterestWatch
    from smdbus.proxy._monitor import Monitors
    from smdbus.proxy._peerinfo import PeerInfo
    from smdbus.proxy._settings import ProxySettings


class Host(Owner, Protocol):
    """What the control stream uses of its proxy (a protocol: the proxy imports this module)."""

    @property
    def settings(self) -> ProxySettings: ...
    @property
    def access(self) -> Access: ...
    @property
    def interest(self) -> InterestWatch: ...
    @property
    def monitors(self) -> Monitors: ...

    def stats(self) -> dict[str, Any]: ...
    def connections(self) -> Iterable[Connection]: ...
    def open_peers(self, after: int, limit: int) -> list[PeerInfo]: ...
    def closed_peers(self) -> list[PeerInfo]: ...


PEERS_PER_PASS = 32
"""Peer records made per loop pass, across all queries (0.5-1.3 ms of the loop here)."""
MAX_REFUSED = 64
"""Queries refused on one connection before it is closed (a flood, not a tool)."""
DESCRIBE_RATE = 2.0
"""Label changes a second for one described connection (a link state, not a ticker)."""
DESCRIBE_BURST = 10
"""Label changes one described connection takes at once before ``DESCRIBE_RATE`` applies."""


class _PeersQuery:
    """One ``peers`` reply in progress: where it is, and what it has sent."""

    __slots__ = ("closed", "conn", "count", "cursor", "done", "history")

    def __init__(self, conn: Connection, closed: bool) -> None:
        self.conn = conn
        self.closed = closed
        self.cursor = 0  # the id of the last open connection sent
        self.count = 0
        self.history: list[PeerInfo] | None = None  # closed ones left to send, once reached
        self.done = False


class Control:
    """The control stream's queries for one proxy: rate limits, and ``peers`` in slices."""

    def __init__(self, proxy: Host) -> None:
        self.proxy = proxy
        self._buckets: dict[Connection, Bucket] = {}
        self._refused: dict[Connection, int] = {}
        self._queries: deque[_PeersQuery] = deque()  # runnable or waiting for the asker
        self.labels: dict[Connection, str] = {}  # what a connection said of itself (describe)
        self._label_buckets: dict[Connection, Bucket] = {}
        self._scheduled = False

    @property
    def active(self) -> int:
        """``peers`` replies in progress."""
        return len(self._queries)

    # -- a query arrives -----------------------------------------------------

    def query(self, conn: Connection, payload: bytes) -> None:
        """Answer (or start answering) one query read from ``conn``."""
        proxy = self.proxy
        settings = proxy.settings
        bucket = self._buckets.get(conn)
        now = proxy.clock()
        if bucket is None:
            bucket = self._buckets[conn] = Bucket(
                settings.control_rate, settings.control_burst, now
            )
        if not bucket.take(now):
            self._refuse(
                conn,
                f"rate limited: over {settings.control_rate:g} queries a second "
                f"(bursts of {settings.control_burst}) on this connection",
            )
            return
        over = proxy.access.query(conn)  # and per uid, across its connections (smdbus.policy)
        if over is not None:
            self._refuse(conn, f"rate limited: {over}")
            return
        proxy.count("control_queries")
        try:
            query = json.loads(payload)
            op = query["op"]
        except (ValueError, KeyError, TypeError):
            self._reply(conn, {"error": f"not a query: {payload[:80]!r}", "end": True})
            return
        if op == "peers":
            self._queries.append(_PeersQuery(conn, bool(query.get("closed", True))))
            conn.wait_for_reply()
            self._schedule()
        elif op == "stats":
            self._reply(conn, {"end": True, "stats": proxy.stats()})
        elif op == "watch":  # the union mask, now and on change (smdbus.proxy._interest)
            proxy.interest.add(conn)
        elif op == "describe":
            self._describe(conn, query, now)
        elif op == "monitor":  # each message with its sender (smdbus.proxy._monitor)
            mask = query.get("mask", ALL_CLASSES)
            if type(mask) is not int or not 0 < mask < 1 << 64:
                self._reply(conn, {"error": f"bad mask {mask!r}", "end": True})
                return
            proxy.monitors.watch(conn, mask)
        else:
            self._reply(
                conn,
                {
                    "error": f"unknown op {op!r} (known: describe, monitor, peers, stats, watch)",
                    "end": True,
                },
            )

    def _describe(self, conn: Connection, query: dict[str, Any], now: float) -> None:
        """Label the asker's own ``_lws_smd`` connections (or the one it names)."""
        label = query.get("label")
        ident = query.get("id")
        if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL):
            self._reply(
                conn,
                {
                    "error": f"label must be a string of at most {MAX_LABEL} characters or null",
                    "end": True,
                },
            )
            return
        if ident is not None and type(ident) is not int:
            self._reply(conn, {"error": "id must be a connection number", "end": True})
            return
        if conn.pid is None:
            self._reply(conn, {"error": "the asker's pid is unknown (no SO_PEERCRED)", "end": True})
            return
        targets = [
            c
            for c in self.proxy.connections()
            if c.state == "smd"
            and c.pid == conn.pid
            and c.uid == conn.uid
            and (ident is None or c.id == ident)
        ]
        if ident is not None and not targets:
            self._reply(
                conn,
                {"error": f"connection {ident} is not an open stream of this process", "end": True},
            )
            return
        described: list[int] = []
        limited: list[int] = []
        for c in targets:
            bucket = self._label_buckets.get(c)
            if bucket is None:
                bucket = self._label_buckets[c] = Bucket(DESCRIBE_RATE, DESCRIBE_BURST, now)
            if self.labels.get(c) == label or bucket.take(now):
                if label is None:
                    self.labels.pop(c, None)
                else:
                    self.labels[c] = label
                described.append(c.id)
            else:
                limited.append(c.id)
        if limited:
            self._refuse(
                conn,
                f"rate limited: connection(s) {limited} changed label over "
                f"{DESCRIBE_RATE:g} a second (bursts of {DESCRIBE_BURST})",
            )
            return
        self._reply(conn, {"described": described, "end": True})

    def _refuse(self, conn: Connection, why: str) -> None:
        proxy = self.proxy
        proxy.count("control_refused")
        refused = self._refused[conn] = self._refused.get(conn, 0) + 1
        self._reply(conn, {"error": why, "refused": refused, "end": True})
        if refused >= MAX_REFUSED:
            conn.fail(f"query flood: {refused} queries refused ({why})")

    def forget(self, conn: Connection) -> None:
        """``conn`` has closed: its limits go, and its query if it had one (abandoned)."""
        self._buckets.pop(conn, None)
        self._refused.pop(conn, None)
        self.labels.pop(conn, None)
        self._label_buckets.pop(conn, None)
        for q in [q for q in self._queries if q.conn is conn]:
            self._queries.remove(q)
            self.proxy.count("control_abandoned")

    def wake(self, conn: Connection) -> None:
        """``conn``'s buffer went under high water: a query waiting for it may go on."""
        if any(q.conn is conn for q in self._queries):
            self._schedule()

    # -- making replies, a slice per loop pass ------------------------------------

    def _schedule(self) -> None:
        loop = self.proxy.loop
        if not self._scheduled and loop is not None:
            self._scheduled = True
            loop.call_soon(self._run)

    def _run(self) -> None:
        """One loop pass's worth: up to PEERS_PER_PASS records, the queries in turn."""
        self._scheduled = False
        budget = PEERS_PER_PASS
        queries = self._queries
        for _ in range(len(queries)):
            if budget <= 0 or not queries:
                break
            q = queries[0]
            if q.conn.congested:  # behind: wait until it reads (wake); the others go on
                queries.rotate(-1)
                continue
            budget -= self._slice(q, budget)
            if queries and queries[0] is q:  # not dropped meanwhile (its asker gone)
                queries.popleft()
                if q.done:
                    q.conn.resume()  # the next query it sent may be read now
                else:
                    queries.append(q)
        if any(not q.conn.congested for q in self._queries):
            self._schedule()

    def _slice(self, q: _PeersQuery, budget: int) -> int:
        """Send up to ``budget`` records of ``q`` with one write; returns how many were made."""
        proxy = self.proxy
        records: list[PeerInfo] = []
        if q.history is None:
            records = proxy.open_peers(q.cursor, budget)
            if records:
                q.cursor = records[-1].id
            if len(records) < budget:
                q.history = proxy.closed_peers() if q.closed else []
        if q.history:
            take = budget - len(records)
            records += q.history[:take]
            del q.history[:take]
        now_us = time.monotonic_ns() // 1000
        frames = [rx_frame(0, now_us, _encode({"peer": info.to_json()})) for info in records]
        q.count += len(records)
        if q.history is not None and not q.history and len(records) < budget:
            end = {"end": True, "count": q.count, "stats": proxy.stats()}
            frames.append(rx_frame(0, now_us, _encode(end)))
            q.done = True
        proxy.count("control_records", len(records))
        if frames:
            q.conn.deliver(b"".join(frames), len(frames))
        return len(frames)

    def _reply(self, conn: Connection, obj: dict[str, Any]) -> None:
        conn.on_message(0, time.monotonic_ns() // 1000, _encode(obj))


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
