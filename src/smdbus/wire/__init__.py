"""The ``_lws_smd`` wire of libwebsockets' Secure Streams proxy, sans I/O.

Bytes in, events out (:class:`Decoder`); events out, bytes in (:func:`encode`
and the fast ``*_frame`` builders); the order of frames, as a state machine
with a transition table (:class:`Connection`, :mod:`smdbus.wire._protocol`).
Nothing here touches a socket (but the tools' thin adapters:
:mod:`smdbus.wire._stream` on asyncio, :mod:`smdbus.wire._blocking` for the
one-shot tools): the proxy (:mod:`smdbus.proxy`) and the client
put this on top of asyncio. Our own additions, which C peers never see, are
:mod:`smdbus.wire._control`.

Typical use on the proxy side::

    decoder = Decoder(Role.PROXY, max_frame=1024)
    for event in decoder.feed(data):
        if isinstance(event, TxPayload): ...
        elif isinstance(event, DecodeError): log(event.message); hang_up()
"""

from smdbus.wire._address import DEFAULT_ADDRESS, format_address, is_abstract, parse_address
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
    MAX_BODY,
    MAX_FRAME_LEN,
    PAYLOAD_OVERHEAD,
    PROTOCOL_VERSION,
    SMD_STREAMTYPE,
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

__all__ = [
    "DEFAULT_ADDRESS",
    "FLAGS_WHOLE",
    "FLAG_EOM",
    "FLAG_SOM",
    "MASK_ZERO_QUIRK",
    "MAX_BODY",
    "MAX_FRAME_LEN",
    "PAYLOAD_OVERHEAD",
    "PROTOCOL_VERSION",
    "SMD_STREAMTYPE",
    "TRANSITIONS",
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
    "conn_state_frame",
    "create_result_frame",
    "decode",
    "encode",
    "encode_all",
    "format_address",
    "is_abstract",
    "pack_message",
    "parse_address",
    "rx_payload_frame",
    "stream_type_frame",
    "tx_payload_frame",
    "unpack_message",
]
