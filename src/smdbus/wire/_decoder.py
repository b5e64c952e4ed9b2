"""Bytes in, events out: the incremental parser for one direction of the wire.

Theory of operation: bytes go in with :meth:`Decoder.feed` in whatever pieces
the socket delivers (a frame split over reads, or many frames in one read);
complete frames come out as events from :meth:`Decoder.next_event`, one at a
time and only when asked. Asking lazily is what lets a proxy stop taking
messages from a publisher while its bus is full: the unread frames simply
stay here until it asks again.

Rules:

- The decoder plays one role. ``Role.PROXY`` decodes what clients send
  (STREAMTYPE, TX_PAYLOAD, ...); ``Role.CLIENT`` decodes what a proxy sends
  (CREATE_RESULT, RX_PAYLOAD, ...). A frame of the other direction is an error.
- It checks framing and each frame's own layout, nothing about the order of
  frames (whether STREAMTYPE came first is the connection's business).
- Malformed input never raises: it produces one :class:`DecodeError` naming
  the problem and the stream offset, after which the decoder yields nothing
  more (the stream cannot be resynchronised; the owner should hang up).
  Errors are detected as early as the bytes allow (a bad header before its
  body arrives) and always at the same byte, however the input was split.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterator

from smdbus.wire._events import (
    ConnState,
    CreateResult,
    DecodeError,
    Destroying,
    Event,
    LinkValidityProbe,
    OnwardConnect,
    PayloadLengthHint,
    Perf,
    Problem,
    RxCreditUpdate,
    RxMetadata,
    RxPayload,
    StreamType,
    TimeoutUpdate,
    TxCreditUpdate,
    TxMetadata,
    TxPayload,
)
from smdbus.wire._frames import (
    MAX_FRAME_LEN,
    PAYLOAD_HEAD,
    PAYLOAD_HEAD_AFTER_LEN,
    PAYLOAD_OVERHEAD,
    PROTOCOL_VERSION,
    TO_CLIENT,
    TO_PROXY,
    WIRE_MAX_PAYLOAD,
    FrameType,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (smd send loads this)
if TYPE_CHECKING:
    from typing import Any, Final


class Role(enum.Enum):
    """Which side of the socket the decoder sits on."""

    PROXY = "proxy"
    """Decodes client→proxy frames."""
    CLIENT = "client"
    """Decodes proxy→client frames."""


_new: Final = tuple.__new__
_unpack_payload_head: Final = PAYLOAD_HEAD_AFTER_LEN.unpack_from
_WHOLE_HEAD: Final = PAYLOAD_HEAD.size  # 35: frame header, Secure Streams header, SMD header
# The hot paths read only what they use: the Secure Streams fields are skipped as
# padding, so no int objects are made for them (a third of the unpacking cost).
_unpack_type_len_cls_ts: Final = struct.Struct(">BH16xQQ").unpack_from
_unpack_type_len_cls: Final = struct.Struct(">BH16xQ").unpack_from
assert struct.calcsize(">BH16xQQ") == _WHOLE_HEAD

Sink = Callable[[int, int, bytes], object]
"""``sink(cls, timestamp_us, payload)``: where :meth:`Decoder.dispatch` hands each message."""
Publish = Callable[[int, bytes], object]
"""``send(cls, payload)``: where :meth:`Decoder.dispatch_payloads` hands each message."""
_FIXED_LEN = {
    FrameType.ONWARD_CONNECT: 0,
    FrameType.DESTROYING: 0,
    FrameType.TX_TXCR_UPDATE: 4,
    FrameType.RX_TXCR_UPDATE: 4,
    FrameType.TIMEOUT_UPDATE: 4,
    FrameType.PAYLOAD_LENGTH_HINT: 4,
}
_MIN_LEN = {
    FrameType.STREAMTYPE: 10,  # version, pid, mask, at least one name byte
    FrameType.TX_METADATA: 2,  # name length, at least one name byte
    FrameType.RX_METADATA: 2,
    FrameType.CREATE_RESULT: 5,  # result, client buflen
    FrameType.CONNSTATE: 5,  # state (1..4 bytes), ordinal u32
    FrameType.PERF: 1,
}


def _name(ftype: int) -> str:
    try:
        return f"0x{ftype:02x} ({FrameType(ftype).name})"
    except ValueError:
        return f"0x{ftype:02x}"


class Decoder:
    """Incremental decoder of one direction of the ``_lws_smd`` wire.

    ``max_frame`` bounds the len field of any frame (checked on the header,
    before the body is buffered); ``max_payload`` bounds the SMD payload inside a
    payload frame (383 in the C proxy).
    """

    __slots__ = (
        "_base",
        "_buf",
        "_error",
        "_failed",
        "_max_frame",
        "_max_payload",
        "_max_payload_len",
        "_payload_cls",
        "_payload_type",
        "_pos",
        "_wanted",
        "dispatched",
        "interrupted",
        "role",
        "stopped_by_sink",
    )

    def __init__(
        self, role: Role, *, max_frame: int = MAX_FRAME_LEN, max_payload: int = WIRE_MAX_PAYLOAD
    ) -> None:
        self.role = role
        self._max_frame = max_frame
        self._max_payload = max_payload
        self._max_payload_len = min(max_frame, PAYLOAD_OVERHEAD + max_payload)
        if role is Role.PROXY:
            self._payload_type = int(FrameType.TX_PAYLOAD)
            self._payload_cls: type[TxPayload] | type[RxPayload] = TxPayload
            self._wanted = TO_PROXY
        else:
            self._payload_type = int(FrameType.RX_PAYLOAD)
            self._payload_cls = RxPayload
            self._wanted = TO_CLIENT
        self._buf = b""
        self._pos = 0
        self._base = 0  # stream offset of self._buf[0]
        self._error: DecodeError | None = None
        self._failed = False  # the error has been handed out
        self.stopped_by_sink = False
        """Whether the last :meth:`dispatch` stopped because its sink returned False."""
        self.interrupted: tuple[int, int, bytes] | None = None
        """The message whose sink call raised in the last :meth:`dispatch` (it is consumed)."""
        self.dispatched = 0
        """Frames the last :meth:`dispatch` handed over, an interrupted one included."""

    # -- input -------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[Event]:
        """Add bytes; returns an iterator over the events now complete.

        The bytes are taken at once; the events are parsed lazily as the
        iterator is consumed, so breaking out of it leaves the rest buffered
        for the next :meth:`next_event`, :meth:`events` or :meth:`feed`.
        """
        if not self._failed:
            if not isinstance(data, bytes):
                data = bytes(data)
            buf = self._buf
            pos = self._pos
            if pos >= len(buf):
                self._base += len(buf)
                self._buf = data
            else:
                self._base += pos
                self._buf = buf[pos:] + data
            self._pos = 0
        return self.events()

    def events(self) -> Iterator[Event]:
        """The events complete so far, parsed one by one as consumed."""
        next_event = self.next_event
        while (event := next_event()) is not None:
            yield event

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as events."""
        return len(self._buf) - self._pos

    @property
    def error(self) -> DecodeError | None:
        """The error that stopped this decoder, if any."""
        return self._error

    # -- parsing -----------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next complete event, or None when more bytes are needed (or after an error)."""
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 3:
            return None
        ftype = buf[pos]
        length = (buf[pos + 1] << 8) | buf[pos + 2]
        end = pos + 3 + length
        if ftype == self._payload_type and PAYLOAD_OVERHEAD <= length <= self._max_payload_len:
            # hot path: one SMD message
            if end > len(buf):
                return None
            flags, latency, time_us, cls, timestamp_us = _unpack_payload_head(buf, pos + 3)
            self._pos = end
            payload = buf[pos + 35 : end]
            return _new(self._payload_cls, (cls, timestamp_us, payload, flags, latency, time_us))
        return self._other(ftype, length, pos, end)

    def dispatch(
        self,
        sink: Sink,
        limit: int = -1,
        hold_mask: int = 0,
        stop_on_false: bool = False,
    ) -> int:
        """Hand the buffered payload frames to ``sink(cls, timestamp_us, payload)``, no events.

        The hot path of both ends: one ``unpack_from`` per frame and a call,
        nothing else. It stops, leaving the rest for :meth:`next_event`, before
        any frame that is not a whole payload frame within the limits (other
        frame types, a partial frame, anything malformed), before a payload
        whose class shares a bit with ``hold_mask``, after ``limit`` frames
        (negative: no limit), and, with ``stop_on_false``, after a frame for
        which ``sink`` returned ``False`` (then :attr:`stopped_by_sink` is set).
        A frame is consumed before ``sink`` sees it: if ``sink`` raises, the
        exception propagates, the message is in :attr:`interrupted` and the
        count so far (it included) in :attr:`dispatched`.

        Returns how many frames were handed over. The Secure Streams header
        (flags, latency, time) is not looked at: SMD always sends whole
        messages and neither end uses the rest.
        """
        self.stopped_by_sink = False
        buf = self._buf
        pos = self._pos
        size = len(buf)
        ptype = self._payload_type
        longest = self._max_payload_len
        n = 0
        cls = ts = 0
        payload = b""
        try:
            while n != limit and size - pos >= _WHOLE_HEAD:
                ftype, length, cls, ts = _unpack_type_len_cls_ts(buf, pos)
                end = pos + 3 + length
                if (
                    ftype != ptype
                    or length < PAYLOAD_OVERHEAD
                    or length > longest
                    or end > size
                    or cls & hold_mask
                ):
                    break
                payload = buf[pos + _WHOLE_HEAD : end]
                self._pos = pos = end
                n += 1
                if sink(cls, ts, payload) is False and stop_on_false:
                    self.stopped_by_sink = True
                    break
        except BaseException:
            self.interrupted = (cls, ts, payload)
            self.dispatched = n
            raise
        self.dispatched = n
        return n

    def collect(self, append: Callable[[Any], object], kind: type[Any], limit: int = -1) -> int:
        """:meth:`dispatch` into a container: ``append(kind(cls, timestamp_us, payload))`` each.

        ``kind`` is a 3-field tuple type (a ``NamedTuple``), built with
        ``tuple.__new__`` and ``append`` is a C method (``deque.append``), so no
        Python code runs per message: the fastest way to fill an inbox.
        Stops as :meth:`dispatch` does, and after ``limit`` messages.
        """
        buf = self._buf
        pos = self._pos
        size = len(buf)
        ptype = self._payload_type
        longest = self._max_payload_len
        n = 0
        while n != limit and size - pos >= _WHOLE_HEAD:
            ftype, length, cls, ts = _unpack_type_len_cls_ts(buf, pos)
            end = pos + 3 + length
            if ftype != ptype or length < PAYLOAD_OVERHEAD or length > longest or end > size:
                break
            append(_new(kind, (cls, ts, buf[pos + _WHOLE_HEAD : end])))
            pos = end
            n += 1
        self._pos = pos
        self.dispatched = n
        return n

    def dispatch_payloads(self, send: Publish, limit: int = -1, hold_mask: int = 0) -> int:
        """:meth:`dispatch` for a receiver that ignores the timestamp: ``send(cls, payload)``.

        The proxy's hot path (it stamps messages with its own clock, as C does),
        so ``send`` can be ``Bus.send`` itself with no wrapper call per message.
        """
        buf = self._buf
        pos = self._pos
        size = len(buf)
        ptype = self._payload_type
        longest = self._max_payload_len
        n = 0
        cls = 0
        payload = b""
        try:
            while n != limit and size - pos >= _WHOLE_HEAD:
                ftype, length, cls = _unpack_type_len_cls(buf, pos)
                end = pos + 3 + length
                if (
                    ftype != ptype
                    or length < PAYLOAD_OVERHEAD
                    or length > longest
                    or end > size
                    or cls & hold_mask
                ):
                    break
                payload = buf[pos + _WHOLE_HEAD : end]
                self._pos = pos = end
                n += 1
                send(cls, payload)
        except BaseException:
            self.interrupted = (cls, 0, payload)
            self.dispatched = n
            raise
        self.dispatched = n
        return n

    def _fail(self, problem: Problem, message: str, ftype: int, pos: int) -> DecodeError:
        offset = self._base + pos
        self._error = DecodeError(problem, f"{message} (at byte {offset})", ftype, offset)
        self._failed = True
        self._buf = b""
        self._pos = 0
        return self._error

    def _header_problem(self, ftype: int, length: int) -> tuple[Problem, str] | None:
        """What is wrong with a frame header alone, if anything."""
        if ftype not in self._wanted:
            if ftype in TO_CLIENT or ftype in TO_PROXY:
                peer = "client" if self.role is Role.PROXY else "proxy"
                return (
                    Problem.WRONG_DIRECTION,
                    f"frame type {_name(ftype)} is never sent by a {peer}",
                )
            return Problem.UNKNOWN_TYPE, f"unknown frame type 0x{ftype:02x}"
        if ftype == self._payload_type:
            if length < PAYLOAD_OVERHEAD:
                return (
                    Problem.SHORT_BODY,
                    f"{_name(ftype)} of {length} bytes is shorter than the "
                    f"{PAYLOAD_OVERHEAD}-byte payload and SMD headers",
                )
            if length - PAYLOAD_OVERHEAD > self._max_payload:
                return (
                    Problem.PAYLOAD_TOO_LARGE,
                    f"{_name(ftype)} carries an SMD payload of {length - PAYLOAD_OVERHEAD} bytes, "
                    f"over the limit of {self._max_payload}",
                )
        fixed = _FIXED_LEN.get(ftype)  # type: ignore[call-overload]
        if fixed is not None and length != fixed:
            return Problem.BAD_LENGTH, f"{_name(ftype)} has len {length}, must be {fixed}"
        minimum = _MIN_LEN.get(ftype)  # type: ignore[call-overload]
        if minimum is not None and length < minimum:
            return (
                Problem.SHORT_BODY,
                f"{_name(ftype)} has len {length}, shorter than its minimum of {minimum}",
            )
        if ftype == FrameType.CONNSTATE and length > 8:
            return Problem.BAD_LENGTH, f"{_name(ftype)} has len {length}, must be 5..8"
        if length > self._max_frame:
            return (
                Problem.FRAME_TOO_LARGE,
                f"{_name(ftype)} has len {length}, over the limit of {self._max_frame}",
            )
        return None

    def _other(self, ftype: int, length: int, pos: int, end: int) -> Event | None:
        problem = self._header_problem(ftype, length)
        if problem is not None:
            return self._fail(problem[0], problem[1], ftype, pos)
        buf = self._buf
        if end > len(buf):
            return None
        body = buf[pos + 3 : end]
        event = self._parse_body(ftype, body, pos)
        if type(event) is not DecodeError:
            self._pos = end
        return event

    def _parse_body(self, ftype: int, body: bytes, pos: int) -> Event:
        """A complete frame whose header passed the checks (payload frames included)."""
        if ftype == FrameType.STREAMTYPE:
            version = body[0]
            if version != PROTOCOL_VERSION:
                return self._fail(
                    Problem.BAD_VERSION,
                    f"STREAMTYPE asks for serialization version {version}; "
                    f"only {PROTOCOL_VERSION} is spoken",
                    ftype,
                    pos,
                )
            try:
                name = body[9:].decode()
            except UnicodeDecodeError:
                return self._fail(
                    Problem.BAD_NAME, f"STREAMTYPE name {body[9:]!r} is not UTF-8", ftype, pos
                )
            pid = int.from_bytes(body[1:5], "big")
            mask = int.from_bytes(body[5:9], "big")
            return StreamType(name, mask, pid, version)
        if ftype == self._payload_type:
            flags, latency, time_us, cls, timestamp = PAYLOAD_HEAD_AFTER_LEN.unpack_from(body)
            return _new(self._payload_cls, (cls, timestamp, body[32:], flags, latency, time_us))
        if ftype == FrameType.ONWARD_CONNECT:
            return OnwardConnect()
        if ftype == FrameType.DESTROYING:
            return Destroying()
        if ftype in (FrameType.TX_METADATA, FrameType.RX_METADATA):
            name_len = body[0]
            if name_len == 0 or name_len > len(body) - 1:
                return self._fail(
                    Problem.BAD_LENGTH,
                    f"{_name(ftype)} name length {name_len} does not fit its {len(body)}-byte body",
                    ftype,
                    pos,
                )
            try:
                mname = body[1 : 1 + name_len].decode()
            except UnicodeDecodeError:
                return self._fail(Problem.BAD_NAME, f"{_name(ftype)} name is not UTF-8", ftype, pos)
            value = body[1 + name_len :]
            if ftype == FrameType.TX_METADATA:
                return TxMetadata(mname, value)
            return RxMetadata(mname, value)
        if ftype == FrameType.TX_TXCR_UPDATE:
            return TxCreditUpdate(int.from_bytes(body, "big", signed=True))
        if ftype == FrameType.RX_TXCR_UPDATE:
            return RxCreditUpdate(int.from_bytes(body, "big", signed=True))
        if ftype == FrameType.TIMEOUT_UPDATE:
            return TimeoutUpdate(int.from_bytes(body, "big"))
        if ftype == FrameType.PAYLOAD_LENGTH_HINT:
            return PayloadLengthHint(int.from_bytes(body, "big"))
        if ftype == FrameType.LINK_VALIDITY_PROBE:
            return LinkValidityProbe(body)
        if ftype == FrameType.CREATE_RESULT:
            return CreateResult(body[0], int.from_bytes(body[1:5], "big"), body[5:])
        if ftype == FrameType.CONNSTATE:
            return ConnState(int.from_bytes(body[:-4], "big"), int.from_bytes(body[-4:], "big"))
        if ftype == FrameType.PERF:
            return Perf(body)
        # every type in self._wanted is handled above
        raise AssertionError(f"unhandled frame type {ftype:#x}")  # pragma: no cover


def decode(data: bytes, role: Role, **limits: int) -> list[Event]:
    """All events in ``data`` (a convenience for tests and tools)."""
    return list(Decoder(role, **limits).feed(data))
