"""One client connection of the proxy: a participant of the proxy's bus.

Theory of operation. Bytes from the client go into a wire :class:`Decoder`;
events are pulled from it one at a time, so the connection can stop in the
middle of a read when it must not publish yet (the bus queue is full, or a
subscriber of that class is behind). It then stops reading its socket and
keeps the message in hand; nothing is dropped and the client is never
disconnected for publishing fast.

Messages for the client arrive from the bus as callbacks; their RX_PAYLOAD
frames are collected and written once per loop pass (one ``write`` for many
messages). The transport's buffer is watched: past high water the connection
is *congested* (it holds publishers back), past ``max_buffer`` it is
disconnected.

States: ``new`` (waiting for STREAMTYPE) → ``smd`` or ``control`` → ``closed``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections import deque
from typing import TYPE_CHECKING

from smdbus.classes import format_mask
from smdbus.errors import QueueFull
from smdbus.proxy.flow import Outflow
from smdbus.proxy.settings import CONTROL_STREAMTYPE
from smdbus.wire import (
    SMD_STREAMTYPE,
    ConnStateCode,
    DecodeError,
    Decoder,
    Destroying,
    Event,
    FrameType,
    Role,
    StreamType,
    TxMetadata,
    TxPayload,
    conn_state_frame,
    create_result_frame,
)

if TYPE_CHECKING:
    from smdbus.bus import Participant
    from smdbus.proxy.server import Proxy

log = logging.getLogger("smdbus.proxy")

_PEERCRED = struct.Struct("3i")
_GREETING = (
    create_result_frame(0)
    + conn_state_frame(ConnStateCode.CREATING)
    + conn_state_frame(ConnStateCode.CONNECTING)
    + conn_state_frame(ConnStateCode.CONNECTED)
)
"""CREATE_RESULT ok, then CREATING, CONNECTING, CONNECTED (the C client needs that order)."""
_REFUSAL = create_result_frame(1)

_EVENT_FRAME = {
    "StreamType": FrameType.STREAMTYPE,
    "OnwardConnect": FrameType.ONWARD_CONNECT,
    "Destroying": FrameType.DESTROYING,
    "TxPayload": FrameType.TX_PAYLOAD,
    "TxMetadata": FrameType.TX_METADATA,
    "TxCreditUpdate": FrameType.TX_TXCR_UPDATE,
    "TimeoutUpdate": FrameType.TIMEOUT_UPDATE,
    "PayloadLengthHint": FrameType.PAYLOAD_LENGTH_HINT,
    "LinkValidityProbe": FrameType.LINK_VALIDITY_PROBE,
}


def _frame_name(event: Event) -> str:
    ftype = _EVENT_FRAME.get(type(event).__name__)
    return ftype.name if ftype is not None else type(event).__name__


class Connection(asyncio.Protocol):
    """The proxy's side of one client socket."""

    def __init__(self, proxy: Proxy, ident: int) -> None:
        settings = proxy.settings
        self.proxy = proxy
        self.id = ident
        self.transport: asyncio.Transport | None = None
        self.decoder = Decoder(Role.PROXY, max_frame=settings.max_frame, max_body=settings.max_body)
        self.state = "new"
        self.streamtype = ""
        self.mask = 0
        self.client_pid = 0
        self.pid: int | None = None
        self.uid: int | None = None
        self.gid: int | None = None
        self.connected_at = time.time()
        self.participant: Participant | None = None
        # publishing
        self.published = 0
        self.unheard = 0
        self.pending: TxPayload | None = None
        self.held: str | None = None  # "queue" or "congestion" while not publishing
        self.reading_paused = False
        # delivering
        self.out: list[bytes] = []
        self.out_msgs = 0
        self.dirty = False
        self.bytes_out = 0
        self.msgs_out = 0
        self.delivered = 0
        self.chunks: deque[tuple[int, int]] = deque()  # (bytes_out, msgs_out) at each write
        self.congested = False
        self.stalled = False
        self.outflow = Outflow(settings.stall_grace, settings.stall_timeout)
        # ending
        self.close_reason: str | None = None
        self.closed_at: float | None = None
        self.dropped = 0
        self._first_frame_timer: asyncio.TimerHandle | None = None

    # -- description -------------------------------------------------------

    def __repr__(self) -> str:
        return f"<Connection #{self.id} {self.describe()}>"

    def describe(self) -> str:
        who = f"pid {self.pid} uid {self.uid}" if self.pid is not None else "unknown peer"
        what = f" {self.streamtype} mask {format_mask(self.mask)}" if self.streamtype else ""
        return f"#{self.id} ({who}{what})"

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        settings = self.proxy.settings
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
                self.pid, self.uid, self.gid = _PEERCRED.unpack(raw)
            except OSError:  # pragma: no cover - not a unix socket
                pass
        if not self.proxy.admit(self):
            return
        transport.set_write_buffer_limits(high=settings.high_water, low=settings.high_water // 4)
        loop = asyncio.get_running_loop()
        self._first_frame_timer = loop.call_later(
            settings.first_frame_timeout, self._first_frame_timed_out
        )

    def data_received(self, data: bytes) -> None:
        if self.state == "closed":
            return
        self.decoder.feed(data)
        if self.held is None:
            self._process()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state != "closed":
            reason = f"connection lost: {exc}" if exc else "client closed the connection"
            self._finish(reason, error=False)

    def pause_writing(self) -> None:
        self.congested = True
        self.stalled = False
        self.outflow.start(self.proxy.clock(), self.bytes_sent())
        self.proxy.congestion_changed(self)

    def resume_writing(self) -> None:
        self.congested = False
        self.stalled = False
        self.proxy.congestion_changed(self)

    # -- reading: events from the client -----------------------------------

    def _process(self) -> None:
        """Handle events until the decoder needs bytes, or publishing must wait."""
        next_event = self.decoder.next_event
        proxy = self.proxy
        bus = proxy.bus
        while self.state != "closed":
            event: Event | None = self.pending
            if event is None:
                event = next_event()
                if event is None:
                    break
            else:
                self.pending = None
            if isinstance(event, TxPayload) and self.state == "smd":
                cls = event.cls
                if cls & proxy.congested_mask:
                    self._hold(event, "congestion")
                    proxy.hold_for_congestion(self)
                    return
                try:
                    heard = bus.send(cls, event.body)
                except QueueFull:
                    self._hold(event, "queue")
                    bus.when_room(self._resume_soon)
                    return
                self.published += 1
                if not heard:
                    self.unheard += 1
                proxy.published_now()
            else:
                self._handle(event)
        if self.reading_paused and self.state != "closed" and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    def _hold(self, event: TxPayload, why: str) -> None:
        self.pending = event
        self.held = why
        self.proxy.count(f"held_{why}")
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_soon(self) -> None:
        loop = self.proxy.loop
        if loop is not None:
            loop.call_soon(self.resume)

    def resume(self) -> None:
        """Publishing may go on (room in the queue, or congestion cleared)."""
        if self.state == "closed" or self.held is None:
            return
        self.held = None
        self._process()

    def _handle(self, event: Event) -> None:
        """Every event but a publishable TX_PAYLOAD."""
        if type(event) is DecodeError:
            self.fail(f"malformed input: {event.message}")
            return
        if self.state == "new":
            if type(event) is StreamType:
                self._open(event)
            else:
                self.fail(f"{_frame_name(event)} before STREAMTYPE")
            return
        if type(event) is StreamType:
            self.fail("a second STREAMTYPE on an open stream")
        elif type(event) is Destroying:
            self.close("client destroyed its stream")
        elif type(event) is TxMetadata:
            self.fail(f"METADATA ({event.name!r}) is not supported on {self.streamtype}")
        elif type(event) is TxPayload:  # on the control stream
            self.proxy.control_query(self, event.body)
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
            self.mask = event.mask
            self.state = "smd"
            self._write(_GREETING)
            if self.mask:
                self.participant = self.proxy.bus.register(
                    self.mask, self.on_message, name=f"proxy conn #{self.id} pid {self.pid}"
                )
            log.info("%s joined", self.describe())
        elif event.name == CONTROL_STREAMTYPE:
            self.state = "control"
            self._write(_GREETING)
        else:
            self._write(_REFUSAL)
            self.fail(
                f"unknown streamtype {event.name!r} "
                f"(this proxy serves {SMD_STREAMTYPE!r} and {CONTROL_STREAMTYPE!r})"
            )

    def _first_frame_timed_out(self) -> None:
        self._first_frame_timer = None
        if self.state == "new":
            self.proxy.count("first_frame_timeouts")
            self.fail(f"no STREAMTYPE within {self.proxy.settings.first_frame_timeout:g} s")

    # -- writing: messages to the client -----------------------------------

    def on_message(self, cls: int, timestamp_us: int, payload: bytes) -> None:
        """Bus callback: queue the message's RX_PAYLOAD for the next write."""
        self.out.append(self.proxy.rx_frame(cls, timestamp_us, payload))
        self.out_msgs += 1
        if not self.dirty:
            self.dirty = True
            self.proxy.mark_dirty(self)

    def flush(self) -> None:
        """Write what is collected in one go, then check the buffer's bounds."""
        self.dirty = False
        out = self.out
        transport = self.transport
        if not out or transport is None or self.state == "closed":
            out.clear()
            self.out_msgs = 0
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.msgs_out += self.out_msgs
        self.out_msgs = 0
        self.bytes_out += len(data)
        transport.write(data)
        buffered = transport.get_write_buffer_size()
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
        if self.transport is not None:
            self.bytes_out += len(data)
            self.transport.write(data)

    def buffered(self) -> int:
        """Outbound bytes not yet taken by the client's socket."""
        if self.transport is None or self.state == "closed":
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
        if self.state != "closed":
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
        if self.state == "closed":
            return
        # what the proxy gave up on by hanging up; an orderly close still flushes
        self.dropped = self.queued() if error else 0
        self.state = "closed"
        self.close_reason = reason
        self.closed_at = time.time()
        self.pending = None
        self.held = None
        self.out.clear()
        self.out_msgs = 0
        if self._first_frame_timer is not None:
            self._first_frame_timer.cancel()
            self._first_frame_timer = None
        if self.participant is not None:
            self.proxy.bus.unregister(self.participant)
            self.participant = None
        if error:
            log.warning("closing %s: %s", self.describe(), reason)
        else:
            log.info("closed %s: %s", self.describe(), reason)
        self.proxy.forget(self)
