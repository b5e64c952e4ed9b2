"""Admission: who may put messages on the bus queue next, when publishers wait for room.

Rules:

- A publisher that found the queue full (or was held back by a congested
  class, now released) *waits*, in a FIFO, in the order it began to wait.
- While anyone waits, nobody else takes room: a connection that reads new
  input joins the end of the FIFO instead of publishing it, even if the
  queue has room at that moment.
- When the queue has room, the waiting publishers are served from the
  head, each with a share of that room: an even split (``room // waiting``)
  but at least a *quantum* (or what room there is); one that has more to
  publish after its share goes to the back. A round thus reaches every
  waiting publisher before anyone's second turn; the quantum keeps turns
  large enough that their cost (a resume, an event, a hold: ~10 µs) stays
  small beside the messages (with 17 waiting an even split of 256 is 15
  messages a turn, and the proxy's throughput fell by a third; measured
  with ``bench/proxy_faults.py fair``).

Why: held publishers used to resume one loop pass after the room appeared
(a callback per publisher, scheduled from the bus), and by then the
publishers that were reading freely had filled the queue again: a paced
publisher beside 16 flooders got 9 % of its messages through, with a gap of
19.75 s. With admission in FIFO order, a publisher's wait is bounded by one
round of the others' shares, whatever their rate.

Pure bookkeeping, no I/O and no clock: the proxy asks :meth:`Admission.next`
for the next publisher and its share, and lets it publish.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Admission(Generic[T]):
    """The publishers waiting for room in the bus queue, first come first served."""

    __slots__ = ("_waiting", "quantum")

    def __init__(self, quantum: int = 1) -> None:
        if quantum < 1:
            raise ValueError(f"the admission quantum must be at least 1, got {quantum}")
        self.quantum = quantum
        self._waiting: dict[T, None] = {}  # an ordered set: FIFO with O(1) removal

    def __len__(self) -> int:
        return len(self._waiting)

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def __contains__(self, who: object) -> bool:
        return who in self._waiting

    def wait(self, who: T) -> None:
        """``who`` waits for room; at the back, unless it waits already (it keeps its place)."""
        self._waiting.setdefault(who, None)

    def discard(self, who: T) -> None:
        """``who`` no longer waits (it went away)."""
        self._waiting.pop(who, None)

    def next(self, room: int) -> tuple[T, int] | None:
        """The publisher at the head and how many messages it may publish now; None to stop.

        It leaves the FIFO; it calls :meth:`wait` again if it has more to publish.
        """
        waiting = self._waiting
        if room <= 0 or not waiting:
            return None
        who = next(iter(waiting))
        share = max(room // len(waiting), min(room, self.quantum))
        del waiting[who]
        return who, share

    def order(self) -> list[T]:
        """The waiting publishers, head first (for ``smd peers`` and tests)."""
        return list(self._waiting)
