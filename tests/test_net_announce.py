"""Network announcements wait for room on a full bus instead of being lost."""

from __future__ import annotations

from smdbus import Bus, Class
from smdbus.net.announce import Announcer


async def test_a_full_queue_delays_but_keeps_order() -> None:
    bus = Bus(queue_depth=2)
    got: list[bytes] = []
    bus.register(Class.NETWORK, lambda c, t, p: got.append(p))
    a = Announcer(bus, "test")
    for i in range(5):
        a.announce(Class.NETWORK, {"n": i})  # the bus is not bound yet: nothing delivered
    assert a.pending == 3 and a.delayed == 1
    async with bus:
        await bus.drain()
        for _ in range(10):
            if not a.pending:
                break
            await bus.drain()
    assert got == [b'{"n":0}', b'{"n":1}', b'{"n":2}', b'{"n":3}', b'{"n":4}']
    assert a.sent == 5 and a.pending == 0


def test_nobody_listening_is_counted_not_an_error() -> None:
    a = Announcer(Bus(), "test")
    a.announce(Class.NETWORK, {"rt": "add"})
    assert (a.sent, a.unheard, a.pending) == (0, 1, 0)


def test_without_a_bus_nothing_happens() -> None:
    a = Announcer(None, "test")
    a.announce(Class.NETWORK, {"rt": "add"})
    assert (a.sent, a.unheard, a.pending) == (0, 0, 0)
