"""Timers, injected: every delay of the system goes through a :class:`Scheduler`.

The state manager (a refused modal update, a delayed announcement), the boot
gates (DHCP's give-up, SNTP's retry), the button driver's ticks, a scripted
button's presses and the client's reconnects need "call this in N seconds".
Production code backs that with the asyncio loop (:class:`LoopScheduler`);
tests drive a :class:`ManualScheduler` and move time forward by hand, so a
30 s retry window runs in microseconds and no test patches asyncio.

Why here, at the top of the package and public: the client, the button
driver, the announcer, the web view and the daemon all take a scheduler, and
none of them is above :mod:`smdbus.system` in the layers (docs/architecture.md);
stdlib only, it sits below them all. :mod:`smdbus.system` re-exports it.

A negative delay means "now" (the next loop pass; under a manual scheduler, the
next :meth:`ManualScheduler.advance`, ``advance(0)`` included), in both
schedulers alike, as asyncio's ``call_later`` takes one: a delay computed as a
deadline minus the time may have passed zero by the time it is set, and a test
must see what production does, not an error production never raises.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio


class Timer(Protocol):
    """A scheduled call that may be cancelled before it runs."""

    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What the state manager needs from a clock and a timer wheel."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


async def sleep(scheduler: Scheduler | None, seconds: float) -> None:
    """Wait ``seconds`` on ``scheduler``'s clock (``asyncio.sleep`` when it is None).

    For code that awaits a delay rather than setting a callback: under a
    :class:`ManualScheduler` the wait ends when a test moves time past it.
    """
    import asyncio  # here: smd state reads the state's names without asyncio

    if scheduler is None:
        await asyncio.sleep(seconds)
        return
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    timer = scheduler.call_later(seconds, wake)
    try:
        await done
    finally:
        timer.cancel()


class LoopScheduler:
    """Timers on an asyncio loop: the production scheduler."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def now(self) -> float:
        return self.loop.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.loop.call_later(max(delay, 0.0), callback)  # negative: now (the module's)


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualScheduler:
    """A scheduler whose time moves only when :meth:`advance` is called.

    Timers due at the same instant run in the order they were set, and a
    timer set by a running callback runs in the same :meth:`advance` call if
    it falls due within the window.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _ManualTimer(self._now + max(delay, 0.0), callback)  # negative: now
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    @property
    def pending(self) -> int:
        """Timers set and neither run nor cancelled."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    @property
    def next_due(self) -> float | None:
        """When the earliest live timer falls due (None: no timer is set)."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds``, running every timer that falls due.

        Returns how many callbacks ran.
        """
        if seconds < 0:
            raise ValueError(f"time only moves forward, got {seconds}")
        end = self._now + seconds
        ran = 0
        while self._heap and self._heap[0][0] <= end:
            when, _, timer = heapq.heappop(self._heap)
            self._now = when
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()
                ran += 1
        self._now = end
        return ran
