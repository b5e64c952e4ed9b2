"""Telling a slow subscriber from a stopped one, from its outbound progress alone.

The proxy is lossless towards subscribers that keep reading: when one falls
behind (its outbound buffer passes high water) publishers of its classes are
held back until it catches up. A subscriber that reads *nothing* must not hold
everyone back, so while it is over high water its progress is watched:

    FLOWING  bytes left the buffer recently: it is slow, keep holding publishers
    STALLED  nothing left for ``grace``: stop holding publishers for it
    DEAD     nothing left for ``timeout``: disconnect it

Pure logic with the clock passed in; the proxy calls :meth:`Outflow.check` on
a timer while the subscriber is congested.
"""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    FLOWING = "flowing"
    STALLED = "stalled"
    DEAD = "dead"


class Outflow:
    """Progress of one congested subscriber: when did bytes last leave its buffer."""

    __slots__ = ("_grace", "_last_progress", "_last_sent", "_timeout")

    def __init__(self, grace: float, timeout: float) -> None:
        self._grace = grace
        self._timeout = timeout
        self._last_progress = 0.0
        self._last_sent = 0

    def start(self, now: float, sent: int) -> None:
        """The subscriber just went over high water with ``sent`` bytes written so far."""
        self._last_progress = now
        self._last_sent = sent

    def check(self, now: float, sent: int) -> Verdict:
        """Where it stands now that ``sent`` bytes in all have left its buffer."""
        if sent > self._last_sent:
            self._last_sent = sent
            self._last_progress = now
            return Verdict.FLOWING
        idle = now - self._last_progress
        if idle >= self._timeout:
            return Verdict.DEAD
        if idle >= self._grace:
            return Verdict.STALLED
        return Verdict.FLOWING

    def idle(self, now: float) -> float:
        """Seconds since bytes last left the buffer."""
        return now - self._last_progress
