"""The daemon's gates on a real state manager: DHCP, CPD (any result), the policy cycle."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from smdbus import Bus, Class
from smdbus.daemon._gates import CpdGate, DhcpGate, PolicyGate, usable_addresses
from smdbus.net import CaptivePortalDetector, CpdState, default_policy
from smdbus.net._routetable import (
    Address,
    AddressAdded,
    AddressRemoved,
    LinkChanged,
    RouteTable,
)
from smdbus.scheduler import ManualScheduler
from smdbus.system import State, StateManager

INET = int(socket.AF_INET)
INET6 = int(socket.AF_INET6)


def _table(*events: object) -> RouteTable:
    t = RouteTable()
    t.load([LinkChanged(1, "lo", True), LinkChanged(2, "eth0", True), *events])  # type: ignore[list-item]
    return t


def test_usable_addresses_skip_loopback_link_local_and_down_links() -> None:
    t = _table(
        AddressAdded(Address(INET, "127.0.0.1", 8, 1, 254)),
        AddressAdded(Address(INET, "169.254.3.4", 16, 2, 0)),
        AddressAdded(Address(INET6, "fe80::1", 64, 2, 253)),
        AddressAdded(Address(INET6, "::1", 128, 1, 254)),
    )
    assert usable_addresses(t) == []
    good = Address(INET, "192.0.2.7", 24, 2, 0)
    t.feed([AddressAdded(good)])
    assert usable_addresses(t) == [("eth0", good)]
    t.feed([LinkChanged(2, "eth0", False)])
    assert usable_addresses(t) == []
    t.feed([LinkChanged(2, "eth0", True), AddressAdded(Address(INET6, "2001:db8::7", 64, 2, 0))])
    assert sorted(a.address for _, a in usable_addresses(t)) == ["192.0.2.7", "2001:db8::7"]


def _state(manager: StateManager) -> State:
    """The state now (a call, so type checkers do not keep an earlier assert's narrowing)."""
    return manager.state


async def test_dhcp_gate_holds_until_an_address_appears() -> None:
    table = _table()
    notes: list[str] = []
    gate = DhcpGate(table, on_note=lambda lvl, text: notes.append(text))
    manager = StateManager()
    manager.register(gate, "dhcp")
    assert manager.steps(State.OPERATIONAL) is False
    assert manager.state == State.IFACE_COLDPLUG and manager.held_by is not None
    assert "waiting for an interface with a usable address (for ever, as C)" in notes[-1]

    gate.changed()  # nothing new: still held
    assert manager.held_by is not None and manager.held_by.name == "dhcp"
    table.feed([AddressAdded(Address(INET, "10.1.2.3", 24, 2, 0))])
    gate.changed()
    assert _state(manager) == State.OPERATIONAL
    assert notes[-1] == "DHCP: eth0 holds 10.1.2.3/24"
    # the address leaves: an operational system does not go back by itself
    table.feed([AddressRemoved(Address(INET, "10.1.2.3", 24, 2, 0))])
    gate.changed()
    assert _state(manager) == State.OPERATIONAL


def test_dhcp_gate_timeout_steps_on_and_says_so() -> None:
    """The give-up runs on the injected scheduler: 5 s pass in one call, not in 5 s."""
    notes: list[str] = []
    timers = ManualScheduler()
    gate = DhcpGate(
        _table(),
        timeout=5.0,
        on_note=lambda lvl, text: notes.append(f"{lvl}: {text}"),
        scheduler=timers,
    )
    manager = StateManager(scheduler=timers)
    manager.register(gate, "dhcp")
    assert manager.steps(State.OPERATIONAL) is False
    assert timers.advance(4.999) == 0 and manager.state == State.IFACE_COLDPLUG
    assert not gate.gave_up
    assert timers.advance(0.001) == 1
    assert gate.gave_up and manager.state == State.OPERATIONAL
    assert "warning: DHCP: no usable address after 5 s (gates.dhcp_timeout); stepping on" in notes


def test_dhcp_gate_without_a_table_steps_on_with_the_reason() -> None:
    notes: list[str] = []
    gate = DhcpGate(None, unavailable="pyroute2 missing", on_note=lambda lvl, t: notes.append(t))
    manager = StateManager()
    manager.register(gate, "dhcp")
    assert manager.steps(State.OPERATIONAL) is True
    assert notes == ["DHCP: cannot see addresses (pyroute2 missing); stepping on"]


async def _http(status: bytes) -> tuple[asyncio.AbstractServer, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with Bus() as b:
        yield b


@pytest.mark.parametrize(
    ("status", "result", "state"),
    [(b"204 No Content", "OK", CpdState.OK), (b"200 OK", "No internet", CpdState.NO_INTERNET)],
)
async def test_cpd_result_gate_steps_on_after_any_result(
    bus: Bus, status: bytes, result: str, state: CpdState
) -> None:
    server, port = await _http(status)
    seen: list[bytes] = []
    bus.register(Class.NETWORK | Class.SYSTEM_STATE, lambda c, t, p: seen.append(p))
    detector = CaptivePortalDetector.from_policy(
        default_policy(), bus=bus, url=f"http://127.0.0.1:{port}/generate_204", retry=None
    )
    gate = CpdGate(detector, require_ok=False)
    manager = StateManager(bus)
    manager.register(gate, "cpd")
    try:
        assert manager.steps(State.OPERATIONAL) is False
        assert manager.state == State.DHCP and detector.running
        async with asyncio.timeout(5):
            await manager.wait_for(State.OPERATIONAL)
        await bus.drain()
        assert detector.state is state and detector.checks == 1
        cpd = f'{{"type":"cpd","result":"{result}"}}'.encode()
        assert seen.index(cpd) < seen.index(b'{"state":"CPD_PRE_TIME"}')
        # the result is known: a POLICY_INVALID cycle passes without a new check
        assert manager.policy_invalid() is True and detector.checks == 1
    finally:
        await detector.aclose()
        server.close()


async def test_cpd_result_gate_follows_a_replaced_detector(bus: Bus) -> None:
    policy = default_policy()
    old = CaptivePortalDetector.from_policy(policy, url="http://127.0.0.1:9/", retry=None)
    new = CaptivePortalDetector.from_policy(policy, url="http://127.0.0.1:9/", retry=None)
    gate = CpdGate(old, require_ok=False)
    gate.replace(new)
    assert gate.detector is new
    assert old._listeners == [] and len(new._listeners) == 1


async def test_policy_gate_reloads_while_policy_invalid_holds(bus: Bus) -> None:
    states: list[bytes] = []
    bus.register(Class.SYSTEM_STATE, lambda c, t, p: states.append(p))
    reloaded = asyncio.Event()
    calls: list[State] = []
    manager = StateManager(bus)

    async def reload() -> bool:
        calls.append(manager.state)
        await reloaded.wait()
        return True

    gate = PolicyGate(reload)
    manager.register(gate, "policy")
    assert manager.steps(State.OPERATIONAL) is True
    await bus.drain()
    states.clear()

    assert manager.policy_invalid() is False
    assert manager.state == State.POLICY_INVALID and gate.stale
    await asyncio.sleep(0)
    assert calls == [State.POLICY_INVALID]
    reloaded.set()
    async with asyncio.timeout(5):
        await manager.wait_for(State.OPERATIONAL, exact=True)
    await bus.drain()
    assert gate.reloads == 1 and not gate.stale and gate.valid
    assert states[0] == b'{"state":"POLICY_INVALID"}'
    assert states[1] == b'{"state":"INITIALIZED"}'
    assert states[-1] == b'{"state":"OPERATIONAL"}'
    assert len(states) == 14


async def test_policy_gate_holds_policy_valid_without_a_valid_policy() -> None:
    async def reload() -> bool:
        return False

    gate = PolicyGate(reload)
    manager = StateManager()
    manager.register(gate, "policy")
    manager.steps(State.OPERATIONAL)
    assert manager.policy_invalid() is False
    async with asyncio.timeout(5):
        while gate.reloads == 0 or gate.stale:
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert manager.state == State.CPD_POST_TIME, "held before POLICY_VALID"
    assert manager.held_by is not None and manager.held_by.name == "policy"
