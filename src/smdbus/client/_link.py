"""One connection to the proxy: everything that exists only while connected.

Why a separate object: a reconnecting client that keeps its socket, decoder
and timers in its own attributes can have two attempts overwrite each
other's (a second attempt replacing the first's socket, a create timer of a
dead attempt closing the healthy connection later). Here each attempt gets a
:class:`Link`; its socket, protocol state (:class:`~smdbus.wire.Connection`),
registrations, create timer, interest watch and label live and die with it,
:meth:`Link.close` releases all of them at once and only once, and the client
ignores whatever a closed link reports. The client keeps one reconnect task
that makes one link at a time and waits for it to end (see
:mod:`smdbus.client._connection`).

Pacing for a C proxy (see ``docs/client.md``): the C proxy reads 2048 bytes
at a time, splits a frame that straddles two reads into two corrupt
messages, holds at most 32 KiB of a client's unprocessed input and takes one
message from it per loop pass. A link to a peer that did not show our
proxy's mark therefore writes one frame per write, one write per loop pass,
and only when the kernel says the proxy has read everything written before
(:meth:`Link.unread`): the proxy then never has more than one frame to read,
which is exactly what the C client gives it.

A loop that drops a reader (uvloop): a proxy that dies with bytes of ours
unread leaves our socket with its messages, then ECONNRESET, then EOF, and
polling POLLERR. asyncio's loop calls a reader for as long as the socket
polls ready, so the client reads on to the error. uvloop does not: libuv's
``uv_poll`` takes POLLERR as its end, and uvloop calls the reader once more
and drops it without a word, so the client read the messages and never the
end, and stayed READY on a dead socket. On such a loop a link that has
written (:attr:`Link.read_on`) reads on after each read while a ``poll(2)``
of the socket alone, without waiting, says more is there: data, the error
or EOF (see ``Client._on_readable``; such a poll costs a third of a ``recv``
that fails with EAGAIN and raises: 0.25 against 0.78 us, measured here).
Only a link that has written can meet the error: the proxy reads our
STREAMTYPE before it answers, and nothing else goes out on the link but
TX_PAYLOAD, so a subscriber's receive path makes no more system calls on
any loop, nor does any client's on asyncio's loop (any subclass of its
``SelectorEventLoop``; every other loop gets the poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import select
import socket
import struct
from typing import TYPE_CHECKING

from smdbus.wire import Connection, Role

if TYPE_CHECKING:
    from smdbus.scheduler import Timer

_TIOCOUTQ = 0x5411  # Linux (= SIOCOUTQ): bytes not yet read by the peer; no termios import
_OUTQ = struct.Struct("i")
_ZERO = bytes(_OUTQ.size)


class Link:
    """One socket to the proxy, from connect to hang-up (see the module doc)."""

    __slots__ = (
        "closed",
        "conn",
        "create_timer",
        "describer",
        "ended",
        "fd",
        "label_changed",
        "loop",
        "ours",
        "poller",
        "read_on",
        "reader_added",
        "sock",
        "stopping",
        "watch",
        "watch_wanted",
        "writing",
    )

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        stopping: set[asyncio.Task[None]] | None = None,
    ) -> None:
        self.sock = sock
        self.stopping: set[asyncio.Task[None]] = set() if stopping is None else stopping
        """Where :meth:`close` leaves the tasks it cancelled until they end: the client
        awaits them on its close, so none is left pending when its loop ends."""
        self.fd = sock.fileno()
        self.loop = loop
        self.conn = Connection(Role.CLIENT)
        """The stream's protocol state and parser (sans I/O)."""
        self.reader_added = False
        self.poller: select.poll | None = None
        """This socket alone, to ask without waiting whether more is left to read (not a
        descriptor: ``poll(2)`` takes its list per call); on a loop that may drop readers."""
        if not isinstance(loop, asyncio.SelectorEventLoop):  # asyncio's reads to the end
            self.poller = select.poll()
            self.poller.register(self.fd, select.POLLIN)  # POLLERR and POLLHUP come anyway
        self.read_on: select.poll | None = None
        """:attr:`poller` once the link wrote: read on after each read while it says ready."""
        self.writing = False  # a writer callback waits for the socket
        self.create_timer: Timer | None = None
        self.watch: asyncio.Task[None] | None = None  # the interest watch (our proxy only)
        self.watch_wanted = False  # opened on first need: a pure subscriber never opens one
        self.describer: asyncio.Task[None] | None = None  # sends the label (our proxy only)
        self.label_changed: asyncio.Event | None = None
        self.ours = False
        """The peer showed our proxy's mark in CREATE_RESULT: batching is safe."""
        self.closed = False
        self.ended: asyncio.Future[str] = loop.create_future()
        """Resolves with the reason once the link is closed."""

    @property
    def paced(self) -> bool:
        """Write one frame per write and loop pass (a C proxy, or a peer not known to be ours)."""
        return not self.ours

    def unread(self) -> int:
        """Bytes (kernel accounting) written and not yet read by the proxy; 0 when all read."""
        try:
            return int(_OUTQ.unpack(fcntl.ioctl(self.fd, _TIOCOUTQ, _ZERO))[0])
        except OSError:
            return 0  # the socket is gone: the next send says so

    def close(self, reason: str) -> bool:
        """Release everything the link holds; True the first time, False after."""
        if self.closed:
            return False
        self.closed = True
        if self.create_timer is not None:
            self.create_timer.cancel()
            self.create_timer = None
        for task in (self.watch, self.describer):
            if task is not None and not task.done():
                task.cancel()
                self.stopping.add(task)
                task.add_done_callback(self.stopping.discard)
        self.watch = self.describer = None
        loop = self.loop
        if not loop.is_closed():
            if self.reader_added:
                loop.remove_reader(self.fd)
            if self.writing:
                loop.remove_writer(self.fd)
        self.reader_added = False
        self.writing = False
        with contextlib.suppress(OSError):
            self.sock.close()
        if not self.ended.done():
            self.ended.set_result(reason)
        return True
