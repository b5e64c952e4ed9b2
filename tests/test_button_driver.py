"""The asyncio driver with the real Bus, its timers on a manual scheduler (no test sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from smdbus import Bus, Class, QueueFull
from smdbus.button import ButtonDriver, ButtonEvent, Classifier, Controller
from smdbus.button.sources import ScriptedSource, controller_for, parse_pattern
from smdbus.scheduler import ManualScheduler


async def run_timers(timers: ManualScheduler, done: Callable[[], bool]) -> None:
    """Move the manual clock from one timer to the next until ``done()``.

    Between moves the loop runs what each timer woke (a task's next step, the
    bus's delivery), so the tests wait for nothing real and patch no asyncio.
    """
    for _ in range(100_000):
        for _ in range(4):
            await asyncio.sleep(0)
        if done():
            return
        due = timers.next_due
        if due is None:
            raise AssertionError("no timer left and the condition still does not hold")
        timers.advance(due - timers.now())
    raise AssertionError("the condition never held")


Received = list[tuple[int, int, bytes]]


async def play(
    pattern: str, *, controller: Controller | None = None
) -> tuple[ButtonDriver, Received, float]:
    presses = parse_pattern(pattern)
    controller = controller or controller_for(presses)
    received: Received = []
    timers = ManualScheduler(start=1000.0)
    bus = Bus(clock=lambda: int(timers.now() * 1_000_000))
    async with bus:
        bus.register(Class.INTERACTION, lambda c, ts, p: received.append((c, ts, p)))
        driver = ButtonDriver(Classifier(controller), bus, scheduler=timers)
        source = ScriptedSource(presses, controller, scheduler=timers)
        start = driver.clock()
        task = asyncio.create_task(source.run(driver.feed, clock=driver.clock))
        await run_timers(timers, lambda: task.done() and not driver.classifier.busy)
        await task
        await bus.drain()
    return driver, received, start


def relative(events: list[ButtonEvent], start: float) -> list[tuple[str, float]]:
    return [(str(e.event), round(e.time_ms - start, 6)) for e in events]


async def test_doubleclick_published_on_interaction_at_cs_times() -> None:
    driver, received, start = await play("0-102,158-262")
    assert relative(driver.events, start) == [
        ("down", 20),
        ("up", 105),
        ("down", 180),
        ("doubleclick", 185),
        ("up", 265),
    ]
    assert [p for _, _, p in received] == [
        b'{"type":"button","src":"bc/btn","event":"down"}',
        b'{"type":"button","src":"bc/btn","event":"up"}',
        b'{"type":"button","src":"bc/btn","event":"down"}',
        b'{"type":"button","src":"bc/btn","event":"doubleclick"}',
        b'{"type":"button","src":"bc/btn","event":"up"}',
    ]
    assert {c for c, _, _ in received} == {Class.INTERACTION}
    # The bus stamped each message when the tick published it (virtual µs).
    stamps = [round(ts / 1000 - start) for _, ts, _ in received]
    assert stamps == [20, 105, 180, 185, 265]
    assert driver.published == 5 and driver.unheard == 0 and driver.refused == 0


async def test_timer_runs_only_while_busy() -> None:
    driver, _, start = await play("0-102")
    assert not driver.timer_running
    # busy from the press to the end of the settle after the click (245 ms): 49 ticks
    assert driver.classifier.ticks_run == 49
    assert driver.classifier.now_ms == pytest.approx(start + 245)


async def test_two_buttons_interleaved_on_one_driver() -> None:
    driver, received, start = await play("0-102,user:37-82")
    assert [
        (e.src, *r) for e, r in zip(driver.events, relative(driver.events, start), strict=True)
    ] == [
        ("bc/btn", "down", 20),
        ("bc/user", "down", 55),
        ("bc/user", "up", 85),
        ("bc/btn", "up", 105),
        ("bc/user", "click", 205),
        ("bc/btn", "click", 225),
    ]
    assert len(received) == 6


async def test_late_edge_is_sampled_at_the_next_tick() -> None:
    controller = Controller.of("bc", ["btn"], active_high=True)
    timers = ManualScheduler(start=1000.0)
    driver = ButtonDriver(Classifier(controller), None, scheduler=timers)
    t0 = driver.clock()
    driver.edge(t0, 0, 1)
    timers.advance(0.1)  # ticks run up to t0 + 100
    assert driver.classifier.now_ms is not None and driver.classifier.now_ms >= t0 + 100
    driver.edge(t0 + 90, 0, 0)  # stamped before ticks that already ran
    assert driver.late_edges == 1
    await run_timers(timers, lambda: not driver.classifier.busy)
    assert relative(driver.events, t0) == [("down", 20), ("up", 105), ("click", 225)]


class _Refusing:
    def __init__(self) -> None:
        self.calls = 0

    def send(self, cls: int, payload: bytes) -> bool:
        self.calls += 1
        if self.calls == 1:
            return False  # nobody listens
        raise QueueFull(cls, 40)


async def test_refused_events_are_counted_not_lost_silently(caplog: Any) -> None:
    controller = Controller.of("bc", ["btn"], active_high=True)
    publisher = _Refusing()
    seen: list[ButtonEvent] = []
    timers = ManualScheduler(start=1000.0)
    driver = ButtonDriver(Classifier(controller), publisher, on_event=seen.append, scheduler=timers)
    t0 = driver.clock()
    driver.edge(t0, 0, 1)
    driver.edge(t0 + 102, 0, 0)
    await run_timers(timers, lambda: not driver.classifier.busy)
    assert [str(e.event) for e in seen] == ["down", "up", "click"]
    assert (driver.unheard, driver.refused, driver.published) == (1, 2, 0)
    assert "not published: queue full" in caplog.text


async def test_close_stops_the_timer() -> None:
    timers = ManualScheduler(start=1000.0)
    driver = ButtonDriver(
        Classifier(Controller.of("bc", ["btn"], active_high=True)), None, scheduler=timers
    )
    driver.edge(driver.clock(), 0, 1)
    assert driver.timer_running
    driver.close()
    assert not driver.timer_running
    timers.advance(1)
    assert driver.classifier.ticks_run == 0


async def test_runner_serves_a_live_pattern_on_a_manual_clock() -> None:
    import io

    from smdbus.button._config import Configured
    from smdbus.button._runner import serve

    presses = parse_pattern("0-102,mode:37-82")
    controller = controller_for(presses)
    out = io.StringIO()
    timers = ManualScheduler(start=1000.0)
    source = ScriptedSource(presses, controller, scheduler=timers)
    task = asyncio.create_task(serve([Configured(controller, source)], out=out, scheduler=timers))
    await run_timers(timers, task.done)
    drivers = await task
    assert out.getvalue().splitlines() == [
        "   20 ms  bc/btn  down",
        "   55 ms  bc/mode  down",
        "   85 ms  bc/mode  up",
        "  105 ms  bc/btn  up",
        "  205 ms  bc/mode  click",
        "  225 ms  bc/btn  click",
    ]
    assert not drivers[0].timer_running
