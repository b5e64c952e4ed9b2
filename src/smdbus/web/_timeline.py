"""The boot timeline: each state entered, when, and which notifier held the way into it.

Rules
-----
- Fed two kinds of event, with times from the injected clock: a *move
  attempt* (``current -> target``, seen by an observing notifier that the
  adapter registers last, so the state manager asks it first) and an
  *entry* (the manager's listener, after the change is published).
- A notifier that refuses a move owns its retry: the move is attempted again
  when its work is done. At the second and later attempts of the same move,
  ``manager.held_by`` names the notifier that refused the one before, so the
  holders are collected there; a move entered at its first attempt was held
  by nobody. A move still waiting is shown with the holder the manager names
  now (:meth:`BootTimeline.snapshot`'s ``holder``).
- Bounded: the last :data:`MAX_ENTRIES` entries (a POLICY_INVALID cycle per
  SIGHUP adds entries forever); how many were dropped is counted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_ENTRIES = 128
MAX_HOLDERS = 8


@dataclass
class _Pending:
    target: str
    since: float
    attempts: int = 1
    holders: list[str] = field(default_factory=list)


class BootTimeline:
    """States entered, with their times and holders (sans I/O)."""

    def __init__(self, initial: str, start: float, wall_offset: float = 0.0) -> None:
        self.start = start
        self.wall_offset = wall_offset
        self.entries: deque[dict[str, Any]] = deque(maxlen=MAX_ENTRIES)
        self.dropped = 0
        self._pending: _Pending | None = None
        self._add(initial, start, [], 0.0)

    def _add(self, state: str, t: float, held: list[str], waited: float) -> None:
        if len(self.entries) == MAX_ENTRIES:
            self.dropped += 1
        self.entries.append(
            {
                "state": state,
                "at": round(t - self.start, 6),
                "wall": round(t + self.wall_offset, 3),
                "held_by": held,
                "waited": round(waited, 6),
            }
        )

    def attempt(self, current: str, target: str, t: float, holder: str | None) -> None:
        """The manager asks to move ``current -> target``; ``holder`` is its ``held_by`` now."""
        p = self._pending
        if p is None or p.target != target:
            self._pending = _Pending(target, t)
            return
        p.attempts += 1
        if holder is not None and holder not in p.holders and len(p.holders) < MAX_HOLDERS:
            p.holders.append(holder)

    def entered(self, state: str, t: float) -> None:
        """The state is now ``state`` (announced)."""
        p = self._pending
        self._pending = None
        if p is not None and p.target == state and p.attempts > 1:
            self._add(state, t, p.holders, t - p.since)
        else:
            self._add(state, t, [], 0.0)

    def snapshot(self, now: float, holder: str | None) -> dict[str, Any]:
        """JSON-ready: the entries, and the move waiting now (with ``holder``), if any."""
        waiting = None
        p = self._pending
        if p is not None and holder is not None:
            held = list(p.holders)
            if holder not in held:
                held.append(holder)
            waiting = {"state": p.target, "held_by": held, "for": round(now - p.since, 3)}
        return {"entries": list(self.entries), "waiting": waiting, "dropped": self.dropped}
