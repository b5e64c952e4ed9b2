"""The ``_lws_smd`` stream as a state machine, sans I/O: what may be sent and received when.

Rules of this module:

- Everything that decides the *order* of frames lives here: the transition
  table :data:`TRANSITIONS`. The layout of frames is :mod:`smdbus.wire._frames`
  (building) and :mod:`smdbus.wire._decoder` (parsing); this file knows no
  byte offsets.
- One table for the stream, read from both ends: each entry says which side
  sends an event kind in which state, and the state it leads to. A
  :class:`Connection` plays one :class:`~smdbus.wire._decoder.Role`; its own
  sends are checked against the table (a refusal is
  :class:`LocalProtocolError`, a bug in the caller) and so is what the peer
  sent (:class:`RemoteProtocolError`, the peer's fault: hang up). Both errors
  name the state, the event and who sent it.
- No socket, no clock, no loop: bytes in (:meth:`Connection.receive_data`),
  events out (:meth:`Connection.next_event`); events in
  (:meth:`Connection.send`), bytes out.

Theory of operation. A stream is created by the client's STREAMTYPE and
answered by the proxy's CREATE_RESULT; nothing carries messages before that
answer (a client sends no TX_PAYLOAD before it has read CREATE_RESULT;
docs/wire.md, "The sequence")::

    IDLE --client: STREAMTYPE--> CREATING --proxy: CREATE_RESULT ok--> OPEN
    CREATING --proxy: CREATE_RESULT refused--> CLOSED
    OPEN --client: TX_PAYLOAD, proxy: RX_PAYLOAD, CONNSTATE, ...--> OPEN
    CREATING/OPEN --client: DESTROYING--> CLOSED
    any --a malformed frame, a frame out of order--> CLOSED (an error)
    any --the transport ended, or our side hung up--> CLOSED (:meth:`Connection.close`)

A refused CREATE_RESULT is its own event kind (:class:`CreateRefused`), so the
table stays a plain ``{state: {(sender, kind): next_state}}``.

The hot path: once :attr:`Connection.state` is ``OPEN`` payload frames are
legal in both directions, so the owner may move them in bulk with
:meth:`Connection.dispatch` / :meth:`Connection.collect` (no event object per
message), or with the decoder's own bulk paths once it has checked that the
state is OPEN (the proxy's :meth:`Decoder.dispatch_payloads`, straight into
``bus.send``), and build them with the ``*_payload_frame`` builders: the state
is checked once per pass instead of once per message.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from smdbus.wire._decoder import Decoder, Role, Sink
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
    RxCreditUpdate,
    RxMetadata,
    RxPayload,
    StreamType,
    TimeoutUpdate,
    TxCreditUpdate,
    TxMetadata,
    TxPayload,
)
from smdbus.wire._frames import MAX_FRAME_LEN, WIRE_MAX_PAYLOAD, encode

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (smd send loads this)
if TYPE_CHECKING:
    from typing import Any, Final


class StreamState(enum.Enum):
    """Where the stream is (both ends agree, one frame apart)."""

    IDLE = "IDLE"
    """No STREAMTYPE yet."""
    CREATING = "CREATING"
    """STREAMTYPE sent, no CREATE_RESULT yet."""
    OPEN = "OPEN"
    """The stream exists: messages flow both ways."""
    CLOSED = "CLOSED"
    """Refused, destroyed, or broken by an error: nothing more."""


class CreateRefused:
    """The event kind of a CREATE_RESULT whose result is not 0 (not an event class itself)."""


class ProtocolError(Exception):
    """A frame out of order: names the state, the event and who sent it."""

    def __init__(self, message: str, state: StreamState, event: object) -> None:
        super().__init__(message)
        self.state = state
        self.event = event


class LocalProtocolError(ProtocolError):
    """We were about to send something the stream's state forbids (a bug here)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed or out of order: log it and hang up."""


_CLIENT: Final = Role.CLIENT
_PROXY: Final = Role.PROXY
# plain names for the per-read checks (an Enum member lookup costs ~60 ns on 3.11)
_OPEN: Final = StreamState.OPEN
_CLOSED: Final = StreamState.CLOSED

# Frames either side may send while the stream lives and that change nothing.
_CLIENT_CHATTER = (
    OnwardConnect,
    TxCreditUpdate,
    TimeoutUpdate,
    PayloadLengthHint,
    LinkValidityProbe,
)
_PROXY_CHATTER = (ConnState, RxCreditUpdate, RxMetadata, Perf)

TRANSITIONS: dict[StreamState, dict[tuple[Role, type[Any]], StreamState]] = {
    StreamState.IDLE: {
        (_CLIENT, StreamType): StreamState.CREATING,
    },
    StreamState.CREATING: {
        (_PROXY, CreateResult): StreamState.OPEN,
        (_PROXY, CreateRefused): StreamState.CLOSED,
        (_CLIENT, Destroying): StreamState.CLOSED,
        **{(_CLIENT, kind): StreamState.CREATING for kind in _CLIENT_CHATTER},
    },
    StreamState.OPEN: {
        (_CLIENT, TxPayload): StreamState.OPEN,
        (_CLIENT, TxMetadata): StreamState.OPEN,
        (_CLIENT, Destroying): StreamState.CLOSED,
        (_PROXY, RxPayload): StreamState.OPEN,
        **{(_CLIENT, kind): StreamState.OPEN for kind in _CLIENT_CHATTER},
        **{(_PROXY, kind): StreamState.OPEN for kind in _PROXY_CHATTER},
    },
    StreamState.CLOSED: {},
}
"""``{state: {(sender, event kind): next state}}``: every legal move, nothing else.

TX_METADATA is legal on the wire (the C proxy answers it by hanging up on an
SMD stream, and so does ours: that is the proxy's policy, not the order's).
"""


def _kind(event: object) -> type[Any]:
    if type(event) is CreateResult and event.result != 0:
        return CreateRefused
    return type(event)


def _label(event: object) -> str:
    if type(event) is CreateResult and event.result != 0:
        return f"CreateResult (refused, result {event.result})"
    return type(event).__name__


class Connection:
    """One ``_lws_smd`` stream seen from one end (``role``), sans I/O.

    ``max_frame`` and ``max_payload`` bound what the peer may send (see
    :class:`~smdbus.wire._decoder.Decoder`).
    """

    __slots__ = ("decoder", "peer", "role", "state")

    def __init__(
        self, role: Role, *, max_frame: int = MAX_FRAME_LEN, max_payload: int = WIRE_MAX_PAYLOAD
    ) -> None:
        self.role = role
        self.peer = Role.PROXY if role is Role.CLIENT else Role.CLIENT
        self.state = StreamState.IDLE
        self.decoder = Decoder(role, max_frame=max_frame, max_payload=max_payload)
        """The parser of what the peer sends (its bulk paths serve :meth:`dispatch`)."""

    def __repr__(self) -> str:
        return f"<Connection {self.role.value} {self.state.value}>"

    # -- our side ------------------------------------------------------------

    def send(self, event: Any) -> bytes:
        """The bytes of ``event``, after checking that we may send it now."""
        self.state = self._move(self.role, event, LocalProtocolError)
        return encode(event)

    # -- the peer's side -----------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the peer, in whatever pieces the socket gave them."""
        if self.state is not _CLOSED:
            self.decoder.feed(data)

    def next_event(self) -> Event | None:
        """The peer's next event, or None until more bytes come (or once closed).

        Raises :class:`RemoteProtocolError` for a malformed frame or one out of
        order; the connection is CLOSED after it.
        """
        if self.state is _CLOSED:
            return None
        event = self.decoder.next_event()
        if event is None:
            return None
        if type(event) is DecodeError:
            state, self.state = self.state, StreamState.CLOSED
            raise RemoteProtocolError(
                f"malformed frame from the {self.peer.value} in state {state.value}: "
                f"{event.message}",
                state,
                event,
            )
        self.state = self._move(self.peer, event, RemoteProtocolError)
        return event

    def dispatch(self, sink: Sink, limit: int = -1, stop_on_false: bool = False) -> int:
        """Hand the peer's buffered payloads to ``sink(cls, timestamp_us, payload)``; OPEN only.

        The bulk path of :meth:`next_event` (see :meth:`Decoder.dispatch`): it
        stops before anything that is not a whole payload frame, which then
        comes out of :meth:`next_event`.
        """
        if self.state is not _OPEN:
            return 0
        return self.decoder.dispatch(sink, limit, 0, stop_on_false)

    def collect(self, append: Callable[[Any], object], kind: type[Any], limit: int = -1) -> int:
        """:meth:`Decoder.collect` of the peer's payloads; OPEN only."""
        if self.state is not _OPEN:
            return 0
        return self.decoder.collect(append, kind, limit)

    def close(self) -> None:
        """The stream ends without a frame saying so: the peer hung up, or we do.

        Not a move of the table (no frame is sent or received), so legal in
        every state; nothing more comes out of :meth:`next_event` or the bulk
        paths after it.
        """
        self.state = StreamState.CLOSED

    # -- the table -------------------------------------------------------------

    def _move(self, sender: Role, event: object, error: type[ProtocolError]) -> StreamState:
        state = self.state
        nxt = TRANSITIONS[state].get((sender, _kind(event)))
        if nxt is None:
            self.state = StreamState.CLOSED if error is RemoteProtocolError else state
            raise error(
                f"{_label(event)} from the {sender.value} is not allowed in state {state.value}",
                state,
                event,
            )
        return nxt
