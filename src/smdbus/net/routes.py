"""The routing-table monitor: the kernel's rtnetlink, through pyroute2, onto the bus.

This is the thin adapter around :class:`smdbus.net.routetable.RouteTable`:
it subscribes to the link, IPv4/IPv6 address and route groups, dumps what
the kernel has, turns each netlink datagram into one batch of events and
publishes what the table decides on NETWORK.

Everything runs on the asyncio loop that calls :meth:`RouteMonitor.start`
(pyroute2 0.9's :class:`~pyroute2.AsyncIPRoute`), which should be the bus's
loop. With ``netns`` the socket is opened inside that network namespace
(pyroute2 does it in a short-lived child process), which is how the tests
watch a namespace of their own without touching the host's table.

Subscribing happens before the dump, so nothing falls between the two: a
change that races the dump arrives afterwards as an event and is applied
then (an identical route is not announced twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable, Sequence
from typing import Any

from smdbus.classes import Class
from smdbus.net.announce import Announcer, Publisher
from smdbus.net.routetable import (
    Address,
    AddressAdded,
    AddressRemoved,
    LinkChanged,
    LinkRemoved,
    NetEvent,
    Route,
    RouteAdded,
    RouteRemoved,
    RouteTable,
)

log = logging.getLogger("smdbus.net.routes")

IFF_UP = 0x1
RTM_F_CLONED = 0x200

Observer = Callable[[Sequence[NetEvent]], None]
DumpListener = Callable[["RouteMonitor"], None]
ChangeListener = Callable[[list[dict[str, str]]], None]


def _groups() -> int:
    from pyroute2.netlink.rtnl import (
        RTMGRP_IPV4_IFADDR,
        RTMGRP_IPV4_ROUTE,
        RTMGRP_IPV6_IFADDR,
        RTMGRP_IPV6_ROUTE,
        RTMGRP_LINK,
    )

    groups: int = (
        RTMGRP_LINK
        | RTMGRP_IPV4_IFADDR
        | RTMGRP_IPV6_IFADDR
        | RTMGRP_IPV4_ROUTE
        | RTMGRP_IPV6_ROUTE
    )
    return groups


def parse_message(msg: Any) -> NetEvent | None:
    """One pyroute2 rtnetlink message as an event, or None for what we do not track."""
    event = msg.get("event")
    if event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
        if msg.get("flags", 0) & RTM_F_CLONED:
            return None
        gateway = msg.get_attr("RTA_GATEWAY")
        ifindex = msg.get_attr("RTA_OIF")
        for hop in msg.get_attr("RTA_MULTIPATH") or ():
            # Multipath: keep the first hop's gateway and device.
            if gateway is None:
                gateway = hop.get_attr("RTA_GATEWAY")
            if ifindex is None:
                ifindex = hop.get("oif")
        route = Route(
            family=msg["family"],
            dst=msg.get_attr("RTA_DST"),
            dst_len=msg["dst_len"],
            gateway=gateway,
            ifindex=ifindex,
            priority=msg.get_attr("RTA_PRIORITY"),
            table=msg.get_attr("RTA_TABLE") or msg["table"],
            protocol=msg["proto"],
            scope=msg["scope"],
            type=msg["type"],
            src=msg.get_attr("RTA_SRC"),
            src_len=msg["src_len"],
            prefsrc=msg.get_attr("RTA_PREFSRC"),
            tos=msg["tos"],
        )
        return RouteAdded(route) if event == "RTM_NEWROUTE" else RouteRemoved(route)
    if event in ("RTM_NEWADDR", "RTM_DELADDR"):
        # IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point
        # links and the only one given for IPv6.
        address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        if address is None:
            return None
        a = Address(msg["family"], address, msg["prefixlen"], msg["index"], msg["scope"])
        return AddressAdded(a) if event == "RTM_NEWADDR" else AddressRemoved(a)
    if event == "RTM_NEWLINK":
        return LinkChanged(
            msg["index"],
            msg.get_attr("IFLA_IFNAME"),
            bool(msg["flags"] & IFF_UP),
            msg.get_attr("IFLA_IFALIAS"),
        )
    if event == "RTM_DELLINK":
        return LinkRemoved(msg["index"], msg.get_attr("IFLA_IFNAME"))
    return None


def parse_batch(messages: Sequence[Any]) -> list[NetEvent]:
    return [ev for ev in map(parse_message, messages) if ev is not None]


class RouteMonitor:
    """Keeps a :class:`RouteTable` in step with the kernel and announces its changes.

    ``observer`` (optional) sees every batch of parsed events before the
    table does: for logging and for tests that need to know a change was
    processed. ``dump_done`` turns True once the initial dump is in the cache
    (or the dump failed: boot must not hang on it; ``dump_error`` says why).
    """

    def __init__(
        self,
        bus: Publisher | None = None,
        *,
        netns: str | None = None,
        table: RouteTable | None = None,
        observer: Observer | None = None,
        smd_class: int = Class.NETWORK,
    ) -> None:
        self.netns = netns
        self.table = table if table is not None else RouteTable()
        self.observer = observer
        self.smd_class = smd_class
        self.announcer = Announcer(bus, "routes")
        self.dump_done = False
        self.dump_error: BaseException | None = None
        self.resyncs = 0
        self._dump_listeners: list[DumpListener] = []
        self._change_listeners: list[ChangeListener] = []
        self._ipr: Any = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, dump, then follow changes in a task on this loop.

        Raises what the kernel or pyroute2 raised if the socket cannot be
        opened or the dump fails; ``dump_done`` is then True all the same
        (with ``dump_error`` set) so a held boot goes on without routes.
        """
        if self._ipr is not None:
            raise RuntimeError("RouteMonitor already started")
        try:
            from pyroute2 import AsyncIPRoute

            # flags=0: open an existing namespace, never create one by a typo.
            self._ipr = AsyncIPRoute(netns=self.netns, flags=0, groups=_groups())
            await self._ipr.bind()
            self.table.load(await self._dump())
        except BaseException as e:
            self.dump_error = e
            self._close_socket()
            self._finish_dump()
            raise
        self._finish_dump()
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="route-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._close_socket()

    async def __aenter__(self) -> RouteMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- the coldplug gate's side ----------------------------------------------

    def add_dump_listener(self, listener: DumpListener) -> Callable[[], None]:
        """Call ``listener(monitor)`` once the initial dump is done (at once if it is)."""
        if self.dump_done:
            listener(self)
            return lambda: None
        self._dump_listeners.append(listener)

        def remove() -> None:
            if listener in self._dump_listeners:
                self._dump_listeners.remove(listener)

        return remove

    def add_change_listener(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener(messages)`` after each batch that changed the cache.

        For owners of connections (the broker's TCP side, an MQTT bridge):
        after a ``{"rt":"del"}`` they ask ``monitor.table.lookup(peer)`` and
        close what is no longer routable.
        """
        self._change_listeners.append(listener)

        def remove() -> None:
            if listener in self._change_listeners:
                self._change_listeners.remove(listener)

        return remove

    async def wait_dump(self) -> None:
        if self.dump_done:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(_monitor: RouteMonitor) -> None:
            if not fut.done():
                fut.set_result(None)

        self.add_dump_listener(done)
        await fut

    def _finish_dump(self) -> None:
        self.dump_done = True
        listeners, self._dump_listeners = self._dump_listeners, []
        for listener in listeners:
            try:
                listener(self)
            except Exception:
                log.exception("route dump listener %r raised", listener)

    # -- kernel side -------------------------------------------------------------

    async def _dump(self) -> list[NetEvent]:
        ipr = self._ipr
        messages: list[Any] = []
        for kind in ("link", "addr", "route"):
            messages.extend([m async for m in await getattr(ipr, kind)("dump")])
        return parse_batch(messages)

    async def _follow(self) -> None:
        ipr = self._ipr
        while True:
            try:
                batch = [m async for m in ipr.get()]
            except asyncio.CancelledError:
                raise
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    log.error("route monitor: netlink socket failed: %s", e)
                    return
                await self._resync()
                continue
            except Exception as e:  # pyroute2 reports overruns as NetlinkError(ENOBUFS)
                if getattr(e, "code", None) == errno.ENOBUFS:
                    await self._resync()
                    continue
                log.exception("route monitor: reading netlink failed")
                return
            if not batch:
                log.info("route monitor: netlink socket closed")
                return
            self._handle(parse_batch(batch))

    def _handle(self, events: list[NetEvent]) -> None:
        if not events:
            return
        if self.observer is not None:
            try:
                self.observer(events)
            except Exception:
                log.exception("route monitor observer raised")
        messages = self.table.feed(events)
        self._announce(messages)

    def _announce(self, messages: list[dict[str, str]]) -> None:
        for message in messages:
            self.announcer.announce(self.smd_class, message)
        if messages:
            for listener in tuple(self._change_listeners):
                try:
                    listener(messages)
                except Exception:
                    log.exception("route change listener %r raised", listener)

    async def _resync(self) -> None:
        """The kernel dropped messages (socket overrun): dump again and announce the difference."""
        self.resyncs += 1
        log.warning("route monitor: netlink overrun, dumping the table again")
        self._announce(self.table.resync(await self._dump()))

    def _close_socket(self) -> None:
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            try:
                ipr.close()
            except Exception:
                log.debug("closing the netlink socket", exc_info=True)


async def dump_routes(netns: str | None = None) -> RouteTable:
    """The kernel's table as a filled :class:`RouteTable` (for ``smd routes``)."""
    monitor = RouteMonitor(netns=netns)
    try:
        from pyroute2 import AsyncIPRoute

        monitor._ipr = AsyncIPRoute(netns=netns, flags=0)
        monitor.table.load(await monitor._dump())
    finally:
        monitor._close_socket()
    return monitor.table
