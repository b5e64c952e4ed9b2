"""The route monitor against a real kernel table, in a network namespace made by the test.

Every change is made with ``ip`` inside the namespace; the monitor watches
that namespace through AF_NETLINK sockets opened inside it. After each
change the test renames a sentinel (``ip link set ... alias``): netlink keeps order, so once the
monitor has seen the sentinel it has seen everything before it, and the
bus messages can be compared exactly. IPv6 is switched off in the namespace
so its link-local routes do not join in.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from conftest import MakeNetns
from smdbus import Bus, Class
from smdbus.daemon._gates import ColdplugGate, CpdGate
from smdbus.net import Policy, RouteMonitor, dump_routes, parse_policy
from smdbus.net._routetable import LinkChanged, NetEvent, Route

ADD = b'{"rt":"add"}'
DEL = b'{"rt":"del"}'
GW = b'{"trigger":"cpdcheck","src":"gw-change"}'

_names = itertools.count()


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def netns(make_netns: MakeNetns) -> str:
    """A fresh namespace with up links ``d0`` and ``s0`` (``s0``: the sentinel, always up)."""
    return make_netns("smdtest", "d0", "s0", lo=False)


class Watch:
    """A monitor on a real bus, with the sentinel handshake and the messages it published."""

    def __init__(self, netns: str, bus: Bus) -> None:
        self.netns = netns
        self.bus = bus
        self.messages: list[bytes] = []
        self.aliases: list[str] = []
        self._seen = asyncio.Event()
        self._marks = itertools.count()
        bus.register(Class.NETWORK, lambda c, t, p: self.messages.append(p), name="watch")
        self.monitor = RouteMonitor(bus, netns=netns, observer=self._observe)

    def _observe(self, events: Sequence[NetEvent]) -> None:
        for ev in events:
            if isinstance(ev, LinkChanged) and ev.alias:
                self.aliases.append(ev.alias)
                self._seen.set()

    async def do(self, *commands: Sequence[str]) -> list[bytes]:
        """Run ``ip -n NS ...`` commands; return what the monitor published because of them."""
        self.messages.clear()
        for cmd in commands:
            _ip("-n", self.netns, *cmd)
        mark = f"m{next(self._marks)}"
        # The kernel tells alias changes of up links only: s0 stays up.
        _ip("-n", self.netns, "link", "set", "s0", "alias", mark)

        async def sentinel() -> None:
            while mark not in self.aliases:
                self._seen.clear()
                await self._seen.wait()

        await asyncio.wait_for(sentinel(), 5)
        await self.bus.drain()
        return list(self.messages)

    async def agrees_with_kernel(self) -> None:
        """The cache holds what a fresh dump of the namespace holds."""
        fresh = await dump_routes(self.netns)
        assert sorted(map(repr, self.monitor.table.routes)) == sorted(map(repr, fresh.routes))

    def routes(self, table: int = 254) -> list[Route]:
        return [r for r in self.monitor.table.routes if r.table == table]


@pytest.fixture
async def watch(netns: str) -> AsyncIterator[Watch]:
    async with Bus() as bus:
        w = Watch(netns, bus)
        await w.monitor.start()
        yield w
        await w.monitor.stop()


def ifindex(netns: str, name: str) -> int:
    out = json.loads(_ip("-n", netns, "-j", "link", "show", name).stdout)
    return int(out[0]["ifindex"])


async def test_initial_dump_of_an_empty_namespace(watch: Watch) -> None:
    assert watch.monitor.dump_done and watch.monitor.dump_error is None
    assert watch.monitor.table.routes == []
    assert watch.monitor.table.link_names()[ifindex(watch.netns, "d0")] == "d0"


async def test_route_changes_give_exact_messages(watch: Watch) -> None:
    ns = watch.netns
    d0 = ifindex(ns, "d0")
    changes: list[list[dict[str, str]]] = []
    watch.monitor.add_change_listener(changes.append)

    # An address brings its local and prefix routes (the broadcast one is not cached).
    assert await watch.do(("addr", "add", "10.9.0.2/24", "dev", "d0")) == [ADD, ADD]
    assert watch.routes() == [
        Route(
            socket.AF_INET,
            "10.9.0.0",
            24,
            ifindex=d0,
            table=254,
            protocol=2,
            scope=253,
            prefsrc="10.9.0.2",
        )
    ]

    # A route via a gateway: added, and CPD is asked to look again.
    assert await watch.do(("route", "add", "10.20.0.0/16", "via", "10.9.0.1")) == [ADD, GW]
    assert await watch.do(("route", "add", "default", "via", "10.9.0.1", "metric", "5")) == [
        ADD,
        GW,
    ]
    default = [r for r in watch.routes() if r.is_default]
    assert default == [
        Route(
            socket.AF_INET,
            None,
            0,
            gateway="10.9.0.1",
            ifindex=d0,
            priority=5,
            table=254,
            protocol=3,
            scope=0,
        )
    ]
    # A route without a gateway: no trigger.
    assert await watch.do(("route", "add", "10.30.0.0/16", "dev", "d0")) == [ADD]

    assert await watch.do(("route", "del", "10.20.0.0/16")) == [DEL, GW]
    assert await watch.do(("route", "del", "default", "via", "10.9.0.1", "metric", "5")) == [
        DEL,
        GW,
    ]
    assert await watch.do(("route", "del", "10.30.0.0/16")) == [DEL]
    assert [r.dst for r in watch.routes()] == ["10.9.0.0"]
    await watch.agrees_with_kernel()
    assert changes[-1] == [{"rt": "del"}]
    assert watch.monitor.table.lookup("10.30.1.1") is None  # no longer routable
    assert watch.monitor.table.lookup("10.9.0.7") == watch.routes()[0]

    # Several changes in one go: one message per route, one trigger per kernel batch.
    assert await watch.do(
        ("route", "add", "default", "via", "10.9.0.1"),
        ("route", "add", "10.40.0.0/16", "via", "10.9.0.1"),
    ) == [ADD, GW, ADD, GW]

    # Removing the address takes every route that hung on it, the gateway ones included,
    # which the kernel drops without a word: one del, one trigger.
    assert await watch.do(("addr", "del", "10.9.0.2/24", "dev", "d0")) == [DEL, GW]
    assert watch.monitor.table.routes == []
    assert watch.monitor.table.addresses == []
    await watch.agrees_with_kernel()


async def test_link_down_takes_its_routes(watch: Watch) -> None:
    await watch.do(("addr", "add", "10.9.0.2/24", "dev", "d0"))
    await watch.do(("route", "add", "default", "via", "10.9.0.1"))
    assert await watch.do(("link", "set", "d0", "down")) == [DEL, GW]
    # Only the local route of the address stays, as in the kernel.
    assert [(r.dst, r.table) for r in watch.monitor.table.routes] == [("10.9.0.2", 255)]
    await watch.agrees_with_kernel()
    # Up again: the kernel restores the prefix route, not the default route.
    assert await watch.do(("link", "set", "d0", "up")) == [ADD]
    assert [r.gateway for r in watch.monitor.table.routes] == [None, None]
    await watch.agrees_with_kernel()


async def test_dump_sees_what_was_there_before(netns: str) -> None:
    _ip("-n", netns, "addr", "add", "10.9.0.2/24", "dev", "d0")
    _ip("-n", netns, "route", "add", "default", "via", "10.9.0.1")
    async with Bus() as bus:
        got: list[bytes] = []
        bus.register(Class.NETWORK, lambda c, t, p: got.append(p))
        monitor = RouteMonitor(bus, netns=netns)
        await monitor.start()
        await bus.drain()
        await monitor.stop()
    assert got == []  # the dump is silent
    gw = monitor.table.gateways()
    assert [(r.gateway, r.is_default) for r in gw] == [("10.9.0.1", True)]
    assert len(monitor.table.routes) == 3  # local, prefix, default


def test_the_monitor_reads_netlink_on_uvloop(netns: str) -> None:
    """``smd daemon`` runs on uvloop when installed, and uvloop has no ``sock_recvfrom``."""
    uvloop = pytest.importorskip("uvloop", reason="uvloop not installed (smdbus[fast])")
    _ip("-n", netns, "addr", "add", "10.9.0.2/24", "dev", "d0")
    _ip("-n", netns, "route", "add", "default", "via", "10.9.0.1")

    async def main() -> RouteMonitor:
        async with Bus() as bus:
            monitor = RouteMonitor(bus, netns=netns)
            await monitor.start()
            await monitor.stop()
        return monitor

    monitor = uvloop.run(main())
    assert monitor.dump_done and monitor.dump_error is None
    assert [(r.gateway, r.is_default) for r in monitor.table.gateways()] == [("10.9.0.1", True)]


async def test_coldplug_gate_holds_until_the_dump(netns: str) -> None:
    from smdbus.system import State, StateManager

    async with Bus() as bus:
        states: list[bytes] = []
        bus.register(Class.SYSTEM_STATE, lambda c, t, p: states.append(p))
        monitor = RouteMonitor(bus, netns=netns)
        gate = ColdplugGate(monitor)
        manager = StateManager(bus, notifiers=[("routes-coldplug", gate)])
        assert manager.steps(State.OPERATIONAL) is False
        assert manager.state == State.COLLECTING_STDIN
        assert gate.refusals == 1
        await monitor.start()
        assert manager.state.name == "OPERATIONAL"
        await bus.drain()
        await monitor.stop()
    names = [json.loads(s)["state"] for s in states]
    assert names[names.index("COLLECTING_STDIN") :][:3] == [
        "COLLECTING_STDIN",
        "IFACE_COLDPLUG",
        "DHCP",
    ]
    assert names[-1] == "OPERATIONAL"


def test_smd_routes_command_in_the_namespace(netns: str) -> None:
    _ip("-n", netns, "addr", "add", "10.9.0.2/24", "dev", "d0")
    _ip("-n", netns, "route", "add", "default", "via", "10.9.0.1", "metric", "7")
    smd = [sys.executable, "-m", "smdbus", "routes", "--netns", netns]
    lines = subprocess.run(smd, check=True, capture_output=True, text=True).stdout.splitlines()
    assert "default via 10.9.0.1 dev d0 proto boot scope global metric 7" in lines
    assert "10.9.0.0/24 dev d0 proto kernel scope link src 10.9.0.2" in lines
    assert len(lines) == 3
    out = json.loads(
        subprocess.run([*smd, "--json"], check=True, capture_output=True, text=True).stdout
    )
    default = next(r for r in out if r["dst"] is None)
    assert (default["gateway"], default["priority"], default["dev"], default["family"]) == (
        "10.9.0.1",
        7,
        "d0",
        "inet",
    )


def test_smd_routes_names_a_missing_namespace() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "smdbus", "routes", "--netns", "smd-no-such-ns"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "network namespace 'smd-no-such-ns'" in r.stderr
    assert "smd-no-such-ns" not in _ip("netns", "list").stdout  # and it was not created


async def test_a_gateway_change_in_the_kernel_makes_cpd_look_again(watch: Watch) -> None:
    from smdbus.net import CaptivePortalDetect, CaptivePortalDetector

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = CaptivePortalDetect(endpoint="127.0.0.1", port=port, http_expect=204)
    detector = CaptivePortalDetector(settings, bus=watch.bus)
    try:
        assert await watch.do(("addr", "add", "10.9.0.2/24", "dev", "d0")) == [ADD, ADD]
        assert detector.checks == 0
        assert await watch.do(("route", "add", "default", "via", "10.9.0.1")) == [ADD, GW]
        assert detector.checks == 1
        report = await detector.check()  # joins the check the trigger started
        assert report.trigger == "cpdcheck:gw-change"
        await watch.bus.drain()
        assert watch.messages[-1] == b'{"type":"cpd","result":"OK"}'
    finally:
        await detector.aclose()
        server.close()
        await server.wait_closed()


def _policy_for(port: int) -> Policy:
    return parse_policy(
        {
            "s": [
                {
                    "captive_portal_detect": {
                        "endpoint": "127.0.0.1",
                        "port": port,
                        "http_url": "generate_204",
                        "http_expect": 204,
                        "http_fail_redirect": True,
                    }
                }
            ]
        }
    )


async def _ok_server() -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


async def test_route_monitor_and_cpd_gates_boot_a_device(netns: str) -> None:
    """The network half of the daemon's boot: coldplug waits for the dump, CPD for OK."""
    from smdbus.net import CaptivePortalDetector
    from smdbus.system import State, StateManager

    server = await _ok_server()
    port = server.sockets[0].getsockname()[1]
    async with Bus() as bus:
        monitor = RouteMonitor(bus, netns=netns)
        detector = CaptivePortalDetector.from_policy(_policy_for(port), bus=bus)
        manager = StateManager(
            bus, notifiers=[("routes-coldplug", ColdplugGate(monitor)), ("cpd", CpdGate(detector))]
        )
        manager.steps(State.OPERATIONAL)
        assert manager.state.name == "COLLECTING_STDIN"
        await monitor.start()
        await asyncio.wait_for(manager.wait_for(State.OPERATIONAL), 5)
        assert monitor.running
        await monitor.stop()
        await detector.aclose()
    server.close()
    await server.wait_closed()


async def test_a_datagram_not_from_the_kernel_is_dropped_and_counted(watch: Watch) -> None:
    """Root can send to the monitor's netlink port; only the kernel's messages are believed."""
    from smdbus.net._routes import in_netns, netlink_socket

    events = watch.monitor._events
    assert events is not None
    port = events.getsockname()[0]
    # A well-formed notification of a default route via a gateway, as the kernel would send it.
    golden = Path(__file__).parent / "data" / "rtnetlink.hex"
    forged = next(
        bytes.fromhex(line.split()[1])
        for line in golden.read_text().splitlines()
        if line.startswith("route-new-default ")
    )
    sender = in_netns(watch.netns, netlink_socket)
    try:
        sender.sendto(forged, (port, 0))
    finally:
        sender.close()
    assert await watch.do() == []
    assert watch.monitor.foreign == 1
    assert watch.monitor.table.gateways() == []


async def test_an_overrun_is_followed_by_a_fresh_dump(watch: Watch) -> None:
    """The kernel drops notifications when the socket is full (ENOBUFS): dump, announce the rest.

    No sentinel here: after an overrun netlink drops every notification until
    the queue has been read dry. The test waits for the 300 announcements.
    """
    events = watch.monitor._events
    assert events is not None
    got: list[bytes] = []
    arrived = asyncio.Event()

    def collect(c: int, t: int, p: bytes) -> None:
        got.append(p)
        arrived.set()

    watch.bus.register(Class.NETWORK, collect, name="overrun")
    # The loop is blocked while ip runs: 300 routes into a small buffer overflow it.
    events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    batch = "".join(f"route add 10.{i // 200}.{i % 200}.0/24 dev d0\n" for i in range(300))
    subprocess.run(["ip", "-n", watch.netns, "-batch", "-"], input=batch, text=True, check=True)

    async def all_announced() -> None:
        while len(got) < 300:
            arrived.clear()
            await arrived.wait()

    await asyncio.wait_for(all_announced(), 10)
    assert got == [ADD] * 300
    assert watch.monitor.resyncs == 1
    assert len(watch.routes()) == 300
    await watch.agrees_with_kernel()
