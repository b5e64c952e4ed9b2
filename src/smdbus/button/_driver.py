"""The driver: a classifier on a scheduler, publishing on INTERACTION.

The classifier is pure; this is the thin part that owns a clock and a timer.
It schedules the classifier's next tick on the injected
:class:`~smdbus.scheduler.Scheduler` (the loop's by default) only while
the classifier is busy, so an idle device has no timer running at all, and it
publishes each event's exact lws_button payload.

Clocks: a source stamps edges on its own clock (evdev: the input device's
clock, gpiod: CLOCK_MONOTONIC). ``clock`` must read that same clock in ms;
the driver turns the classifier's tick times into delays through it, so the
scheduler's clock and the source's may differ. Tests give a
:class:`~smdbus.scheduler.ManualScheduler` and its clock, and move time
by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from smdbus._announce import Announcer, Publisher
from smdbus.button._classifier import Classifier
from smdbus.button._events import ButtonEvent, Edge
from smdbus.classes import Class
from smdbus.scheduler import LoopScheduler, Scheduler, Timer

log = logging.getLogger(__name__)


class ButtonDriver:
    """Feeds edges to a :class:`Classifier`, ticks it on time, publishes its events."""

    def __init__(
        self,
        classifier: Classifier,
        publisher: Publisher | None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Callable[[], float] | None = None,
        cls: int = Class.INTERACTION,
        on_event: Callable[[ButtonEvent], None] | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.classifier = classifier
        self.publisher = publisher
        if scheduler is None:
            scheduler = LoopScheduler(loop or asyncio.get_running_loop())
        self.scheduler = scheduler
        self.clock: Callable[[], float] = clock or (lambda: scheduler.now() * 1000)
        self.cls = cls
        self.on_event = on_event
        # the *drop* policy of smdbus._announce: a press told late misleads more than a
        # lost one the user repeats; each refusal is counted and logged
        self.announcer = Announcer(publisher, "buttons", keep=False)
        self.late_edges = 0
        """Edges stamped before a tick already run: applied at that tick's time instead."""
        self._timer: Timer | None = None
        self._timer_due: float | None = None
        self.events: list[ButtonEvent] = []
        """Every event so far, newest last (bounded: the last ``keep`` events)."""
        self.keep = 64

    def edge(self, time_ms: float, button: int | str, level: int) -> list[ButtonEvent]:
        """A level change stamped on the source's clock."""
        now = self.classifier.now_ms
        if now is not None and time_ms < now:
            # The edge was stamped before a tick we already ran (the loop was
            # late to read it): C would see it at the next sample, and so do we.
            self.late_edges += 1
            time_ms = now
        events = self.classifier.edge(time_ms, button, level)
        self._emit(events)
        self._schedule()
        return events

    def feed(self, edge: Edge) -> None:
        """A source's sink: ``source.run(driver.feed)``."""
        self.edge(edge.time_ms, edge.button, edge.level)

    def close(self) -> None:
        """Stop the timer; the classifier keeps its state."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_due = None, None

    @property
    def published(self) -> int:
        """Events the bus accepted."""
        return self.announcer.sent

    @property
    def unheard(self) -> int:
        """Events nobody was listening for (the bus said so; nothing was queued)."""
        return self.announcer.unheard

    @property
    def refused(self) -> int:
        """Events the bus refused (queue full, too large): logged, counted, not retried."""
        return self.announcer.refused

    @property
    def timer_running(self) -> bool:
        return self._timer is not None

    def _schedule(self) -> None:
        due = self.classifier.next_tick_ms
        if due == self._timer_due:
            return
        self.close()
        if due is None:
            return
        delay = max(0.0, (due - self.clock()) / 1000)
        self._timer = self.scheduler.call_later(delay, lambda: self._on_timer(due))
        self._timer_due = due

    def _on_timer(self, due: float) -> None:
        self._timer, self._timer_due = None, None
        # At least the tick we were set for, even if the clocks disagree by a hair;
        # every tick due by now if the loop was late. Time stays at the last tick,
        # so an edge stamped after it but read only now is not "late".
        limit = max(due, self.clock())
        events: list[ButtonEvent] = []
        while (next_due := self.classifier.next_tick_ms) is not None and next_due <= limit:
            events += self.classifier.tick(next_due)
        self._emit(events)
        self._schedule()

    def _emit(self, events: list[ButtonEvent]) -> None:
        for ev in events:
            self.events.append(ev)
            if self.on_event is not None:
                self.on_event(ev)
            self.announcer.announce(self.cls, ev.payload())
        if len(self.events) > self.keep:
            del self.events[: len(self.events) - self.keep]
