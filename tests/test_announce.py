"""The one announcer: what a producer does when the bus is full (keep or drop), counted."""

from __future__ import annotations

import json
import logging

import pytest

from smdbus import Bus, Class
from smdbus._announce import Announcer
from smdbus.errors import QueueFull
from smdbus.scheduler import ManualScheduler


async def test_a_full_queue_delays_but_keeps_order() -> None:
    bus = Bus(queue_depth=2)
    got: list[bytes] = []
    bus.register(Class.NETWORK, lambda c, t, p: got.append(p))
    a = Announcer(bus, "test")
    for i in range(5):
        a.announce(Class.NETWORK, {"n": i})  # the bus is not bound yet: nothing delivered
    assert a.pending == 3 and a.delayed == 3  # each message that did not go out at once
    async with bus:
        await bus.drain()
        for _ in range(10):
            if not a.pending:
                break
            await bus.drain()
    assert got == [b'{"n":0}', b'{"n":1}', b'{"n":2}', b'{"n":3}', b'{"n":4}']
    assert a.sent == 5 and a.pending == 0 and a.refused == 0


def test_nobody_listening_is_counted_not_an_error() -> None:
    a = Announcer(Bus(), "test")
    a.announce(Class.NETWORK, {"rt": "add"})
    assert (a.sent, a.unheard, a.pending) == (0, 1, 0)


def test_without_a_bus_nothing_happens() -> None:
    a = Announcer(None, "test")
    a.announce(Class.NETWORK, {"rt": "add"})
    assert (a.sent, a.unheard, a.pending) == (0, 0, 0)


class FullUntilRoom:
    """A publisher without ``when_room`` (a remote client, say): retried on a timer."""

    def __init__(self) -> None:
        self.full = True
        self.sent: list[bytes] = []

    def send(self, cls: int, payload: bytes) -> bool:
        if self.full:
            raise QueueFull(cls, 40)
        self.sent.append(payload)
        return True


def test_without_when_room_the_retry_runs_on_the_injected_scheduler() -> None:
    pub, timers = FullUntilRoom(), ManualScheduler()
    a = Announcer(pub, "test", retry=0.05, timers=lambda: timers)
    a.announce(Class.NETWORK, b"one")
    a.announce(Class.NETWORK, b"two")
    assert a.pending == 2 and timers.pending == 1  # one timer for the backlog, not one per try
    timers.advance(0.2)
    assert pub.sent == [] and timers.pending == 1
    pub.full = False
    timers.advance(0.05)
    assert pub.sent == [b"one", b"two"] and timers.pending == 0 and a.delayed == 2


def test_the_backlog_is_bounded_and_what_it_refuses_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pub, timers = FullUntilRoom(), ManualScheduler()
    a = Announcer(pub, "test", limit=3, timers=lambda: timers)
    for i in range(5):
        a.announce(Class.NETWORK, {"n": i})
    assert (a.pending, a.refused) == (3, 2)
    assert "3 messages already wait for room" in caplog.text
    pub.full = False
    timers.advance(1)
    assert [json.loads(p)["n"] for p in pub.sent] == [0, 1, 2]


def test_the_drop_policy_counts_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    a = Announcer(FullUntilRoom(), "buttons", keep=False)
    a.announce(Class.INTERACTION, b'{"event":"click"}')
    assert (a.pending, a.refused, a.delayed) == (0, 1, 0)
    assert "buttons: a 17-byte INTERACTION message not published: queue full" in caplog.text


def test_a_message_too_large_is_refused_under_either_policy() -> None:
    bus = Bus()
    bus.register(Class.NETWORK, lambda c, t, p: None)
    for keep in (True, False):
        a = Announcer(bus, "test", keep=keep)
        a.announce(Class.NETWORK, b"x" * 4096)
        a.announce(Class.NETWORK, b"fits")
        assert (a.refused, a.sent, a.pending) == (1, 1, 0)  # and the next one goes on
