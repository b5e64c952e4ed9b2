"""The class table: per class, how many, how fast, and the last payload with its age.

Rules
-----
- :meth:`ClassTable.seen` is on the bus's hot path (every message, however
  many a second): it counts and keeps a reference to the payload, nothing
  more. Decoding, rates and ages are worked out when someone looks.
- Rates come from :meth:`ClassTable.tick`, called once a second by the
  adapter with the injected clock: the count since the last tick becomes
  one bar of the sparkline (the last :data:`HISTORY` seconds).
- Bounded: a peer picks class values (64 bits on the wire), so at most
  ``max_rows`` classes get a row of their own; later ones are counted
  together in the row :data:`OTHER` (their payloads are kept there too).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from smdbus.classes import class_names

HISTORY = 60
"""Seconds of rate history kept per class (the sparkline)."""
OTHER = -1
"""The row counting the classes past ``max_rows``."""


class _Row:
    __slots__ = ("count", "history", "last", "last_at", "last_us", "mark")

    def __init__(self) -> None:
        self.count = 0
        self.mark = 0
        self.last = b""
        self.last_us = 0
        self.last_at = 0.0
        self.history: deque[int] = deque(maxlen=HISTORY)


def class_label(cls: int) -> str:
    """``INTERACTION``, ``NETWORK|USER_0``, ``other`` for :data:`OTHER`, or hex."""
    if cls == OTHER:
        return "other"
    names = class_names(cls)
    return "|".join(names) if names else f"{cls:#x}"


class ClassTable:
    """Counts, rates and last payloads, per class value."""

    def __init__(self, max_rows: int = 256) -> None:
        self.max_rows = max_rows
        self._rows: dict[int, _Row] = {}
        self.total = 0

    def seen(self, cls: int, timestamp_us: int, payload: bytes, now: float) -> None:
        row = self._rows.get(cls)
        if row is None:
            if len(self._rows) >= self.max_rows:
                cls = OTHER
                row = self._rows.get(OTHER)
            if row is None:
                row = self._rows[cls] = _Row()
        row.count += 1
        row.last = payload
        row.last_us = timestamp_us
        row.last_at = now
        self.total += 1

    def tick(self) -> None:
        """One second has passed: each count since the last tick becomes a sparkline bar."""
        for row in self._rows.values():
            row.history.append(row.count - row.mark)
            row.mark = row.count

    def count(self, cls: int) -> int:
        row = self._rows.get(cls)
        return 0 if row is None else row.count

    def rows(self, now: float, describe: Any) -> list[dict[str, Any]]:
        """JSON-ready rows, in class order; ``describe(payload)`` renders the payload."""
        out = []
        for cls in sorted(self._rows):
            row = self._rows[cls]
            out.append(
                {
                    "cls": cls,
                    "class": class_label(cls),
                    "count": row.count,
                    "rate": row.history[-1] if row.history else row.count - row.mark,
                    "spark": list(row.history),
                    "age": round(max(0.0, now - row.last_at), 3),
                    "timestamp_us": row.last_us,
                    **describe(row.last),
                }
            )
        return out

    def counts(self) -> dict[int, int]:
        return {cls: row.count for cls, row in self._rows.items()}
