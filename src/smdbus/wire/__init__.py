"""The ``_lws_smd`` wire of libwebsockets' Secure Streams proxy, sans I/O.

Bytes in, events out (:class:`Decoder`); events out, bytes in (:func:`encode`
and the fast ``*_frame`` builders); the order of frames, as a state machine
with a transition table (:class:`Connection`, :mod:`smdbus.wire._protocol`).
Nothing here touches a socket (but the tools' thin adapters:
:class:`WireStream` on asyncio, :class:`BlockingStream` for the one-shot
tools, both imported on first use so a tool that does not use asyncio does
not load it): the proxy (:mod:`smdbus.proxy`) and the client put this on top
of asyncio. Our own additions, which C peers never see, are the control
stream's (``CONTROL_STREAMTYPE``, the queries and replies).

This ``__init__`` is the package's surface: the modules behind it are
private (``_name.py``) and nothing outside ``smdbus.wire`` imports them.

Typical use on the proxy side::

    decoder = Decoder(Role.PROXY, max_frame=1024)
    for event in decoder.feed(data):
        if isinstance(event, TxPayload): ...
        elif isinstance(event, DecodeError): log(event.message); hang_up()
"""

from smdbus._lazy import lazy_names
from smdbus.wire._address import DEFAULT_ADDRESS, format_address, is_abstract, parse_address
from smdbus.wire._control import (
    CONTROL_MAX_PAYLOAD,
    CONTROL_STREAMTYPE,
    GREETING_EVENTS,
    MAX_LABEL,
    WATCH_QUERY,
    control_reply,
    describe_query,
    interest_reply,
    is_our_proxy,
    monitor_query,
    parse_denied,
    parse_interest,
)
from smdbus.wire._decoder import Decoder, Role, decode
from smdbus.wire._events import (
    FLAG_EOM,
    FLAG_SOM,
    FLAGS_WHOLE,
    ClientBoundEvent,
    ConnState,
    ConnStateCode,
    CreateResult,
    DecodeError,
    Destroying,
    Event,
    LinkValidityProbe,
    OnwardConnect,
    PayloadLengthHint,
    Perf,
    Problem,
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
from smdbus.wire._frames import (
    MASK_ZERO_QUIRK,
    MAX_FRAME_LEN,
    PAYLOAD_CLASS,
    PAYLOAD_HEAD,
    PAYLOAD_OVERHEAD,
    PROTOCOL_VERSION,
    SMD_STREAMTYPE,
    WIRE_MAX_PAYLOAD,
    FrameType,
    conn_state_frame,
    create_result_frame,
    encode,
    encode_all,
    rx_payload_frame,
    stream_type_frame,
    tx_payload_frame,
)
from smdbus.wire._message import SmdMessage, pack_message, unpack_message
from smdbus.wire._protocol import (
    TRANSITIONS,
    Connection,
    CreateRefused,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    StreamState,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from smdbus.wire._blocking import BlockingStream
    from smdbus.wire._stream import WireStream

# The adapters, on first use: WireStream pulls in asyncio, BlockingStream select and socket.
_HOME = {
    "smdbus.wire._blocking": ("BlockingStream",),
    "smdbus.wire._stream": ("WireStream",),
}

__all__ = [
    "CONTROL_MAX_PAYLOAD",
    "CONTROL_STREAMTYPE",
    "DEFAULT_ADDRESS",
    "FLAGS_WHOLE",
    "FLAG_EOM",
    "FLAG_SOM",
    "GREETING_EVENTS",
    "MASK_ZERO_QUIRK",
    "MAX_FRAME_LEN",
    "MAX_LABEL",
    "PAYLOAD_CLASS",
    "PAYLOAD_HEAD",
    "PAYLOAD_OVERHEAD",
    "PROTOCOL_VERSION",
    "SMD_STREAMTYPE",
    "TRANSITIONS",
    "WATCH_QUERY",
    "WIRE_MAX_PAYLOAD",
    "BlockingStream",
    "ClientBoundEvent",
    "ConnState",
    "ConnStateCode",
    "Connection",
    "CreateRefused",
    "CreateResult",
    "DecodeError",
    "Decoder",
    "Destroying",
    "Event",
    "FrameType",
    "LinkValidityProbe",
    "LocalProtocolError",
    "OnwardConnect",
    "PayloadLengthHint",
    "Perf",
    "Problem",
    "ProtocolError",
    "ProxyBoundEvent",
    "RemoteProtocolError",
    "Role",
    "RxCreditUpdate",
    "RxMetadata",
    "RxPayload",
    "SmdMessage",
    "StreamState",
    "StreamType",
    "TimeoutUpdate",
    "TxCreditUpdate",
    "TxMetadata",
    "TxPayload",
    "WireStream",
    "conn_state_frame",
    "control_reply",
    "create_result_frame",
    "decode",
    "describe_query",
    "encode",
    "encode_all",
    "format_address",
    "interest_reply",
    "is_abstract",
    "is_our_proxy",
    "monitor_query",
    "pack_message",
    "parse_address",
    "parse_denied",
    "parse_interest",
    "rx_payload_frame",
    "stream_type_frame",
    "tx_payload_frame",
    "unpack_message",
]


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals())
