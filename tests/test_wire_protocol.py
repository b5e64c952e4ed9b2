"""The ``_lws_smd`` stream's state machine (``smdbus.wire.Connection``), sans I/O, both roles."""

from __future__ import annotations

import pytest

from smdbus.wire import (
    TRANSITIONS,
    ClientBoundEvent,
    Connection,
    ConnState,
    ConnStateCode,
    CreateResult,
    Destroying,
    LocalProtocolError,
    ProxyBoundEvent,
    RemoteProtocolError,
    Role,
    RxPayload,
    StreamState,
    StreamType,
    TxMetadata,
    TxPayload,
    encode,
)

# the golden handshake (docs/wire.md, "The sequence"; tests/data/wire_golden.txt)
STREAMTYPE = bytes.fromhex("aa0011 01 00003a7e 0000000e") + b"_lws_smd"
C_GREETING = bytes.fromhex(
    "56000c00 00000000 2c286e756c6c29 5700050100000000 5700050600000000 5700050500000000"
)


def events(conn: Connection) -> list[object]:
    out: list[object] = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


def state(conn: Connection) -> StreamState:
    """The state now (a function, so the type checker does not pin it across calls)."""
    return conn.state


def test_client_handshake_golden_bytes_and_payloads() -> None:
    c = Connection(Role.CLIENT)
    assert c.send(StreamType("_lws_smd", 0x0E, 0x3A7E)) == STREAMTYPE
    assert state(c) is StreamState.CREATING
    for i in range(0, len(C_GREETING), 5):  # any split
        c.receive_data(C_GREETING[i : i + 5])
    got = events(c)
    assert got[0] == CreateResult(0, 0, b",(null)")
    assert [e.state for e in got[1:] if isinstance(e, ConnState)] == [1, 6, 5]
    assert state(c) is StreamState.OPEN
    c.send(TxPayload(4, 0, b"x"))
    c.receive_data(encode(RxPayload(4, 7, b"y")))
    assert events(c) == [RxPayload(4, 7, b"y")]


def test_proxy_side_mirrors_it() -> None:
    p = Connection(Role.PROXY)
    p.receive_data(STREAMTYPE)
    assert events(p) == [StreamType("_lws_smd", 0x0E, 0x3A7E)]
    assert state(p) is StreamState.CREATING
    p.send(CreateResult(0))
    p.send(ConnState(ConnStateCode.CREATING))
    assert state(p) is StreamState.OPEN
    p.receive_data(encode(TxPayload(4, 0, b"hi")))
    seen: list[tuple[int, int, bytes]] = []
    assert p.dispatch(lambda c, t, b: seen.append((c, t, b))) == 1
    assert seen == [(4, 0, b"hi")]
    p.receive_data(encode(Destroying()))
    assert events(p) == [Destroying()]
    assert state(p) is StreamState.CLOSED


def test_sending_a_message_before_create_result_is_our_bug() -> None:
    c = Connection(Role.CLIENT)
    c.send(StreamType("_lws_smd", 4))
    with pytest.raises(LocalProtocolError) as info:
        c.send(TxPayload(4, 0, b"early"))
    assert str(info.value) == "TxPayload from the client is not allowed in state CREATING"
    assert info.value.state is StreamState.CREATING and info.value.event == TxPayload(
        4, 0, b"early"
    )
    assert state(c) is StreamState.CREATING  # our mistake does not break the stream


@pytest.mark.parametrize(
    ("before", "frame", "message"),
    [
        (b"", encode(CreateResult(0)), "CreateResult from the proxy is not allowed in state IDLE"),
        (
            encode(CreateResult(0)),
            encode(CreateResult(0)),
            "CreateResult from the proxy is not allowed in state OPEN",
        ),
        (
            b"",
            encode(RxPayload(4, 0, b"x")),
            "RxPayload from the proxy is not allowed in state CREATING",
        ),
        (
            b"",
            encode(ConnState(5)),
            "ConnState from the proxy is not allowed in state CREATING",
        ),
    ],
)
def test_the_peer_out_of_order_is_an_error_naming_state_and_event(
    before: bytes, frame: bytes, message: str
) -> None:
    c = Connection(Role.CLIENT)
    if message.endswith("IDLE"):
        c.receive_data(frame)
    else:
        c.send(StreamType("_lws_smd", 4))
        c.receive_data(before + frame)
    with pytest.raises(RemoteProtocolError, match=message):
        events(c)
    assert state(c) is StreamState.CLOSED
    assert c.next_event() is None  # nothing more after an error


def test_refusal_closes_the_stream() -> None:
    c = Connection(Role.CLIENT)
    c.send(StreamType("_nope", 0))
    c.receive_data(bytes.fromhex("5600050100000000"))
    assert events(c) == [CreateResult(1)]
    assert state(c) is StreamState.CLOSED


def test_a_frame_before_streamtype_at_the_proxy() -> None:
    p = Connection(Role.PROXY)
    p.receive_data(encode(TxPayload(4, 0, b"x")))
    with pytest.raises(RemoteProtocolError, match=r"TxPayload from the client .* state IDLE"):
        p.next_event()


def test_malformed_input_names_the_state() -> None:
    c = Connection(Role.CLIENT)
    c.send(StreamType("_lws_smd", 4))
    c.receive_data(b"\x99\x00\x00")
    with pytest.raises(
        RemoteProtocolError, match="malformed frame from the proxy in state CREATING"
    ):
        c.next_event()
    assert state(c) is StreamState.CLOSED


def test_metadata_is_legal_order_and_bulk_paths_wait_for_open() -> None:
    c = Connection(Role.CLIENT)
    c.send(StreamType("_lws_smd", 4))
    assert c.dispatch(lambda *_: None) == 0  # not OPEN: payloads must come through next_event
    c.receive_data(encode(CreateResult(0)))
    events(c)
    c.send(TxMetadata("k", b"v"))  # the proxy's policy decides about it, not the order
    assert state(c) is StreamState.OPEN


def test_every_event_kind_is_in_the_table() -> None:
    """A reader checks the table against the diagram: no event type is forgotten."""
    kinds = {kind for moves in TRANSITIONS.values() for _, kind in moves}
    senders = {(role, kind) for moves in TRANSITIONS.values() for role, kind in moves}
    for event_type in ProxyBoundEvent.__args__:
        assert event_type in kinds and (Role.CLIENT, event_type) in senders
    for event_type in ClientBoundEvent.__args__:
        assert event_type in kinds and (Role.PROXY, event_type) in senders
    assert TRANSITIONS[StreamState.CLOSED] == {}


def test_a_hang_up_without_a_frame_closes_the_stream() -> None:
    p = Connection(Role.PROXY)
    p.receive_data(STREAMTYPE)
    assert p.next_event() == StreamType("_lws_smd", 0x0E, 0x3A7E)
    p.send(CreateResult(0))
    p.receive_data(encode(TxPayload(4, 0, b"b")))
    p.close()  # the client hung up (or we did): no DESTROYING, nothing more either way
    assert state(p) is StreamState.CLOSED
    assert p.dispatch(lambda *_: None) == 0 and p.next_event() is None
    with pytest.raises(LocalProtocolError, match=r"RxPayload from the proxy .* state CLOSED"):
        p.send(RxPayload(4, 0, b"late"))
