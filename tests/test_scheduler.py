"""The two schedulers agree: what a test sees on the manual one is what the loop does."""

from __future__ import annotations

import asyncio

from smdbus.scheduler import LoopScheduler, ManualScheduler


def test_manual_scheduler_takes_a_negative_delay_as_now() -> None:
    sched = ManualScheduler(start=10.0)
    ran: list[str] = []
    sched.call_later(0, lambda: ran.append("zero"))
    sched.call_later(-3, lambda: ran.append("negative"))
    sched.call_later(0.5, lambda: ran.append("later"))
    assert sched.next_due == 10.0  # due now, not in the past
    assert sched.advance(0) == 2
    assert ran == ["zero", "negative"]  # in the order set, as timers due at one instant
    assert sched.now() == 10.0
    sched.advance(1)
    assert ran == ["zero", "negative", "later"]


async def test_loop_scheduler_takes_a_negative_delay_as_now() -> None:
    loop = asyncio.get_running_loop()
    sched = LoopScheduler(loop)
    fired = loop.create_future()
    before = loop.time()
    timer = sched.call_later(-5, lambda: fired.set_result(loop.time()))
    assert isinstance(timer, asyncio.TimerHandle)
    assert timer.when() >= before  # due now, as the manual one says; not 5 s ago
    assert await fired >= before
