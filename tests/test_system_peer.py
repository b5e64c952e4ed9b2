"""The C peer test's step 3 on the real bus: flood at OPERATIONAL, overflow, drain, recover."""

from __future__ import annotations

import json

from smdbus import Bus, Class, QueueFull
from smdbus.scheduler import ManualScheduler
from smdbus.system import NotifyLink, State, StateManager

N = 1000


async def test_flood_at_operational_overflows_then_the_loop_drains_and_sending_works() -> None:
    got: list[dict[str, object]] = []
    flood: dict[str, object] = {}

    async with Bus(queue_depth=40) as bus:
        bus.register(
            Class.SYSTEM_STATE, lambda c, t, p: got.append(json.loads(p)), name="state-watch"
        )

        def flooder(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
            if cur == tgt == State.OPERATIONAL:
                for i in range(N):  # a tight loop: never back to the event loop
                    try:
                        bus.send_json(Class.SYSTEM_STATE, {"flood": i})
                    except QueueFull as e:
                        flood["stopped_at"] = i
                        flood["error"] = str(e)
                        break
            return 0

        mgr = StateManager(bus, notifiers=[("flooder", flooder)])
        assert mgr.steps(State.OPERATIONAL) is True
        stopped = flood["stopped_at"]
        assert isinstance(stopped, int)
        # 13 boot messages were queued before OPERATIONAL: the flood fills the rest of 40
        assert stopped == 40 - 13
        assert "queue full: 40 messages" in str(flood["error"])
        # the OPERATIONAL announcement met the full queue: delayed, not lost
        assert mgr.publish_delays == 1

        await bus.drain()  # the loop delivers; the delayed announcement goes out when room
        await bus.drain()
        assert got[-1] == {"state": "OPERATIONAL"}
        assert bus.send_json(Class.SYSTEM_STATE, {"after": "drain"}) is True
        await bus.drain()

    states = [g["state"] for g in got if "state" in g]
    floods = [g["flood"] for g in got if "flood" in g]
    assert states == [s.name for s in State if State.PRE_PRIV_DROP <= s <= State.OPERATIONAL]
    assert floods == list(range(stopped))
    assert got[-1] == {"after": "drain"}


class FullThenRoom:
    """A publisher whose queue is full until ``room()``: no when_room, so timers retry."""

    def __init__(self) -> None:
        self.full = True
        self.sent: list[str] = []

    def send(self, cls: int, payload: bytes) -> bool:
        if self.full:
            raise QueueFull(cls, 40)
        self.sent.append(json.loads(payload)["state"])
        return True


def test_announcements_wait_in_order_for_room_on_an_injected_timer() -> None:
    pub = FullThenRoom()
    sched = ManualScheduler()
    mgr = StateManager(pub, scheduler=sched, initial=State.AUTH2, publish_retry=0.05)
    assert mgr.steps(State.OPERATIONAL) is True  # the state moves even if the bus is full
    assert pub.sent == [] and mgr.publish_delays == 2  # both waited
    sched.advance(0.2)
    assert pub.sent == [] and sched.pending == 1  # still full: one timer, not one per try
    pub.full = False
    sched.advance(0.05)
    assert pub.sent == ["ONE_TIME_UPDATES", "OPERATIONAL"]
    assert sched.pending == 0
