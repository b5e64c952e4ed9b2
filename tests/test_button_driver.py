"""The asyncio driver with the real Bus, on a loop whose clock is virtual (no test sleeps)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from smdbus import Bus, Class, QueueFull
from smdbus.button import ButtonDriver, ButtonEvent, Classifier, Controller
from smdbus.button.sources import ScriptedSource, controller_for, parse_pattern


@contextmanager
def virtual_time(loop: asyncio.AbstractEventLoop, start: float = 1000.0) -> Iterator[list[float]]:
    """Make ``loop.time()`` virtual: when the loop would block on timers, time jumps instead.

    I/O still works (the selector is polled without blocking), so the bus's own
    wake-ups run as usual; only waiting for time to pass costs nothing.
    """
    now = [start]
    selector: Any = loop._selector  # type: ignore[attr-defined]
    real_select = selector.select

    def select(timeout: float | None = None) -> Any:
        if timeout is not None and timeout > 0:
            now[0] += timeout
        return real_select(0 if timeout is not None else None)

    loop.time = lambda: now[0]  # type: ignore[method-assign]
    selector.select = select
    try:
        yield now
    finally:
        del loop.time
        selector.select = real_select


async def idle(driver: ButtonDriver) -> None:
    """Let virtual time run until the classifier is idle again."""
    for _ in range(10_000):
        if not driver.classifier.busy:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("classifier never went idle")


Received = list[tuple[int, int, bytes]]


async def play(
    pattern: str, *, controller: Controller | None = None
) -> tuple[ButtonDriver, Received, float, float]:
    loop = asyncio.get_running_loop()
    presses = parse_pattern(pattern)
    controller = controller or controller_for(presses)
    received: Received = []
    with virtual_time(loop):
        bus = Bus(clock=lambda: int(loop.time() * 1_000_000))
        async with bus:
            bus.register(Class.INTERACTION, lambda c, ts, p: received.append((c, ts, p)))
            driver = ButtonDriver(Classifier(controller), bus, loop=loop)
            source = ScriptedSource(presses, controller)
            wall = time.monotonic()
            start = driver.clock()
            await source.run(driver.feed, clock=driver.clock)
            await idle(driver)
            await bus.drain()
            wall = time.monotonic() - wall
    return driver, received, start, wall


def relative(events: list[ButtonEvent], start: float) -> list[tuple[str, float]]:
    return [(str(e.event), round(e.time_ms - start, 6)) for e in events]


async def test_doubleclick_published_on_interaction_at_cs_times() -> None:
    driver, received, start, wall = await play("0-102,158-262")
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
    assert wall < 2.0, "virtual time: nothing waited for 285 real ms of presses"


async def test_timer_runs_only_while_busy() -> None:
    driver, _, start, _ = await play("0-102")
    assert not driver.timer_running
    # busy from the press to the end of the settle after the click (245 ms): 49 ticks
    assert driver.classifier.ticks_run == 49
    assert driver.classifier.now_ms == pytest.approx(start + 245)


async def test_two_buttons_interleaved_on_one_driver() -> None:
    driver, received, start, _ = await play("0-102,user:37-82")
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
    loop = asyncio.get_running_loop()
    controller = Controller.of("bc", ["btn"], active_high=True)
    with virtual_time(loop):
        driver = ButtonDriver(Classifier(controller), None, loop=loop)
        t0 = driver.clock()
        driver.edge(t0, 0, 1)
        await asyncio.sleep(0.1)  # virtual: ticks run up to t0 + 100
        assert driver.classifier.now_ms is not None and driver.classifier.now_ms >= t0 + 100
        driver.edge(t0 + 90, 0, 0)  # stamped before ticks that already ran
        assert driver.late_edges == 1
        await idle(driver)
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
    loop = asyncio.get_running_loop()
    controller = Controller.of("bc", ["btn"], active_high=True)
    publisher = _Refusing()
    seen: list[ButtonEvent] = []
    with virtual_time(loop):
        driver = ButtonDriver(Classifier(controller), publisher, loop=loop, on_event=seen.append)
        t0 = driver.clock()
        driver.edge(t0, 0, 1)
        driver.edge(t0 + 102, 0, 0)
        await idle(driver)
    assert [str(e.event) for e in seen] == ["down", "up", "click"]
    assert (driver.unheard, driver.refused, driver.published) == (1, 2, 0)
    assert "not published: queue full" in caplog.text


async def test_close_stops_the_timer() -> None:
    loop = asyncio.get_running_loop()
    with virtual_time(loop):
        driver = ButtonDriver(
            Classifier(Controller.of("bc", ["btn"], active_high=True)), None, loop=loop
        )
        driver.edge(driver.clock(), 0, 1)
        assert driver.timer_running
        driver.close()
        assert not driver.timer_running
        await asyncio.sleep(1)
    assert driver.classifier.ticks_run == 0


async def test_runner_serves_a_live_pattern_in_virtual_time() -> None:
    import io

    from smdbus.button.config import Configured
    from smdbus.button.runner import serve

    loop = asyncio.get_running_loop()
    presses = parse_pattern("0-102,mode:37-82")
    controller = controller_for(presses)
    out = io.StringIO()
    with virtual_time(loop):

        class VirtualScripted(ScriptedSource):
            def clock(self) -> float:
                return loop.time() * 1000

        source = VirtualScripted(presses, controller)
        drivers = await serve([Configured(controller, source)], out=out)
    assert out.getvalue().splitlines() == [
        "   20 ms  bc/btn  down",
        "   55 ms  bc/mode  down",
        "   85 ms  bc/mode  up",
        "  105 ms  bc/btn  up",
        "  205 ms  bc/mode  click",
        "  225 ms  bc/btn  click",
    ]
    assert not drivers[0].timer_running
