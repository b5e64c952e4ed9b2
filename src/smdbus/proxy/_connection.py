"""One client connection of the proxy: a receiver of the proxy's bus through its mask's group.

Theory of operation. Bytes from the client go into a wire :class:`Decoder`,
which hands them out lazily, so the connection can stop in the middle of a
read when it must not publish yet (the bus queue is full, or a subscriber of
that class is behind). It then stops reading its socket and keeps the
message in hand; nothing is dropped and the client is never disconnected
for publishing fast. Who publishes next when several wait is the proxy's
:mod:`~smdbus.proxy._admission` (first come, first served, a fair share of
the room each): a connection that reads input while others wait joins the
end of that line instead of taking the room.

Input is taken on the wire decoder's hot path
(:meth:`Decoder.dispatch_payloads`): while the bus has room and no class is
held back, each TX_PAYLOAD goes straight to ``bus.send`` with no event
object; how much room there is is looked up once per read, so a full queue
is met by pausing, never by an exception per message. Other frames come out
as events (:meth:`Decoder.next_event`).

Messages for the client arrive through its fan-out group
(:mod:`smdbus.proxy._fanout`), which writes the frames of a loop pass with
one ``write`` (:meth:`Connection.deliver`). The transport's buffer is
watched: past high water the connection is *congested* (it holds publishers
back), past ``max_buffer`` it is disconnected.

A failed write (EPIPE, ECONNRESET: the client closed or stopped reading)
ends the delivery *to* the client, never its publishing: the messages it
missed are counted as dropped, it leaves its group and the congestion set,
and its input is read and published to EOF (half-close). When asyncio's
transport met the error it closes the socket, so reading goes on from a
duplicate of the descriptor (:mod:`smdbus.proxy._tail`).

The order of frames is the wire's, not this module's: the connection is a
:class:`smdbus.wire.Connection` in the proxy's role (:attr:`Connection.stream`),
whose transition table decides what the client may send when; a frame out of
order or malformed is its :class:`~smdbus.wire.RemoteProtocolError`, which
names the state and the event, and this connection hangs up with that reason.
The proxy's own frames (the greeting, a refusal) go through the same table;
the RX_PAYLOADs of the fan-out are written in bulk while the stream is OPEN
(checked once per write, not per message). What ``smd peers`` shows as the
state (``new``, ``smd``, ``control``, ``closed``) is the stream's state named
by its streamtype (:attr:`Connection.state`), not a second state machine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from smdbus._escape import printable
from smdbus.classes import format_mask
from smdbus.errors import PayloadTooLarge, QueueFull
from smdbus.policy import NOBODY_KNOWN
from smdbus.proxy._fanout import rx_frame
from smdbus.proxy._flow import Outflow
from smdbus.proxy._owner import Owner
from smdbus.proxy._tail import Tail
from smdbus.wire import (
    CONTROL_STREAMTYPE,
    GREETING_EVENTS,
    SMD_STREAMTYPE,
    CreateResult,
    Destroying,
    Event,
    RemoteProtocolError,
    Role,
    StreamState,
    StreamType,
    TxMetadata,
    TxPayload,
    create_result_frame,
)
from smdbus.wire import Connection as Stream

if TYPE_CHECKING:
    from collections.abc import Mapping

    from smdbus.proxy._fanout import Group
    from smdbus.proxy._logs import PeerLog
    from smdbus.proxy._settings import ProxySettings
    from smdbus.scheduler import Timer

log = logging.getLogger("smdbus.proxy")

NAME_SHOWN = 100
"""Characters of a peer's streamtype or METADATA name shown in logs (escaped)."""
RECV_SIZE = 64 * 1024
"""Bytes asked of each recv (see ``connection_made``)."""
_REFUSED = CreateResult(1)
"""CREATE_RESULT failure: an unknown streamtype, or no slot for this peer."""
REFUSAL = create_result_frame(_REFUSED.result)
""":data:`_REFUSED` as bytes, for a refusal at accept (before there is a stream)."""
_IDLE = StreamState.IDLE
_OPEN = StreamState.OPEN
_CLOSED = StreamState.CLOSED


class Gatekeeper(Protocol):
    """What a connection asks of the proxy's access control (``_access.Access``)."""

    def apply(self, conn: Connection) -> int: ...
    def effective(self, conn: Connection, asked: int) -> int: ...
    def refuse(self, conn: Connection, cls: int) -> None: ...
    def publish_allowance(self, conn: Connection, room: int) -> int: ...
    def published(self, conn: Connection, n: int) -> None: ...
    def quota_wait(self, conn: Connection) -> float: ...


class Senders(Protocol):
    """What a connection asks of the proxy's monitors (``_monitor.Monitors``)."""

    def send_for(self, conn: Connection) -> Callable[[int, bytes], Any]: ...


class Host(Owner, Protocol):
    """What a connection uses of its proxy (:class:`~smdbus.proxy.Proxy` is the one).

    A protocol, not an import of the Proxy: the proxy is built on its
    connections, so this module names what it calls and the two do not
    import each other (the parts above, access and monitors, likewise).
    """

    allowance: int  # what the publisher whose turn it is may still publish (it spends it)

    @property
    def access(self) -> Gatekeeper: ...
    @property
    def monitors(self) -> Senders: ...
    @property
    def logs(self) -> PeerLog: ...
    @property
    def settings(self) -> ProxySettings: ...
    @property
    def congested_mask(self) -> int: ...
    @property
    def outbound(self) -> int: ...
    @property
    def buffering(self) -> Mapping[Connection, int]: ...
    @property
    def turn(self) -> Connection | None: ...

    def join(self, conn: Connection) -> Group: ...
    def leave(self, conn: Connection, group: Group) -> None: ...
    def forget(self, conn: Connection) -> None: ...
    def descriptor_freed(self) -> None: ...
    def control_query(self, conn: Connection, payload: bytes) -> None: ...
    def room(self, conn: Connection) -> int: ...
    def wait_for_room(self, conn: Connection) -> None: ...
    def published_now(self, n: int = 1) -> None: ...
    def read_begins(self) -> bool: ...
    def read_ends(self) -> None: ...
    def hold_for_congestion(self, conn: Connection) -> None: ...
    def congestion_changed(self, conn: Connection) -> None: ...
    def outbound_changed(self, conn: Connection, buffered: int) -> None: ...
    def make_room(self, incoming: int) -> None: ...


class Connection(asyncio.Protocol):
    """The proxy's side of one client socket."""

    def __init__(self, proxy: Host, ident: int) -> None:
        settings = proxy.settings
        self.proxy = proxy
        self.id = ident
        self.transport: asyncio.Transport | None = None
        self.fd = -1  # the socket's, for writes the transport has nothing queued before
        self.stream = Stream(
            Role.PROXY, max_frame=settings.max_frame, max_payload=settings.max_payload
        )
        self.streamtype = ""  # with the stream's state, what it is: see ``state``
        self.mask = 0
        self.client_pid = 0
        self.who = NOBODY_KNOWN  # uid, gid, groups, pid, comm: read at accept (smdbus.policy)
        self.asked = 0  # the mask the client asked for; ``mask`` is what the policy lets it have
        self.denied = 0  # classes it may not send (the policy's, see smdbus.proxy._access)
        self.connected_at = time.time()
        self.group: Group | None = None
        # publishing
        self.published = 0
        self.pending: tuple[int, bytes] | None = None  # (class, payload) taken but not published
        self.held: str | None = None  # "queue", "congestion" or "quota" while not publishing
        self.reading_paused = False
        # delivering
        self.bytes_out = 0
        self.msgs_out = 0
        self.delivered = 0
        self.chunks: deque[tuple[int, int]] = deque()  # (bytes_out, msgs_out) at each write
        self.congested = False
        self.stalled = False
        self.outflow = Outflow(settings.stall_grace, settings.stall_timeout)
        # ending (close_reason is set while open when a write failed: see write_failed;
        # closed_at once it ended: the stream may close a moment before, see _finish)
        # 29 attributes at most: past that CPython 3.11 stops sharing the instance
        # dicts' keys, and each connection's dict grows from ~300 bytes to ~1.6 KB
        self.close_reason: str | None = None
        self.closed_at: float | None = None
        self.dropped = 0
        self._first_frame_timer: Timer | None = None

    # -- description -------------------------------------------------------

    @property
    def state(self) -> str:
        """What ``smd peers`` shows: ``new``, ``smd``, ``control`` or ``closed``.

        The stream's state (:attr:`stream`), an open one named by its type.
        """
        state = self.stream.state
        if state is _OPEN:
            return "smd" if self.streamtype == SMD_STREAMTYPE else "control"
        return "closed" if state is _CLOSED else "new"

    @property
    def is_smd(self) -> bool:
        """An open ``_lws_smd`` stream: a participant of the bus."""
        return self.stream.state is _OPEN and self.streamtype == SMD_STREAMTYPE

    @property
    def write_failed(self) -> str | None:
        """Why delivery to this open connection ended (a write failed), or None."""
        return self.close_reason if self.closed_at is None else None

    def __repr__(self) -> str:
        return f"<Connection #{self.id} {self.describe()}>"

    @property
    def pid(self) -> int | None:
        return self.who.pid

    @property
    def uid(self) -> int | None:
        return self.who.uid

    @property
    def gid(self) -> int | None:
        return self.who.gid

    def describe(self) -> str:
        who = self.who.label()
        shown = printable(self.streamtype, limit=NAME_SHOWN)
        what = f" {shown} mask {format_mask(self.mask)}" if self.streamtype else ""
        return f"#{self.id} ({who}{what})"

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (asyncio's, or another loop's such as uvloop's: not a subclass)
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        if self.stream.state is _CLOSED:  # the proxy closed meanwhile (it admitted us at accept)
            transport.abort()
            return
        settings = self.proxy.settings
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()
        transport.set_write_buffer_limits(high=settings.high_water, low=settings.high_water // 4)
        if hasattr(transport, "max_size"):
            # asyncio's selector transports recv 256 KiB at a time: CPython allocates
            # all of it for each call, which for a lone frame costs ~8x the syscall.
            transport.max_size = RECV_SIZE
        scheduler = self.proxy.scheduler
        assert scheduler is not None, "the proxy sets its scheduler before it accepts"
        self._first_frame_timer = scheduler.call_later(
            settings.first_frame_timeout, self._first_frame_timed_out
        )

    def data_received(self, data: bytes) -> None:
        self.stream.receive_data(data)  # nothing once closed
        if self.held is None:
            proxy = self.proxy
            if proxy.read_begins():  # delivered and written before this callback returns
                try:
                    self._process()
                finally:
                    proxy.read_ends()
            else:
                self._process()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.is_smd and isinstance(exc, OSError) and self._read_on(exc):
            return
        if self.closed_at is None:
            reason = f"connection lost: {exc}" if exc else "client closed the connection"
            self._finish(reason, error=False)
        self.proxy.descriptor_freed()

    def pause_writing(self) -> None:
        self.congested = True
        self.stalled = False
        self.outflow.start(self.proxy.clock(), self.bytes_sent())
        self.proxy.congestion_changed(self)

    def resume_writing(self) -> None:
        self.congested = False
        self.stalled = False
        self.proxy.congestion_changed(self)

    def _read_on(self, exc: OSError) -> bool:
        """The transport failed (a write, typically) and closes the socket: keep reading a dup."""
        loop = self.proxy.loop
        if loop is None or self.fd < 0:
            return False
        try:
            fd = os.dup(self.fd)
        except OSError:
            return False
        self.end_delivery(exc)
        self.fd = -1  # the transport's descriptor is closed once this returns
        self.transport = Tail(loop, fd, self, RECV_SIZE)
        if not self.reading_paused:
            self.transport.resume_reading()
        return True

    def end_delivery(self, exc: BaseException) -> None:
        """Writing to the client failed: deliver nothing more to it, go on publishing its input.

        What was on its way to it and not known to be taken by its socket is
        counted as dropped (per peer and ``dropped_write_failed``).
        """
        if self.write_failed is not None or self.stream.state is _CLOSED:
            return
        if not self.is_smd:  # a tool that cannot be answered has nothing more to say
            self.close(f"write failed: {exc}")
            return
        self.close_reason = f"write failed: {exc}"
        lost = self.msgs_out + self.out_msgs - self.delivered
        self.drop(lost, "dropped_write_failed")
        self.msgs_out = self.delivered
        self.chunks.clear()
        proxy = self.proxy
        proxy.count("write_failures")
        if self.group is not None:
            proxy.leave(self, self.group)
            self.group = None
        if self.congested:
            self.congested = self.stalled = False
            proxy.congestion_changed(self)
        proxy.logs.info(
            "write failed",
            "%s: %s; delivery to it ended (%d messages dropped), reading its input to EOF",
            self.describe(),
            self.close_reason,  # not write_failed: mypy narrowed that property to None above
            lost,
        )

    def drop(self, n: int, counter: str | None = None) -> None:
        """``n`` messages for this client will never be written: its DROPPED, and the totals."""
        if n:
            self.dropped += n
            self.proxy.count("dropped_messages", n)
            if counter is not None:
                self.proxy.count(counter, n)

    # -- reading: events from the client -----------------------------------

    def _process(self) -> None:
        """Publish and handle input until the decoder needs bytes, or publishing must wait."""
        stream = self.stream
        decoder = stream.decoder
        proxy = self.proxy
        access = proxy.access
        send = proxy.monitors.send_for(self)  # Bus.send, unless a tool watches senders
        while stream.state is not _CLOSED:
            if self.pending is not None and not self._publish(*self.pending):
                return
            smd = stream.state is _OPEN and self.streamtype == SMD_STREAMTYPE
            if smd:
                room = proxy.room(self)
                if room > 0:
                    room = access.publish_allowance(self, room)
                if room > 0:
                    try:
                        # a class held back or refused stops it; the slow path below decides
                        held = proxy.congested_mask | self.denied
                        # the decoder's bulk path itself: the stream is OPEN (smd)
                        n = decoder.dispatch_payloads(send, room, held)
                    except (QueueFull, PayloadTooLarge) as exc:
                        # QueueFull: another thread filled a shared bus meanwhile;
                        # PayloadTooLarge: a shared bus with a smaller limit
                        if decoder.dispatched > 1:
                            self._published(decoder.dispatched - 1)
                        cls, _, payload = decoder.interrupted or (0, 0, b"")
                        if isinstance(exc, PayloadTooLarge):
                            self.fail(f"message refused by the bus: {exc}")
                            return
                        self._hold((cls, payload), "queue")
                        proxy.wait_for_room(self)
                        return
                    if n:
                        self._published(n)
            try:
                event = stream.next_event()
            except RemoteProtocolError as exc:  # malformed, or out of order
                self.fail(str(exc))
                return
            if event is None:
                break
            if smd and type(event) is TxPayload:
                # what dispatch left: a class held back or refused, no room, no quota
                self.pending = (event.cls, event.payload)
            else:
                self._handle(event)
                if self.held is not None:  # a control query in progress: read on after it
                    return
        if self.reading_paused and stream.state is not _CLOSED and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    def _publish(self, cls: int, payload: bytes) -> bool:
        """Publish the message in hand, or hold it (and stop reading) until it may go."""
        proxy = self.proxy
        if cls & self.denied:  # the policy's: it reaches nobody (counted, logged)
            self.pending = None
            proxy.access.refuse(self, cls)
            return True
        if cls & proxy.congested_mask:
            self._hold((cls, payload), "congestion")
            proxy.hold_for_congestion(self)
            return False
        try:
            full = proxy.room(self) <= 0  # the queue is full, or others wait for their turn
            if not full and proxy.access.publish_allowance(self, 1) <= 0:
                self._hold((cls, payload), "quota")  # its uid's publish rate: held, never dropped
                assert proxy.scheduler is not None
                proxy.scheduler.call_later(proxy.access.quota_wait(self), self.resume)
                return False
            if not full:
                proxy.monitors.send_for(self)(cls, payload)
        except QueueFull:  # another thread filled a shared bus meanwhile
            full = True
        except PayloadTooLarge as exc:
            self.pending = None
            self.fail(f"message refused by the bus: {exc}")
            return False
        if full:
            self._hold((cls, payload), "queue")
            proxy.wait_for_room(self)
            return False
        self.pending = None
        self._published(1)
        return True

    def _published(self, n: int) -> None:
        self.published += n
        proxy = self.proxy
        proxy.access.published(self, n)
        if proxy.turn is self:
            proxy.allowance -= n
        proxy.published_now(n)

    def _hold(self, message: tuple[int, bytes], why: str) -> None:
        self.pending = message
        self.proxy.count(f"held_{why}")
        self._stop_reading(why)

    def wait_for_reply(self) -> None:
        """A control query is being answered (in slices): read nothing more until it is done."""
        self._stop_reading("query")

    def _stop_reading(self, why: str) -> None:
        self.held = why
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        """Input may be taken again (its turn to publish, congestion cleared, a reply done)."""
        if self.stream.state is _CLOSED or self.held is None:
            return
        self.held = None
        self._process()

    def _handle(self, event: Event) -> None:
        """Every event but a publishable TX_PAYLOAD, once the stream's table let it through."""
        if type(event) is StreamType:  # the first frame (the table refuses a second)
            self._open(event)
        elif type(event) is Destroying:
            self.close("client destroyed its stream")
        elif type(event) is TxMetadata:
            self.fail(
                f"METADATA ('{printable(event.name, limit=NAME_SHOWN)}') is not supported on "
                f"{printable(self.streamtype, limit=NAME_SHOWN)}"
            )
        elif type(event) is TxPayload:  # on the control stream
            self.proxy.control_query(self, event.payload)
        # ONWARD_CONNECT, TXCR_UPDATE, TIMEOUT_UPDATE, PAYLOAD_LENGTH_HINT and
        # LINK_VALIDITY_PROBE mean nothing for SMD: accepted and ignored.

    def _open(self, event: StreamType) -> None:
        if self._first_frame_timer is not None:
            self._first_frame_timer.cancel()
            self._first_frame_timer = None
        self.streamtype = event.name
        self.client_pid = event.pid
        if event.name == SMD_STREAMTYPE:
            # The mask is taken literally, as C does: a C client asking for mask 0
            # sends 500000000 (0x1DCD6500), and gets the classes of those bits.
            self.asked = event.mask
            self.mask = self.proxy.access.effective(self, event.mask)
            self._greet()
            if self.mask:
                self.group = self.proxy.join(self)
            self.proxy.logs.info("joined", "%s joined", self.describe())
        elif event.name == CONTROL_STREAMTYPE:
            self._greet()
        else:
            self._write(self.stream.send(_REFUSED))
            self.fail(
                f"unknown streamtype '{printable(event.name, limit=NAME_SHOWN)}' "
                f"(this proxy serves {SMD_STREAMTYPE!r} and {CONTROL_STREAMTYPE!r})"
            )

    def _greet(self) -> None:
        """Accept the stream: CREATE_RESULT ok and the CONNSTATEs, one write; it is OPEN."""
        send = self.stream.send
        self._write(b"".join([send(event) for event in GREETING_EVENTS]))

    def reapply(self) -> None:
        """The policy was reloaded: new masks; a receiver moves to its new group."""
        proxy = self.proxy
        if self.is_smd and self.write_failed is None:
            mask = proxy.access.effective(self, self.asked)
            if mask != self.mask:
                if self.group is not None:
                    proxy.leave(self, self.group)
                    self.group = None
                self.mask = mask
                if mask:
                    self.group = proxy.join(self)
                if self.congested:  # the classes it holds back are its mask's
                    proxy.congestion_changed(self)
        else:
            proxy.access.apply(self)

    def _first_frame_timed_out(self) -> None:
        self._first_frame_timer = None
        if self.stream.state is _IDLE:
            self.proxy.count("first_frame_timeouts")
            self.fail(f"no STREAMTYPE within {self.proxy.settings.first_frame_timeout:g} s")

    # -- writing: messages to the client -----------------------------------

    def on_message(self, cls: int, timestamp_us: int, payload: bytes) -> None:
        """Write one message to this connection alone, now (replies on the control stream)."""
        self.deliver(rx_frame(cls, timestamp_us, payload), 1)

    @property
    def out_msgs(self) -> int:
        """Messages delivered by the bus for this client, not yet written (end of the pass)."""
        group = self.group
        return len(group.frames) if group is not None and self.closed_at is None else 0

    def deliver(self, data: bytes, n: int) -> None:
        """Write ``n`` messages' frames in one go, then check the buffer's bounds."""
        transport = self.transport
        if transport is None or self.stream.state is _CLOSED:
            return
        if self.close_reason is not None:  # open with a reason: a write failed (write_failed)
            self.drop(n, "dropped_write_failed")
            return
        self.msgs_out += n
        self.bytes_out += len(data)
        if self.proxy.outbound + len(data) > self.proxy.settings.max_outbound:
            self.proxy.make_room(len(data))  # which may drop this one, these n included
            if self.stream.state is _CLOSED:
                return
        if self.fd >= 0 and not transport.get_write_buffer_size() and not transport.is_closing():
            # Nothing waits in the transport: write to the socket ourselves (what
            # transport.write does first, without its layers of Python: measured
            # ~7 % of the proxy's CPU at 1 000 msgs/s). Whatever the kernel does not
            # take goes to the transport, behind nothing, so the order holds. EPIPE
            # or ECONNRESET end the delivery to it; other errors are left for the
            # transport to meet and report.
            try:
                sent = os.write(self.fd, data)
            except (BrokenPipeError, ConnectionResetError) as exc:
                self.chunks.clear()  # nothing was waiting: every earlier write was taken
                self.delivered = self.msgs_out - n
                self.end_delivery(exc)  # the transport goes on reading to EOF
                return
            except OSError:  # EAGAIN, ...
                sent = 0
            if sent == len(data):
                self.chunks.clear()
                self.delivered = self.msgs_out
                if self in self.proxy.buffering:
                    self.proxy.outbound_changed(self, 0)
                return
            data = data[sent:]
        if transport.is_closing():
            # it met an error and its connection_lost is on the way (which counts
            # these as dropped); asyncio would log every write past the fifth
            return
        transport.write(data)
        buffered = transport.get_write_buffer_size()
        if buffered != self.proxy.buffering.get(self, 0):
            self.proxy.outbound_changed(self, buffered)
        if buffered:
            self.chunks.append((self.bytes_out, self.msgs_out))
            self._account(buffered)
            limit = self.proxy.settings.max_buffer
            if buffered > limit:
                self.proxy.count("slow_disconnects")
                self.abort(
                    f"slow subscriber: {buffered} bytes waiting to be read, over max_buffer {limit}"
                )
        else:
            self.chunks.clear()
            self.delivered = self.msgs_out

    def _write(self, data: bytes) -> None:
        if self.transport is not None and self.write_failed is None:
            self.bytes_out += len(data)
            self.transport.write(data)

    def buffered(self) -> int:
        """Outbound bytes not yet taken by the client's socket."""
        if self.transport is None or self.closed_at is not None:
            return 0
        return self.transport.get_write_buffer_size()

    def bytes_sent(self) -> int:
        return self.bytes_out - self.buffered()

    def _account(self, buffered: int) -> None:
        """Move ``delivered`` up to the last write the socket has fully taken."""
        sent = self.bytes_out - buffered
        chunks = self.chunks
        while chunks and chunks[0][0] <= sent:
            self.delivered = chunks.popleft()[1]

    def queued(self) -> int:
        """Messages for this client not yet taken by its socket."""
        if self.closed_at is None:
            self._account(self.buffered())
        return self.msgs_out + self.out_msgs - self.delivered

    # -- ending ------------------------------------------------------------

    def fail(self, reason: str) -> None:
        """A protocol error: log it, count it, hang up (pending replies still go out)."""
        self.proxy.count("protocol_errors")
        self._finish(reason, error=True)
        if self.transport is not None:
            self.transport.close()

    def close(self, reason: str) -> None:
        """An orderly end."""
        self._finish(reason, error=False)
        if self.transport is not None:
            self.transport.close()

    def abort(self, reason: str) -> None:
        """Drop the connection now, discarding what it did not read."""
        self._finish(reason, error=True)
        if self.transport is not None:
            self.transport.abort()

    def _finish(self, reason: str, *, error: bool) -> None:
        if self.closed_at is not None:  # once (the stream may be CLOSED already: its table's)
            return
        # what the proxy gave up on by hanging up; an orderly close still flushes
        if error:
            self.drop(self.queued())
        self.stream.close()
        self.close_reason = reason
        self.closed_at = time.time()
        self.pending = None
        self.held = None
        if self._first_frame_timer is not None:
            self._first_frame_timer.cancel()
            self._first_frame_timer = None
        if self.group is not None:
            self.proxy.leave(self, self.group)
            self.group = None
        if error:
            self.proxy.logs.warning("closing", "closing %s: %s", self.describe(), reason)
        else:
            self.proxy.logs.info("closed", "closed %s: %s", self.describe(), reason)
        self.proxy.forget(self)
