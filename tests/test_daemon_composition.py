"""The daemon is built from the one composition of lws_system (SystemContext), not beside it."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
