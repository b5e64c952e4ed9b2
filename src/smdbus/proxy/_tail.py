"""The tail of a client's socket: reading on to EOF after writing to it failed.

Why: asyncio's transport treats a failed write (EPIPE, ECONNRESET: the client
closed, or stopped reading for good) as the end of the whole connection. It
stops reading and closes the socket, and whatever the client wrote before
closing, still unread in the kernel, is lost with it. For a bus that is
wrong: a publisher that sends a burst and hangs up has published all of it.
The rule is half-close: a failed write ends the delivery *to* that client;
its input is read and published to EOF.

So when the transport reports such an error, the connection takes a
duplicate of the descriptor (before the transport closes its own) and goes
on reading it through a :class:`Tail`: a read-only transport with the same
pause/resume as asyncio's, so flow control (a held publisher stops reading)
works unchanged. Writes are refused: the connection never writes to a client
whose delivery has ended. What is left to read is bounded by the kernel (the
client's send buffer) once the client has closed; a client that only shut
down its reading side and goes on writing is a publisher like any other.

The reader is registered afresh after every read that leaves it reading.
Why: the socket of a client that closed with our bytes unread has an error
pending (ECONNRESET), which the kernel reports as EPOLLERR at once but to a
read only after the data before it. asyncio's loop calls a reader for as long
as the descriptor polls ready, so it reads on to the error. uvloop does not:
libuv's ``uv_poll`` takes POLLERR as the end of the poll, and uvloop then
calls the reader one last time and drops it, silently, with data and the
error still waiting (measured: one read of three, then nothing). A
connection whose delivery ended in this way (a flooder that receives its own
class and never reads) stayed open with its descriptor. A fresh registration
is a new poll that the loop calls on its next pass if anything is left. It
costs system calls per read (asyncio's loop: two ``epoll_ctl``; uvloop: a new
poll handle and a few more), on this path only.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any


class Tail(asyncio.Transport):
    """Read-only transport over a descriptor the connection owns; EOF or an error ends it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fd: int, protocol: asyncio.Protocol, recv_size: int
    ) -> None:
        super().__init__()
        self._loop = loop
        self._fd = fd
        self._recv_size = recv_size
        self._protocol = protocol
        self._reading = False
        self._closed = False

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closed:
            self._reading = True
            self._loop.add_reader(self._fd, self._ready)

    def _ready(self) -> None:
        try:
            data = os.read(self._fd, self._recv_size)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:  # ECONNRESET: the client closed with our bytes unread; the end
            data = b""
        if data == b"":
            self.close()  # which tells the protocol
            return
        if data:
            self._protocol.data_received(data)  # which may pause, resume or close us
        if self._reading:  # the loop may have dropped the reader (the module's docstring)
            self._loop.remove_reader(self._fd)
            self._loop.add_reader(self._fd, self._ready)

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the descriptor and tell the protocol, as asyncio's transports do.

        Whoever closes (EOF here, or the connection hanging up itself), the
        protocol's ``connection_lost`` follows on the loop's next pass: the
        connection learns that its descriptor is free (the proxy resumes
        accepting at once if it paused for EMFILE) and nothing calls it twice.
        """
        if not self._closed:
            self.pause_reading()
            self._closed = True
            os.close(self._fd)
            self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: Any) -> None:
        raise RuntimeError("writing to a client whose delivery has ended")
