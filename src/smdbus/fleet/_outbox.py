"""The on-disk outbox: every message going up lives here until the broker acknowledges it.

Theory of operation. One sqlite3 database (stdlib) in WAL mode holds the
messages not yet acknowledged, the per-device sequence counter, the drop
counters not yet reported, and the bridge's last status (for
``smd bridge --status``, which reads the same file from another process).

Rules
-----
- A message gets its sequence number when it enters; numbers are never
  reused, across restarts too (``last_seq`` is kept with the batch that used
  it), so a backend tells a gap from a duplicate.
- Writes are grouped: :meth:`add` and :meth:`ack` change the open
  transaction, :meth:`commit` ends it (the adapter commits once per loop
  pass). WAL with ``synchronous=NORMAL``: a committed batch survives kill -9
  of the process (the OS has it); a power cut may lose the last batches.
- Bounded three ways: ``max_messages``, ``max_bytes`` (body and topic) and
  ``max_age`` seconds (wall clock, which survives a reboot). At a bound the
  *oldest* messages go first (newer telemetry and state are worth more); a
  message too old is dropped before it is sent. Every drop is counted by
  reason with the range of sequence numbers it left out, kept on disk
  until a drop report was acknowledged by the broker (:meth:`drop_report`,
  :meth:`drops_reported`).
- Acknowledging a message that is no longer here (it was dropped while in
  flight) is harmless.
- One writer: an outbox holds an exclusive ``flock`` on ``<path>.lock`` for
  its lifetime (the kernel drops it when the process dies, ``kill -9``
  included); a second bridge on the same file is refused with
  :class:`OutboxBusy` instead of sharing sequence numbers. Readers
  (:func:`read_status`) do not need it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, qos INTEGER NOT NULL,
    retain INTEGER NOT NULL, body BLOB NOT NULL, time REAL NOT NULL, size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
DROP_REASONS = ("count", "bytes", "age")


@dataclass(frozen=True)
class Row:
    seq: int
    topic: str
    qos: int
    retain: bool
    body: bytes
    time: float
    """Wall-clock seconds when the message entered the outbox."""


@dataclass(frozen=True)
class DropReport:
    """What was dropped since the last acknowledged report."""

    by_count: int
    by_bytes: int
    by_age: int
    first_seq: int
    last_seq: int

    @property
    def total(self) -> int:
        return self.by_count + self.by_bytes + self.by_age

    def to_json(self, origin: str) -> bytes:
        return json.dumps(
            {
                "origin": origin,
                "dropped": self.total,
                "reasons": {"count": self.by_count, "bytes": self.by_bytes, "age": self.by_age},
                "first_seq": self.first_seq,
                "last_seq": self.last_seq,
            },
            separators=(",", ":"),
        ).encode()


class OutboxBusy(RuntimeError):
    """Another process has this outbox open for writing."""


def _lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutboxBusy(f"{path}: another bridge has this outbox open") from None
    return fd


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=5.0, isolation_level="DEFERRED")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        db.commit()
    return db


class Outbox:
    """Messages waiting for the broker's acknowledgement (one writer: the bridge)."""

    def __init__(
        self,
        path: Path,
        *,
        max_messages: int,
        max_bytes: int,
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_messages, self.max_bytes, self.max_age = max_messages, max_bytes, max_age
        self._clock = clock
        self._lock_fd = _lock(path)
        self._db = _connect(path)
        meta = self._meta()
        count, nbytes, top = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(MAX(seq), 0) FROM messages"
        ).fetchone()
        self.count: int = count
        self.nbytes: int = nbytes
        self.last_seq: int = max(top, int(meta.get("last_seq", 0)))
        self._drops: dict[str, int] = {r: int(meta.get(f"dropped_{r}", 0)) for r in DROP_REASONS}
        self._drop_range = (int(meta.get("drop_first", 0)), int(meta.get("drop_last", 0)))
        self.dropped_total = int(meta.get("dropped_total", 0))
        self._dirty_drops = False
        self._saved_seq = self.last_seq

    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _set(self, key: str, value: object) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, str(value)),
        )

    # -- in ----------------------------------------------------------------

    def add(self, topic: str, qos: int, retain: bool, body: bytes) -> int:
        """Store one message (in the open transaction); its sequence number."""
        size = len(body) + len(topic)
        self.last_seq += 1
        seq = self.last_seq
        if size > self.max_bytes:
            self._dropped("bytes", seq, seq)
            return seq
        while self.count and (
            self.count >= self.max_messages or self.nbytes + size > self.max_bytes
        ):
            self._evict("count" if self.count >= self.max_messages else "bytes")
        self._db.execute(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, topic, qos, int(retain), body, self._clock(), size),
        )
        self.count += 1
        self.nbytes += size
        return seq

    def _evict(self, reason: str) -> None:
        seq, size = self._db.execute(
            "SELECT seq, size FROM messages ORDER BY seq LIMIT 1"
        ).fetchone()
        self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
        self.count -= 1
        self.nbytes -= size
        self._dropped(reason, seq, seq)

    def _dropped(self, reason: str, first: int, last: int, n: int = 1) -> None:
        self._drops[reason] += n
        self.dropped_total += n
        lo, hi = self._drop_range
        self._drop_range = (min(lo, first) if lo else first, max(hi, last))
        self._dirty_drops = True

    def expire(self) -> int:
        """Drop what is older than ``max_age``; how many went."""
        cutoff = self._clock() - self.max_age
        n, nbytes, lo, hi = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(seq), MAX(seq) FROM messages "
            "WHERE time < ?",
            (cutoff,),
        ).fetchone()
        if n:
            self._db.execute("DELETE FROM messages WHERE time < ?", (cutoff,))
            self.count -= n
            self.nbytes -= nbytes
            self._dropped("age", lo, hi, n)
        return int(n)

    # -- out ---------------------------------------------------------------

    def pending(self, after_seq: int, limit: int) -> list[Row]:
        """Up to ``limit`` messages with a sequence number above ``after_seq``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, topic, qos, retain, body, time FROM messages WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [Row(s, t, q, bool(r), b, w) for s, t, q, r, b, w in rows]

    def ack(self, seq: int) -> None:
        """The broker has the message: forget it (in the open transaction)."""
        row = self._db.execute(
            "DELETE FROM messages WHERE seq = ? RETURNING size", (seq,)
        ).fetchone()
        if row is not None:
            self.count -= 1
            self.nbytes -= row[0]

    def commit(self) -> None:
        if self.last_seq != self._saved_seq:
            self._set("last_seq", self.last_seq)
            self._saved_seq = self.last_seq
        if self._dirty_drops:
            for r in DROP_REASONS:
                self._set(f"dropped_{r}", self._drops[r])
            self._set("drop_first", self._drop_range[0])
            self._set("drop_last", self._drop_range[1])
            self._set("dropped_total", self.dropped_total)
            self._dirty_drops = False
        self._db.commit()

    # -- drops -------------------------------------------------------------

    def drop_report(self) -> DropReport | None:
        """What was dropped and not yet reported (None: nothing)."""
        if not any(self._drops.values()):
            return None
        d = self._drops
        return DropReport(d["count"], d["bytes"], d["age"], *self._drop_range)

    def drops_reported(self, report: DropReport) -> None:
        """The broker acknowledged ``report``: count only what was dropped since."""
        for r in DROP_REASONS:
            self._drops[r] -= getattr(report, f"by_{r}")
        if not any(self._drops.values()):
            self._drop_range = (0, 0)
        else:
            self._drop_range = (report.last_seq + 1, self._drop_range[1])
        self._dirty_drops = True
        self.commit()

    # -- status ------------------------------------------------------------

    def save_status(self, status: dict[str, Any]) -> None:
        self._set("status", json.dumps(status, separators=(",", ":")))
        self.commit()

    def close(self) -> None:
        self.commit()
        self._db.close()
        os.close(self._lock_fd)


def read_status(path: Path) -> dict[str, Any]:
    """The status a running (or the last) bridge saved, with the outbox's contents now."""
    if not path.exists():
        raise FileNotFoundError(f"no bridge outbox at {path}")
    db = _connect(path, readonly=True)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        count, nbytes, oldest = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(time) FROM messages"
        ).fetchone()
    except sqlite3.OperationalError:  # created a moment ago, the tables not yet
        meta, count, nbytes, oldest = {"status": '{"state":"starting"}'}, 0, 0, None
    finally:
        db.close()
    status: dict[str, Any] = json.loads(meta.get("status", "{}"))
    status["outbox"] = {
        "path": str(path),
        "messages": count,
        "bytes": nbytes,
        "oldest_age_s": None if oldest is None else round(time.time() - oldest, 3),
        "last_seq": int(meta.get("last_seq", 0)),
        "dropped_total": int(meta.get("dropped_total", 0)),
        "dropped_unreported": sum(int(meta.get(f"dropped_{r}", 0)) for r in DROP_REASONS),
    }
    return status
