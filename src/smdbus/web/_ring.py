"""The message ring: the last messages shown, each under an event id, for resuming a stream.

Rules
-----
- Ids count up from 1 for the life of the ring and are never reused; the
  ring keeps the newest ``size`` records, so memory is bounded whatever
  the bus does.
- :meth:`EventRing.since` answers "what came after id N" with the records
  still held and how many were lost in between (evicted before the reader
  came back), so a resumed stream can say "missed 120" instead of
  pretending to be complete.
- Records are opaque here (the view stores each message already encoded
  as JSON, so a resume or ``/api/messages`` does not encode it again).
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class EventRing(Generic[T]):
    """The newest ``size`` records, each with its id."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"ring size must be at least 1, got {size}")
        self.size = size
        self._items: deque[tuple[int, T]] = deque(maxlen=size)
        self._next = 1

    def __len__(self) -> int:
        return len(self._items)

    @property
    def last_id(self) -> int:
        """The id of the newest record (0 before the first)."""
        return self._next - 1

    def append(self, record: T) -> int:
        """Keep ``record`` (evicting the oldest when full); returns its id."""
        ident = self._next
        self._next += 1
        self._items.append((ident, record))
        return ident

    def since(self, after: int, limit: int | None = None) -> tuple[list[tuple[int, T]], int]:
        """Records with an id above ``after`` (oldest first, up to ``limit``), and how many
        such records are no longer held."""
        last = self.last_id
        if after >= last:
            return [], 0
        if not self._items:
            return [], last - max(after, 0)
        first = self._items[0][0]
        missed = max(0, first - max(after, 0) - 1)
        start = max(after + 1, first) - first
        stop = None if limit is None else start + limit
        return list(itertools.islice(self._items, start, stop)), missed
