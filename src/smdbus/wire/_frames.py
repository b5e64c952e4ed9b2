"""Frame layout of the Secure Streams serialization, and the builders.

Every frame is ``type u8 | len u16 | body`` with ``len`` counting the body
only; all integers are big-endian. The payload frames (TX_PAYLOAD client→proxy,
RX_PAYLOAD proxy→client) carry a 16-byte Secure Streams header
(``flags u32 | latency u32 | time u64``) and then an SMD message
(``class u64 | timestamp_us u64 | payload``). See ``docs/wire.md``.

The builders here never raise for well-typed input within the limits; a
value out of range (a body over 65 535 bytes, a negative class) raises
``ValueError`` naming the field, because that is a bug in the caller rather
than bad input from a peer.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable

from smdbus.wire._events import (
    FLAGS_WHOLE,
    ClientBoundEvent,
    ConnState,
    CreateResult,
    Destroying,
    LinkValidityProbe,
    OnwardConnect,
    PayloadLengthHint,
    Perf,
    ProxyBoundEvent,
    RxCreditUpdate,
    RxMetadata,
    RxPayload,
    StreamType,
    TimeoutUpdate,
    TxCreditUpdate,
    TxMetadata,
    TxPayload,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (smd send loads this)
if TYPE_CHECKING:
    from typing import Any, Final


class FrameType(enum.IntEnum):
    """The first byte of a frame (libwebsockets' ``LWSSS_SER_{RX,TX}PRE_*``)."""

    # proxy → client
    RX_PAYLOAD = 0x55
    CREATE_RESULT = 0x56
    CONNSTATE = 0x57
    RX_TXCR_UPDATE = 0x58
    RX_METADATA = 0x59
    PERF = 0x5B
    # client → proxy
    STREAMTYPE = 0xAA
    ONWARD_CONNECT = 0xAB
    DESTROYING = 0xAC
    TX_PAYLOAD = 0xAD
    TX_METADATA = 0xAE
    TX_TXCR_UPDATE = 0xAF
    TIMEOUT_UPDATE = 0xB0
    PAYLOAD_LENGTH_HINT = 0xB1
    LINK_VALIDITY_PROBE = 0xB3


TO_CLIENT = frozenset(t for t in FrameType if t < 0x80)
"""Frame types a proxy sends."""
TO_PROXY = frozenset(t for t in FrameType if t >= 0x80)
"""Frame types a client sends."""

SMD_STREAMTYPE = "_lws_smd"
"""The streamtype name of the SMD stream in libwebsockets."""

PROTOCOL_VERSION = 1
"""The only serialization version the C proxy accepts."""

WIRE_MAX_PAYLOAD = 383
"""Largest SMD payload the C proxy carries (a larger one wedges its stream)."""

MAX_FRAME_LEN = 0xFFFF
"""The len field is a u16: the largest body any frame can have."""

HEADER_LEN: Final = 3
"""type u8 + len u16."""

PAYLOAD_OVERHEAD: Final = 32
"""Secure Streams header (16) + SMD message header (16) inside a payload frame."""

MASK_ZERO_QUIRK = 500_000_000
"""What a C client sends as its mask when it asks for mask 0 (0x1DCD6500).

The C client substitutes its default initial tx credit for a zero credit,
and the C proxy then takes that number literally as the class mask. We do
the same, so the same C program sees the same messages on either proxy.
"""

# header + Secure Streams payload header + SMD message header, one pack call
PAYLOAD_HEAD: Final = struct.Struct(">BHIIQQQ")
"""type | len | flags | latency | time | class | timestamp (35 bytes)."""
PAYLOAD_HEAD_AFTER_LEN = struct.Struct(">IIQQQ")
"""flags | latency | time | class | timestamp, read from just after the len."""
SMD_HEAD = struct.Struct(">QQ")
"""class | timestamp: the SMD message header."""
PAYLOAD_CLASS = struct.Struct(">19xQ")
"""The class of a payload frame, read from the frame's first byte."""

_HEAD = struct.Struct(">BH")
_U32 = struct.Struct(">I")
_S32 = struct.Struct(">i")
_STREAMTYPE_HEAD = struct.Struct(">BHBII")
_CREATE_RESULT_HEAD = struct.Struct(">BHBI")
_CONNSTATE = struct.Struct(">BHBI")
_CONNSTATE_WIDE = struct.Struct(">BHII")

_pack_payload: Final = PAYLOAD_HEAD.pack
# plain ints: the payload builders pack them per message
_RX_PAYLOAD: Final = int(FrameType.RX_PAYLOAD)
_TX_PAYLOAD: Final = int(FrameType.TX_PAYLOAD)


def rx_payload_frame(
    cls: int,
    timestamp_us: int,
    payload: bytes,
    time_us: int = 0,
    flags: int = FLAGS_WHOLE,
    latency_us: int = 0,
) -> bytes:
    """RX_PAYLOAD (proxy→client) for one SMD message: the proxy's hot path."""
    head = _pack_payload(
        _RX_PAYLOAD, PAYLOAD_OVERHEAD + len(payload), flags, latency_us, time_us, cls, timestamp_us
    )
    return head + payload


def tx_payload_frame(
    cls: int,
    timestamp_us: int,
    payload: bytes,
    time_us: int = 0,
    flags: int = FLAGS_WHOLE,
    latency_us: int = 0,
) -> bytes:
    """TX_PAYLOAD (client→proxy) for one SMD message: the client's hot path."""
    head = _pack_payload(
        _TX_PAYLOAD, PAYLOAD_OVERHEAD + len(payload), flags, latency_us, time_us, cls, timestamp_us
    )
    return head + payload


def _frame(ftype: int, body: bytes) -> bytes:
    if len(body) > MAX_FRAME_LEN:
        raise ValueError(f"frame 0x{ftype:02x} body of {len(body)} bytes exceeds {MAX_FRAME_LEN}")
    return _HEAD.pack(ftype, len(body)) + body


def stream_type_frame(name: str, mask: int, pid: int = 0, version: int = PROTOCOL_VERSION) -> bytes:
    """STREAMTYPE: the client's first frame (``mask`` rides in the tx-credit field)."""
    raw = name.encode()
    if not raw:
        raise ValueError("streamtype name must not be empty")
    return _STREAMTYPE_HEAD.pack(FrameType.STREAMTYPE, 9 + len(raw), version, pid, mask) + raw


def create_result_frame(result: int = 0, buflen: int = 0, rideshare: bytes = b"") -> bytes:
    """CREATE_RESULT: ``result`` 0 = stream created; the minimal form has no rideshare."""
    head = _CREATE_RESULT_HEAD.pack(FrameType.CREATE_RESULT, 5 + len(rideshare), result, buflen)
    return head + rideshare


def conn_state_frame(state: int, ordinal: int = 0) -> bytes:
    """CONNSTATE: one byte for the state when it fits (as C does), else four."""
    if state > 0xFF:
        return _CONNSTATE_WIDE.pack(FrameType.CONNSTATE, 8, state, ordinal)
    return _CONNSTATE.pack(FrameType.CONNSTATE, 5, state, ordinal)


def _metadata_body(name: str, value: bytes) -> bytes:
    raw = name.encode()
    if not 0 < len(raw) < 0x100:
        raise ValueError(f"metadata name must be 1..255 bytes, got {len(raw)}")
    return bytes((len(raw),)) + raw + value


_ENCODERS: dict[type[Any], Callable[[Any], bytes]] = {
    StreamType: lambda e: stream_type_frame(e.name, e.mask, e.pid, e.version),
    OnwardConnect: lambda e: _frame(FrameType.ONWARD_CONNECT, b""),
    Destroying: lambda e: _frame(FrameType.DESTROYING, b""),
    TxPayload: lambda e: tx_payload_frame(
        e.cls, e.timestamp_us, e.payload, e.time_us, e.flags, e.latency_us
    ),
    TxMetadata: lambda e: _frame(FrameType.TX_METADATA, _metadata_body(e.name, e.value)),
    TxCreditUpdate: lambda e: _frame(FrameType.TX_TXCR_UPDATE, _S32.pack(e.credit)),
    TimeoutUpdate: lambda e: _frame(FrameType.TIMEOUT_UPDATE, _U32.pack(e.timeout_ms)),
    PayloadLengthHint: lambda e: _frame(FrameType.PAYLOAD_LENGTH_HINT, _U32.pack(e.length)),
    LinkValidityProbe: lambda e: _frame(FrameType.LINK_VALIDITY_PROBE, e.body),
    RxPayload: lambda e: rx_payload_frame(
        e.cls, e.timestamp_us, e.payload, e.time_us, e.flags, e.latency_us
    ),
    CreateResult: lambda e: create_result_frame(e.result, e.buflen, e.rideshare),
    ConnState: lambda e: conn_state_frame(e.state, e.ordinal),
    RxCreditUpdate: lambda e: _frame(FrameType.RX_TXCR_UPDATE, _S32.pack(e.credit)),
    RxMetadata: lambda e: _frame(FrameType.RX_METADATA, _metadata_body(e.name, e.value)),
    Perf: lambda e: _frame(FrameType.PERF, e.body),
}


def encode(event: ProxyBoundEvent | ClientBoundEvent) -> bytes:
    """The frame bytes for ``event`` (any direction)."""
    try:
        encoder = _ENCODERS[type(event)]
    except KeyError:
        raise TypeError(f"not a wire event: {event!r}") from None
    try:
        return encoder(event)
    except struct.error as exc:
        raise ValueError(f"cannot encode {event!r}: {exc}") from None


def encode_all(events: Iterable[ProxyBoundEvent | ClientBoundEvent]) -> bytes:
    """Several frames as one buffer (one socket write)."""
    return b"".join(encode(e) for e in events)
