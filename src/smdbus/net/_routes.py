"""The routing-table monitor: the kernel's rtnetlink, through the stdlib's AF_NETLINK, onto the bus.

This is the thin adapter around :class:`smdbus.net._routetable.RouteTable`
and the sans-IO parser :mod:`smdbus.net._rtnetlink`: it opens two
``NETLINK_ROUTE`` sockets, one joined to the link, IPv4/IPv6 address and
route groups (the kernel's notifications) and one for dumps, dumps what the
kernel has, turns each notification datagram into one batch of events and
publishes what the table decides on NETWORK.

Everything runs on the asyncio loop that calls :meth:`RouteMonitor.start`
(non-blocking sockets: ``recvfrom`` when ``add_reader`` says readable, which
every loop has; uvloop has no ``sock_recvfrom``), which should be the bus's
loop. With ``netns`` the sockets are opened inside that network namespace
(``/run/netns/NAME``, as ``ip netns`` makes them) by a short-lived thread
that enters it with ``setns(2)``: a socket stays in the namespace it was
made in, and the daemon's own threads never leave theirs. That is how the
tests watch a namespace of their own without touching the host's table.

Subscribing happens before the dump, so nothing falls between the two: a
change that races the dump arrives afterwards as an event and is applied
then (an identical route is not announced twice). A dump the kernel marks
interrupted (``NLM_F_DUMP_INTR``) is made again.

Only the kernel is believed: a datagram from another netlink port (a local
process, which needs privileges to send one) is dropped and counted in
``foreign``. A notification datagram that does not parse, and a socket
overrun (``ENOBUFS``: the kernel dropped notifications), are followed by a
fresh dump whose difference is announced (counted in ``resyncs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from smdbus._announce import Announcer, Publisher
from smdbus.classes import Class
from smdbus.net import _rtnetlink as rtnetlink
from smdbus.net._routetable import NetEvent, RouteTable

log = logging.getLogger("smdbus.net.routes")

Observer = Callable[[Sequence[NetEvent]], None]
DumpListener = Callable[["RouteMonitor"], None]
ChangeListener = Callable[[list[dict[str, str]]], None]

RECV_SIZE = 65536
"""Bytes read per datagram: the kernel's dump datagrams are at most 32 KiB."""
RCVBUF = 1 << 20
"""Receive buffer asked for the notification socket (the kernel caps it at rmem_max)."""
DUMP_TRIES = 5
"""Dumps tried while the kernel reports them interrupted; the last one is kept."""
NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000

T = TypeVar("T")


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def in_netns(name: str, make: Callable[[], T]) -> T:
    """``make()`` run by a thread inside the named network namespace.

    Raises FileNotFoundError if there is no such namespace (it is never
    created), and what ``setns`` or ``make`` raised.
    """
    if not name or "/" in name or name in (".", ".."):
        raise FileNotFoundError(errno.ENOENT, "no network namespace", name)
    fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        # The thread ends in the namespace it entered; nothing else runs on it.
        try:
            _setns(fd)
            result.append(make())
        except BaseException as e:
            failure.append(e)

    try:
        thread = threading.Thread(target=run, name=f"netns-{name}", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if failure:
        raise failure[0]
    return result[0]


def netlink_socket(groups: int = 0) -> socket.socket:
    """A non-blocking ``NETLINK_ROUTE`` socket, joined to ``groups``."""
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
    )
    try:
        if groups:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((0, groups))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_sockets(netns: str | None) -> tuple[socket.socket, socket.socket]:
    """(notifications, dumps), the first subscribed before the second is used."""

    def make() -> tuple[socket.socket, socket.socket]:
        events = netlink_socket(rtnetlink.GROUPS)
        try:
            return events, netlink_socket()
        except BaseException:
            events.close()
            raise

    return make() if netns is None else in_netns(netns, make)


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
        """Fresh dumps after lost or unreadable notifications."""
        self.foreign = 0
        """Datagrams dropped because they did not come from the kernel."""
        self._dump_listeners: list[DumpListener] = []
        self._change_listeners: list[ChangeListener] = []
        self._events: socket.socket | None = None
        self._dumps: socket.socket | None = None
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, dump, then follow changes in a task on this loop.

        Raises what the kernel raised if the sockets cannot be opened or the
        dump fails (FileNotFoundError for a missing namespace); ``dump_done``
        is then True all the same (with ``dump_error`` set) so a held boot
        goes on without routes.
        """
        if self._events is not None:
            raise RuntimeError("RouteMonitor already started")
        try:
            self._events, self._dumps = open_sockets(self.netns)
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

    async def _recv(self, sock: socket.socket) -> bytes:
        """The next datagram from the kernel (others are dropped and counted)."""
        while True:
            data, (port, _groups) = await _recvfrom(sock)
            if port == 0:
                return data
            self.foreign += 1
            log.warning("route monitor: dropped a datagram from netlink port %d", port)

    async def _dump(self) -> list[NetEvent]:
        """Links, addresses and routes, as the kernel has them now (a consistent dump)."""
        assert self._dumps is not None
        events: list[NetEvent] = []
        for _ in range(DUMP_TRIES):
            events, interrupted = await self._dump_once(self._dumps)
            if not interrupted:
                return events
        log.warning("route monitor: the table kept changing during %d dumps", DUMP_TRIES)
        return events

    async def _dump_once(self, sock: socket.socket) -> tuple[list[NetEvent], bool]:
        loop = asyncio.get_running_loop()
        events: list[NetEvent] = []
        interrupted = False
        for kind in (rtnetlink.RTM_GETLINK, rtnetlink.RTM_GETADDR, rtnetlink.RTM_GETROUTE):
            self._seq = self._seq % 0xFFFFFFFF + 1
            seq = self._seq
            await loop.sock_sendall(sock, rtnetlink.dump_request(kind, seq))
            while True:
                datagram = rtnetlink.parse(await self._recv(sock))
                if seq not in datagram.seqs:
                    continue  # the rest of a dump abandoned earlier
                if datagram.error:
                    raise OSError(
                        datagram.error, f"dumping the routing table: {os.strerror(datagram.error)}"
                    )
                events.extend(datagram.events)
                interrupted = interrupted or datagram.interrupted
                if datagram.done:
                    break
        return events, interrupted

    async def _follow(self) -> None:
        assert self._events is not None
        sock = self._events
        while True:
            try:
                data = await self._recv(sock)
            except asyncio.CancelledError:
                raise
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    log.error("route monitor: netlink socket failed: %s", e)
                    return
                await self._resync("netlink overrun: the kernel dropped notifications")
                continue
            try:
                datagram = rtnetlink.parse(data)
            except rtnetlink.MalformedMessage as e:
                await self._resync(f"unreadable notification ({e})")
                continue
            self._handle(datagram.events)

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

    async def _resync(self, why: str) -> None:
        """Notifications were lost or unreadable: dump again and announce the difference."""
        self.resyncs += 1
        log.warning("route monitor: %s; dumping the table again", why)
        self._announce(self.table.resync(await self._dump()))

    def _close_socket(self) -> None:
        for sock in (self._events, self._dumps):
            if sock is not None:
                sock.close()
        self._events = self._dumps = None


async def dump_routes(netns: str | None = None) -> RouteTable:
    """The kernel's table as a filled :class:`RouteTable` (for ``smd routes``)."""
    monitor = RouteMonitor(netns=netns)
    try:
        monitor._dumps = in_netns(netns, netlink_socket) if netns else netlink_socket()
        monitor.table.load(await monitor._dump())
    finally:
        monitor._close_socket()
    return monitor.table


async def _recvfrom(sock: socket.socket) -> tuple[bytes, Any]:
    """``sock.recvfrom`` once the loop says it is readable (``loop.sock_recvfrom`` on any loop)."""
    while True:
        try:
            return sock.recvfrom(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            pass
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = sock.fileno()
        loop.add_reader(fd, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
