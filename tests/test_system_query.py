"""Asking the state over the bus, and ``smd state`` as a real process through a real proxy."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import AsyncIterator

import pytest

from smdbus import Bus, Class
from smdbus.system import (
    QUERY,
    NotifyLink,
    State,
    StateManager,
    StateResponder,
    is_query,
    parse_state_message,
)

STEP = 10.0
"""Safety bound on one wait for a subprocess; never reached when things work."""


def test_parse_state_messages() -> None:
    r = parse_state_message(b'{"state":"DESTROYING"}')
    assert r is not None and r.state is State.CONTEXT_DESTROYING and r.change
    r = parse_state_message(b'{"current":"DHCP","n":6}')
    assert r is not None and r.state is State.DHCP and not r.change
    r = parse_state_message(b'{"state":"FUTURE_STATE"}')
    assert r is not None and r.state is None and r.name == "FUTURE_STATE"
    assert parse_state_message(b'{"flood":3}') is None
    assert parse_state_message(b'{"state":') is None
    assert parse_state_message(b'["state"]') is None
    assert is_query(json.dumps(QUERY).encode()) and not is_query(b'{"query":"peers"}')


async def test_responder_answers_without_a_state_key_and_ignores_the_rest() -> None:
    got: list[bytes] = []
    async with Bus() as bus:
        mgr = StateManager(bus, initial=State.TIME_VALID)
        responder = StateResponder(mgr, bus)
        bus.register(Class.SYSTEM_STATE, lambda c, t, p: got.append(bytes(p)), name="w")
        bus.send_json(Class.SYSTEM_STATE, {"query": "state"})
        bus.send_json(Class.SYSTEM_STATE, {"state": "X"})
        await bus.drain()
        await bus.drain()
        responder.close()
        bus.send_json(Class.SYSTEM_STATE, {"query": "state"})
        await bus.drain()
    assert got == [
        b'{"query":"state"}',
        b'{"state":"X"}',
        b'{"current":"TIME_VALID","n":8}',
        b'{"query":"state"}',
    ]
    assert responder.answered == 1


async def test_report_times_out_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    from smdbus.commands._state import report

    async def silent() -> AsyncIterator[tuple[int, bytes]]:
        await asyncio.Event().wait()
        yield (0, b"")

    assert await report(silent(), watch=False, timeout=0.01) == 1
    assert "no state within 0.01 s" in capsys.readouterr().err


async def test_report_without_a_responder_prints_the_next_change_and_skips_repeats() -> None:
    from smdbus.commands._state import report

    async def feed() -> AsyncIterator[tuple[int, bytes]]:
        for p in (b'{"flood":1}', b'{"current":"DHCP","n":6}', b'{"current":"DHCP","n":6}'):
            yield (1, p)
        yield (2, b'{"state":"CPD_PRE_TIME"}')

    out = io.StringIO()
    assert await report(feed(), watch=True, timeout=1, as_json=True, out=out) == 0
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines == [
        {"state": "DHCP", "n": 6, "change": False, "timestamp_us": 1},
        {"state": "CPD_PRE_TIME", "n": 7, "change": True, "timestamp_us": 2},
    ]


def _address(tag: str) -> str:
    return f"\0smdbus-test-state-{tag}-{os.getpid()}"


async def _smd(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "smdbus",
        "state",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_smd_state_prints_the_current_state_from_another_process() -> None:
    from smdbus.proxy import Proxy, ProxySettings

    address = _address("once")
    bus = Bus()
    async with Proxy(ProxySettings(address=address), bus=bus):
        mgr = StateManager(bus)
        StateResponder(mgr, bus)
        mgr.steps(State.OPERATIONAL)
        proc = await _smd("--socket", "@" + address[1:], "--timeout", str(STEP))
        out, err = await asyncio.wait_for(proc.communicate(), STEP)
    assert proc.returncode == 0, err.decode()
    assert out.decode() == "OPERATIONAL\n"


async def test_smd_state_watch_prints_each_change_as_the_boot_goes_on() -> None:
    from smdbus.proxy import Proxy, ProxySettings

    address = _address("watch")
    bus = Bus()
    dhcp = {"bound": False}

    def lease(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        return int(tgt == State.DHCP and cur != tgt and not dhcp["bound"])

    async with Proxy(ProxySettings(address=address), bus=bus):
        mgr = StateManager(bus, notifiers=[lease])
        StateResponder(mgr, bus)
        assert mgr.steps(State.OPERATIONAL) is False  # held before DHCP
        proc = await _smd("--socket", "@" + address[1:], "--watch")
        assert proc.stdout is not None
        try:
            first = await asyncio.wait_for(proc.stdout.readline(), STEP)
            assert first == b"IFACE_COLDPLUG\n"  # the answer to its query: it is connected
            dhcp["bound"] = True
            assert mgr.resume() is True
            lines = [await asyncio.wait_for(proc.stdout.readline(), STEP) for _ in range(10)]
        finally:
            proc.terminate()
            await proc.wait()
    names = [s.name for s in State if State.DHCP <= s <= State.OPERATIONAL]
    assert [x.decode().strip() for x in lines] == names


async def test_smd_state_without_a_proxy_says_so() -> None:
    proc = await _smd("--socket", "@smdbus-test-nobody-here", "--timeout", "1")
    out, err = await asyncio.wait_for(proc.communicate(), STEP)
    assert proc.returncode == 1 and out == b""
    assert b"no proxy at @smdbus-test-nobody-here" in err
