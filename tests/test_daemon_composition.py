"""The daemon is built from the one composition of lws_system (SystemContext), not beside it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from smdbus.classes import Class
from smdbus.scheduler import ManualScheduler
from smdbus.system import BlobType, State, SystemContext


async def test_the_daemon_system_is_a_system_context(tmp_path: Path) -> None:
    from smdbus.daemon import Daemon, parse_config, prepare

    config = parse_config(
        f'[bus]\nsocket = "{tmp_path / "bus.sock"}"\n'
        "[routes]\nenabled = false\n[cpd]\nenabled = false\n"
        '[gates]\ndhcp = false\ntime = false\n[time]\nntp_server = "ntp.example"\n'
    )
    daemon = Daemon(prepare(config, {}))
    run = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(10):
            while daemon.system is None:
                await asyncio.sleep(0.005)  # bounded poll: the daemon starts in its own task
        system = daemon.system
        assert isinstance(system, SystemContext)
        assert system.manager is daemon.manager and system.ops is daemon.ops
        assert system.blobs[BlobType.NTP_SERVER].get() == b"ntp.example"  # the daemon's blobs
        reached: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        system.attach(reached.set_result, State.OPERATIONAL, "attached")  # lws_system_attach
        async with asyncio.timeout(10):
            assert await reached == "attached"
    finally:
        daemon.stop()
        await asyncio.wait_for(run, 10)
    assert system.responder is None, "the daemon's shutdown closed the composition"


async def _until(cond: Callable[[], bool]) -> None:
    """Let the daemon (in this loop) run until ``cond`` holds; bounded, so a bug fails."""
    async with asyncio.timeout(10):
        while not cond():
            await asyncio.sleep(0)


async def test_a_scripted_button_waits_its_delay_on_the_daemons_scheduler(tmp_path: Path) -> None:
    """The daemon's one scheduler runs everything, a scripted button's delay too: 2 s of
    it pass here by hand, and the press plays on the same clock once they have."""
    from smdbus.daemon import Daemon, parse_config, prepare

    config = parse_config(
        f'[bus]\nsocket = "{tmp_path / "bus.sock"}"\n'
        "[routes]\nenabled = false\n[cpd]\nenabled = false\n"
        "[gates]\ndhcp = false\ntime = false\n"
        '[[buttons.scripted]]\ncontroller = "bc"\npattern = "0-102"\ndelay = 2.0\n'
    )
    scheduler = ManualScheduler()
    events: list[tuple[float, str]] = []

    def seen(cls: int, timestamp_us: int, payload: bytes, sender: object = None) -> None:
        if cls == Class.INTERACTION:
            events.append((scheduler.now(), json.loads(payload)["event"]))

    daemon = Daemon(prepare(config, {}), scheduler=scheduler, on_message=seen)
    run = asyncio.create_task(daemon.run())
    try:
        # OPERATIONAL, and the button's delay is the one timer set
        await _until(lambda: scheduler.next_due == 2.0)
        assert daemon.manager is not None and daemon.manager.state is State.OPERATIONAL
        scheduler.advance(1.999)
        assert scheduler.next_due == 2.0 and events == []
        async with asyncio.timeout(10):
            while not any(event == "click" for _, event in events):
                await asyncio.sleep(0)  # what fell due runs, and sets its next timer
                due = scheduler.next_due  # time moves to the press's timers only
                if due is not None and due <= 2.5:
                    scheduler.advance(due - scheduler.now())
        assert [event for _, event in events] == ["down", "up", "click"]
        assert 2.0 <= events[0][0] < events[2][0] <= 2.5
    finally:
        daemon.stop()
        await asyncio.wait_for(run, 10)
