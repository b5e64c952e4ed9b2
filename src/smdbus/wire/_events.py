"""Events of the ``_lws_smd`` wire: one small immutable class per frame.

Rules of this module:

- An event is what a frame *means*, not how it is laid out; the byte layout
  lives in :mod:`smdbus.wire._frames` (building) and :mod:`smdbus.wire._decoder`
  (parsing). This file knows nothing about sockets or roles.
- Events are ``NamedTuple`` subclasses: immutable, and the cheapest object
  Python can build, which matters because a payload event is made for every
  message on the hot path. Equality and hashing include the event's type, so
  ``TxPayload(...) != RxPayload(...)`` even with the same fields.
- Names follow the direction: ``Tx*`` frames go client→proxy, ``Rx*`` frames
  go proxy→client (as in libwebsockets' ``TXPRE``/``RXPRE`` prefixes).
"""

from __future__ import annotations

import enum

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (smdbus._namedtuple)
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from smdbus._namedtuple import NamedTuple

FLAG_SOM = 1
"""Start of message: the payload begins a message."""
FLAG_EOM = 2
"""End of message: the payload completes it. SMD always sends SOM|EOM."""
FLAGS_WHOLE = FLAG_SOM | FLAG_EOM


class ConnStateCode(enum.IntEnum):
    """The connection states a proxy reports in CONNSTATE (``LWSSSCS_*``)."""

    CREATING = 1
    DISCONNECTED = 2
    UNREACHABLE = 3
    AUTH_FAILED = 4
    CONNECTED = 5
    CONNECTING = 6
    DESTROYING = 7


def _typed_eq(self: tuple[object, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _typed_ne(self: tuple[object, ...], other: object) -> bool:
    return not _typed_eq(self, other)


def _typed_hash(self: tuple[object, ...]) -> int:
    return hash((type(self).__name__, tuple(self)))


# --- client → proxy -------------------------------------------------------


class StreamType(NamedTuple):
    """0xAA, the client's first frame: which stream it wants, and for SMD its class mask.

    The C field is the "initial tx credit"; for ``_lws_smd`` it carries the
    mask of classes the client wants to receive.
    """

    name: str
    mask: int
    pid: int = 0
    version: int = 1


class OnwardConnect(NamedTuple):
    """0xAB: the client asks the proxy to connect onward (meaningless for SMD)."""


class Destroying(NamedTuple):
    """0xAC: the client is destroying its stream; the proxy hangs up."""


class TxPayload(NamedTuple):
    """0xAD: one SMD message from a client.

    ``cls``/``timestamp_us``/``payload`` are the SMD message inside the frame;
    ``latency_us`` ("µs since tx was requested") and ``time_us`` (the client's
    clock when it wrote the frame) are the Secure Streams header.
    """

    cls: int
    timestamp_us: int
    payload: bytes
    flags: int = FLAGS_WHOLE
    latency_us: int = 0
    time_us: int = 0


class TxMetadata(NamedTuple):
    """0xAE: client metadata; the C proxy hangs up on it for SMD streams."""

    name: str
    value: bytes


class TxCreditUpdate(NamedTuple):
    """0xAF: tx credit from the client (signed); SMD masks are fixed, so ignored."""

    credit: int


class TimeoutUpdate(NamedTuple):
    """0xB0: the client sets its stream timeout in ms (accepted, ignored for SMD)."""

    timeout_ms: int


class PayloadLengthHint(NamedTuple):
    """0xB1: the length of the payload the client will send (accepted, ignored)."""

    length: int


class LinkValidityProbe(NamedTuple):
    """0xB3: a liveness probe from newer clients; its body is carried opaquely."""

    body: bytes = b""


# --- proxy → client -------------------------------------------------------


class RxPayload(NamedTuple):
    """0x55: one SMD message delivered to a client.

    ``timestamp_us`` is when the message was created at the proxy (monotonic µs);
    ``time_us`` is the proxy's clock when it wrote the frame.
    """

    cls: int
    timestamp_us: int
    payload: bytes
    flags: int = FLAGS_WHOLE
    latency_us: int = 0
    time_us: int = 0


class CreateResult(NamedTuple):
    """0x56: the proxy's answer to STREAMTYPE; ``result`` 0 means the stream exists."""

    result: int = 0
    buflen: int = 0
    rideshare: bytes = b""

    @property
    def ok(self) -> bool:
        return self.result == 0


class ConnState(NamedTuple):
    """0x57: a connection state change (see :class:`ConnStateCode`)."""

    state: int
    ordinal: int = 0


class RxCreditUpdate(NamedTuple):
    """0x58: tx credit granted to the client (unused for SMD)."""

    credit: int


class RxMetadata(NamedTuple):
    """0x59: metadata from the proxy (unused for SMD)."""

    name: str
    value: bytes


class Perf(NamedTuple):
    """0x5B: performance JSON from the proxy (unused for SMD)."""

    body: bytes


# --- errors ---------------------------------------------------------------


class Problem(enum.StrEnum):
    """What was wrong with the input, as a stable short name (for logs and counters)."""

    UNKNOWN_TYPE = "unknown-type"
    WRONG_DIRECTION = "wrong-direction"
    BAD_LENGTH = "bad-length"
    SHORT_BODY = "short-body"
    PAYLOAD_TOO_LARGE = "payload-too-large"
    FRAME_TOO_LARGE = "frame-too-large"
    BAD_VERSION = "bad-version"
    BAD_NAME = "bad-name"


class DecodeError(NamedTuple):
    """The input is malformed; the decoder stops here and yields nothing more.

    A connection that produced this cannot be resynchronised safely: the
    receiver should log ``message`` and hang up.
    """

    problem: Problem
    message: str
    frame_type: int | None = None
    offset: int = 0

    def __str__(self) -> str:
        return self.message


ProxyBoundEvent = (
    StreamType
    | OnwardConnect
    | Destroying
    | TxPayload
    | TxMetadata
    | TxCreditUpdate
    | TimeoutUpdate
    | PayloadLengthHint
    | LinkValidityProbe
)
"""Frames a client sends and a proxy decodes."""

ClientBoundEvent = RxPayload | CreateResult | ConnState | RxCreditUpdate | RxMetadata | Perf
"""Frames a proxy sends and a client decodes."""

Event = ProxyBoundEvent | ClientBoundEvent | DecodeError


def _compare_by_type(*classes: type[tuple[object, ...]]) -> None:
    """Make equality and hashing of the event tuples include their type.

    Done after the class statements because ``NamedTuple`` bodies may only
    declare fields and methods, and assigning dunders there upsets type checkers.
    """
    for klass in classes:
        setattr(klass, "__eq__", _typed_eq)  # noqa: B010
        setattr(klass, "__ne__", _typed_ne)  # noqa: B010
        setattr(klass, "__hash__", _typed_hash)  # noqa: B010


_compare_by_type(
    StreamType,
    OnwardConnect,
    Destroying,
    TxPayload,
    TxMetadata,
    TxCreditUpdate,
    TimeoutUpdate,
    PayloadLengthHint,
    LinkValidityProbe,
    RxPayload,
    CreateResult,
    ConnState,
    RxCreditUpdate,
    RxMetadata,
    Perf,
    DecodeError,
)
