"""A blocking connection to a proxy, for the one-shot tools: ``smd send``, ``state``, ``peers``.

Why this exists: a tool that connects, says one thing, reads the answer and
exits should cost little more than starting Python. asyncio alone takes
longer to import than such a tool takes to do its work, and brings ssl
with it (4 MiB of RSS), so the tools do not use it: this is the sans-IO
:class:`~smdbus.wire._protocol.Connection` on a plain socket, waiting with
``poll`` against deadlines. It imports nothing beyond :mod:`smdbus.wire`'s
codec and C modules of the standard library (no asyncio, no selectors, no
logging). The long-running tools and the library keep asyncio
(:mod:`smdbus.wire._stream`, :class:`smdbus.client.Client`).

Rules:

- **One stream, no reconnecting.** :meth:`BlockingStream.connect` connects,
  sends STREAMTYPE and waits for CREATE_RESULT, all within ``timeout`` (3 s,
  as the C client); every failure is a ``ConnectionError`` naming the
  address, in the words of :class:`~smdbus.wire._stream.WireStream`, so the
  command line explains them alike (:mod:`smdbus.commands._failure`).
- **Which proxy.** :attr:`BlockingStream.ours` is whether CREATE_RESULT
  carried our proxy's mark (:mod:`smdbus.wire._control`). On our proxy
  :meth:`~BlockingStream.publish` batches (up to ``_BATCH`` bytes of frames
  per write); on any other peer (a C proxy) it writes one frame per write,
  and only once the kernel says the proxy has read everything written
  before (``TIOCOUTQ`` is 0): the C proxy reads 2048 bytes at a time, splits
  a frame that straddles two reads into two corrupt messages and holds at
  most 32 KiB of a client's unread input (``docs/client.md``), so it must
  never have more than one frame to read. The asyncio client paces the same
  way (:mod:`smdbus.client._link`).
- **Confirmation by echo.** The proxy sends a message to every connection
  whose mask matches, the sender included; that echo is the only
  confirmation the wire has. :meth:`~BlockingStream.publish` reads while it
  writes (a sender that stops reading would be dropped as a stalled
  subscriber) and counts a message of the class with the same payload as
  confirmed, at most one per frame already written, as the client's
  :class:`~smdbus.client._echo.EchoFilter` does.
- **Everything is bounded in time.** Waiting for the answer, for an echo or
  for the socket to take more has a deadline; a proxy that takes nothing
  for ``timeout`` seconds ends the writing, and what was not written is
  counted as not confirmed.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from fcntl import ioctl

from smdbus.wire._address import DEFAULT_ADDRESS, format_address, parse_address
from smdbus.wire._control import is_our_proxy
from smdbus.wire._decoder import Role
from smdbus.wire._events import CreateResult, RxPayload, StreamType, TxPayload
from smdbus.wire._frames import SMD_STREAMTYPE, WIRE_MAX_PAYLOAD
from smdbus.wire._protocol import Connection, ProtocolError, StreamState

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from smdbus.wire._decoder import Sink

_RECV_SIZE = 64 * 1024
_BATCH = 16 * 1024
"""Our proxy: bytes of frames per write (as the asyncio client's flush)."""
_SPIN = 100
"""Paced: looks at ``TIOCOUTQ`` without waiting before looking only every millisecond."""
_TIOCOUTQ = 0x5411  # Linux (= SIOCOUTQ): bytes written and not yet read by the peer
_OUTQ = struct.Struct("i")
_ZERO = bytes(_OUTQ.size)
_IN = select.POLLIN
_OUT = select.POLLOUT
_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL


def next_event(conn: Connection) -> object:
    """The proxy's next event; a malformed or misplaced frame is a ``ConnectionError``."""
    try:
        return conn.next_event()
    except ProtocolError as exc:
        raise ConnectionError(f"bad reply from the proxy: {exc}") from None


def created(conn: Connection, event: object, address: str) -> CreateResult | None:
    """``event`` if it is the CREATE_RESULT that opened the stream, else None; refused raises.

    Shared with the asyncio tools' stream (:mod:`smdbus.wire._stream`), so both say it alike.
    """
    if type(event) is not CreateResult:
        return None
    if conn.state is not StreamState.OPEN:
        raise ConnectionRefusedError(
            f"proxy at {format_address(address)} refused the stream (result {event.result})"
        )
    return event


class BlockingStream:
    """One open stream to a proxy, driven by blocking calls. Make it with :meth:`connect`."""

    __slots__ = ("_clock", "_conn", "_poll", "_sock", "address", "ours")

    def __init__(
        self,
        sock: socket.socket,
        conn: Connection,
        address: str,
        clock: Callable[[], float],
    ) -> None:
        self._sock = sock
        self._conn = conn
        self._clock = clock
        self._poll = select.poll()
        self.address = address
        self.ours = False
        """CREATE_RESULT carried our proxy's mark: batching is safe."""

    @classmethod
    def connect(
        cls,
        address: str = DEFAULT_ADDRESS,
        mask: int = 0,
        *,
        streamtype: str = SMD_STREAMTYPE,
        timeout: float = 3.0,
        max_payload: int = WIRE_MAX_PAYLOAD,
        clock: Callable[[], float] = time.monotonic,
    ) -> BlockingStream:
        """Connect, create the stream and wait for the proxy's CREATE_RESULT.

        Raises ``ConnectionError`` (naming the address) when there is no proxy,
        it refuses the stream, or it does not answer within ``timeout``.
        """
        address = parse_address(address)  # "@name", "+@name" or a kernel address
        shown = format_address(address)
        deadline = clock() + timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ConnectionError(f"cannot connect to the proxy at {shown}: {exc}") from None
        stream = cls(sock, Connection(Role.CLIENT, max_payload=max_payload), address, clock)
        try:
            stream._write(stream._conn.send(StreamType(streamtype, mask, os.getpid())), deadline)
            stream._created(deadline)
        except TimeoutError:
            stream.close()
            raise ConnectionError(
                f"proxy at {shown} sent no CREATE_RESULT in {timeout:g} s"
            ) from None
        except BaseException:
            stream.close()
            raise
        return stream

    def _created(self, deadline: float) -> None:
        while True:
            event = next_event(self._conn)
            if event is None:
                if not self._read(deadline):
                    raise TimeoutError
            elif result := created(self._conn, event, self.address):
                self.ours = is_our_proxy(result.rideshare)
                return

    # -- plumbing ----------------------------------------------------------------

    def _wait(self, events: int, deadline: float | None) -> int:
        """The socket's ready events, 0 once ``deadline`` passed (None: wait for ever)."""
        poll = self._poll
        poll.register(self._sock, events)
        ms = None if deadline is None else max(0, int((deadline - self._clock()) * 1000 + 0.999))
        ready = poll.poll(ms)
        return ready[0][1] if ready else 0

    def _read(self, deadline: float | None) -> bool:
        """Take what the socket holds, waiting until ``deadline``; False when nothing came."""
        if not self._wait(_IN, deadline):
            return False
        return self._take()

    def _take(self) -> bool:
        try:
            data = self._sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        if not data:
            raise ConnectionResetError(f"proxy at {format_address(self.address)} hung up")
        self._conn.receive_data(data)
        return True

    def _write(self, data: bytes, deadline: float | None) -> None:
        """Write all of ``data`` (short frames); TimeoutError past ``deadline``.

        The send is tried first and ``poll`` asked only when the socket took
        less: a frame is almost always taken whole, and a paced sender then
        pays one system call per message, not two.
        """
        view = memoryview(data)
        sock = self._sock
        while True:
            try:
                n = sock.send(view)
            except (BlockingIOError, InterruptedError):
                n = 0
            view = view[n:]
            if not view:
                return
            if not self._wait(_OUT, deadline) & (_OUT | _GONE):
                raise TimeoutError

    def unread(self) -> int:
        """Bytes (kernel accounting) written and not yet read by the proxy."""
        try:
            return int(_OUTQ.unpack(ioctl(self._sock.fileno(), _TIOCOUTQ, _ZERO))[0])
        except OSError:
            return 0  # the socket is gone: the next send says so

    # -- messages ----------------------------------------------------------------

    def send(self, cls: int, payload: bytes, timeout: float = 3.0) -> None:
        """Send one message (TX_PAYLOAD); ConnectionError if the socket takes it not in time."""
        try:
            self._write(self._conn.send(TxPayload(cls, 0, payload)), self._clock() + timeout)
        except TimeoutError:
            raise ConnectionError(
                f"the proxy at {format_address(self.address)} took nothing for {timeout:g} s"
            ) from None

    def receive(self, timeout: float | None) -> RxPayload | None:
        """The next message (CONNSTATE and the like skipped); None after ``timeout`` s.

        ``timeout`` None waits for ever. Raises ``ConnectionResetError`` when the proxy
        hangs up.
        """
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            event = next_event(self._conn)
            if event is None:
                if not self._read(deadline) and deadline is not None and self._clock() >= deadline:
                    return None
            elif type(event) is RxPayload:
                return event

    def dispatch(self, sink: Sink, timeout: float | None) -> int:
        """The lean receive path: hand what arrives to ``sink(cls, timestamp_us, payload)``.

        Waits up to ``timeout`` s (None: for ever) for the socket, reads once,
        and hands every whole message buffered to ``sink`` straight from the
        decoder's parse loop (:meth:`Connection.dispatch`): no event object,
        no ``Message``, no event loop per message. Frames that are not
        messages (CONNSTATE and the like) are taken on the way. Returns how
        many messages went to ``sink`` (0 after a ``timeout`` with nothing);
        raises ``ConnectionResetError`` when the proxy hangs up, and a
        malformed frame is a ``ConnectionError`` (see :func:`next_event`).

        For callers that want each message with the least work between the
        socket and their code (a latency-bound subscriber, a bench): a
        blocking loop of their own around this call.
        """
        conn = self._conn
        n = conn.dispatch(sink)
        if not n and not self._read(None if timeout is None else self._clock() + timeout):
            return 0
        while True:
            n += conn.dispatch(sink)
            event = next_event(conn)
            if event is None:
                return n
            if type(event) is RxPayload:  # one dispatch left: before the stream was open
                sink(event.cls, event.timestamp_us, event.payload)
                n += 1

    def publish(self, cls: int, payload: bytes, count: int, timeout: float) -> int:
        """Send ``count`` copies and wait for their echoes; how many did not come back.

        The stream's mask must include ``cls`` (else nothing comes back). Waits up to
        ``timeout`` s after the last write for the echoes, and gives up writing when
        the proxy takes nothing for ``timeout`` s (see the module doc). A proxy that
        hangs up ends it too: what did not come back is the answer.
        """
        frame = self._conn.send(TxPayload(cls, 0, payload))  # the state is checked once
        echoes = _Echoes(cls, payload, len(frame))
        try:
            self._write_copies(frame, count, timeout, echoes)
            deadline = self._clock() + timeout
            self._count(echoes)
            while echoes.confirmed < echoes.written() and self._read(deadline):
                self._count(echoes)
        except ConnectionError:
            pass
        return count - echoes.confirmed

    def _write_copies(self, frame: bytes, count: int, timeout: float, echoes: _Echoes) -> None:
        """Write ``count`` copies of ``frame``, batched or paced, counting echoes meanwhile."""
        size = len(frame)
        chunk = frame * max(1, min(count, _BATCH // size)) if self.ours else frame
        total = size * count
        clock = self._clock
        view = memoryview(b"")
        spins = 0
        stall = clock() + timeout
        while echoes.sent < total:
            want = _IN
            wait = stall
            if view:
                want |= _OUT
            elif self.ours or not self.unread():
                view = memoryview(chunk)[: total - echoes.sent]
                want |= _OUT
                spins = 0
            else:  # paced: the proxy has not read the last frame yet
                spins += 1
                wait = min(stall, clock() + (0.0 if spins < _SPIN else 0.001))
            ready = self._wait(want, wait)
            if ready & (_IN | _GONE):
                self._take()
                self._count(echoes)
            if ready & (_OUT | _GONE) and view:
                try:
                    n = self._sock.send(view)
                except (BlockingIOError, InterruptedError):
                    n = 0
                view = view[n:]
                echoes.sent += n
                if n:
                    stall = clock() + timeout
            elif clock() >= stall:
                return  # the proxy took nothing for timeout s: the rest is not written

    def _count(self, echoes: _Echoes) -> None:
        """Count the buffered messages that are our echoes, at most one per frame written."""
        while True:
            event = next_event(self._conn)
            if event is None:
                return
            if (
                type(event) is RxPayload
                and event.cls == echoes.cls
                and event.payload == echoes.payload
                and echoes.confirmed < echoes.written()
            ):
                echoes.confirmed += 1

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> BlockingStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Echoes:
    """What :meth:`BlockingStream.publish` has written and seen come back."""

    __slots__ = ("cls", "confirmed", "payload", "sent", "size")

    def __init__(self, cls: int, payload: bytes, size: int) -> None:
        self.cls = cls
        self.payload = payload
        self.size = size
        self.sent = 0
        """Bytes of frames the kernel took."""
        self.confirmed = 0

    def written(self) -> int:
        """Whole frames written: only those can have an echo."""
        return self.sent // self.size
