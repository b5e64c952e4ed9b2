"""The decoder on bad input, and fuzzing: random bytes, random splits, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdbus.wire import (
    WIRE_MAX_PAYLOAD,
    ClientBoundEvent,
    ConnState,
    CreateResult,
    DecodeError,
    Decoder,
    Destroying,
    Event,
    LinkValidityProbe,
    OnwardConnect,
    PayloadLengthHint,
    Perf,
    Problem,
    ProxyBoundEvent,
    Role,
    RxCreditUpdate,
    RxMetadata,
    RxPayload,
    StreamType,
    TimeoutUpdate,
    TxCreditUpdate,
    TxMetadata,
    TxPayload,
    decode,
    encode,
    encode_all,
    format_address,
    pack_message,
    parse_address,
    tx_payload_frame,
    unpack_message,
)

# -- malformed input: one error event naming the problem, then silence -------

BAD_TO_PROXY: list[tuple[str, bytes, Problem]] = [
    ("unknown type", b"\x42\x00\x00", Problem.UNKNOWN_TYPE),
    ("rx frame sent to proxy", b"\x55\x00\x00", Problem.WRONG_DIRECTION),
    ("destroying with body", b"\xac\x00\x01\x00", Problem.BAD_LENGTH),
    ("timeout of 3 bytes", b"\xb0\x00\x03\x00\x00\x00", Problem.BAD_LENGTH),
    ("txcr of 5 bytes", b"\xaf\x00\x05" + bytes(5), Problem.BAD_LENGTH),
    ("payload shorter than headers", b"\xad\x00\x10" + bytes(16), Problem.SHORT_BODY),
    ("streamtype without name", b"\xaa\x00\x09\x01" + bytes(8), Problem.SHORT_BODY),
    ("body of 384", tx_payload_frame(4, 0, bytes(WIRE_MAX_PAYLOAD + 1)), Problem.PAYLOAD_TOO_LARGE),
    ("streamtype version 2", b"\xaa\x00\x0a\x02" + bytes(8) + b"x", Problem.BAD_VERSION),
    ("streamtype name not utf-8", b"\xaa\x00\x0a\x01" + bytes(8) + b"\xff", Problem.BAD_NAME),
    ("metadata name overruns", b"\xae\x00\x02\x05x", Problem.BAD_LENGTH),
]

BAD_TO_CLIENT: list[tuple[str, bytes, Problem]] = [
    ("tx frame sent to client", b"\xad\x00\x00", Problem.WRONG_DIRECTION),
    ("create result of 1", b"\x56\x00\x01\x00", Problem.SHORT_BODY),
    ("connstate of 9", b"\x57\x00\x09" + bytes(9), Problem.BAD_LENGTH),
    ("perf empty", b"\x5b\x00\x00", Problem.SHORT_BODY),
]


@pytest.mark.parametrize(("name", "data", "problem"), BAD_TO_PROXY, ids=lambda x: x)
def test_malformed_to_proxy(name: str, data: bytes, problem: Problem) -> None:
    good = encode(OnwardConnect())
    events = decode(good + data + good, Role.PROXY)
    assert events[0] == OnwardConnect()
    assert len(events) == 2, "nothing after the error"
    error = events[1]
    assert isinstance(error, DecodeError)
    assert error.problem is problem
    assert error.offset == len(good)
    assert f"at byte {len(good)}" in error.message


@pytest.mark.parametrize(("name", "data", "problem"), BAD_TO_CLIENT, ids=lambda x: x)
def test_malformed_to_client(name: str, data: bytes, problem: Problem) -> None:
    events = decode(data, Role.CLIENT)
    assert len(events) == 1 and isinstance(events[0], DecodeError)
    assert events[0].problem is problem


def test_error_messages_name_the_limit_and_type() -> None:
    [err] = decode(tx_payload_frame(4, 0, bytes(400)), Role.PROXY)
    assert isinstance(err, DecodeError)
    assert "400" in err.message and "383" in err.message and "TX_PAYLOAD" in err.message
    [err] = decode(b"\x42\x00\x00", Role.PROXY)
    assert "0x42" in str(err)


def test_frame_limit_is_checked_on_the_header_alone() -> None:
    """A huge len is refused before its body arrives: nothing is buffered for it."""
    decoder = Decoder(Role.PROXY, max_frame=64)
    events = list(decoder.feed(b"\xae\x10\x00"))
    assert len(events) == 1 and isinstance(events[0], DecodeError)
    assert events[0].problem is Problem.FRAME_TOO_LARGE and "64" in events[0].message
    assert list(decoder.feed(bytes(5000))) == [] and decoder.buffered == 0
    assert decoder.error == events[0]


def test_body_limit_is_a_setting() -> None:
    frame = tx_payload_frame(4, 0, bytes(20))
    assert isinstance(decode(frame, Role.PROXY, max_payload=19)[0], DecodeError)
    assert decode(frame, Role.PROXY, max_payload=20) == [TxPayload(4, 0, bytes(20))]


def test_builders_refuse_values_out_of_range() -> None:
    with pytest.raises(ValueError, match="name"):
        encode(StreamType("", 1))
    with pytest.raises(ValueError, match="cannot encode"):
        encode(TimeoutUpdate(-1))
    # compiled (mypyc), the argument's type check refuses it before the encoder table
    with pytest.raises(TypeError, match=r"not a wire event|tuple object expected"):
        encode("hello")  # type: ignore[arg-type]


# -- the SMD message and addresses --------------------------------------------


def test_smd_message_round_trip() -> None:
    raw = pack_message(4, 0x2DB94938, b"hi")
    assert raw == bytes.fromhex("0000000000000004 000000002db94938") + b"hi"
    assert unpack_message(raw) == (4, 0x2DB94938, b"hi")
    with pytest.raises(ValueError, match="shorter than its 16-byte header"):
        unpack_message(b"short")


@pytest.mark.parametrize(
    ("text", "kernel"),
    [
        ("@proxy.ss.lws", "\0proxy.ss.lws"),
        ("+@proxy.ss.lws", "\0proxy.ss.lws"),
        ("/run/smd.sock", "/run/smd.sock"),
        ("+/run/smd.sock", "/run/smd.sock"),
        ("\0x", "\0x"),
    ],
)
def test_addresses(text: str, kernel: str) -> None:
    assert parse_address(text) == kernel
    assert parse_address(format_address(kernel)) == kernel


@pytest.mark.parametrize("bad", ["", "+", "@", "+@"])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ValueError, match="address"):
        parse_address(bad)


# -- fuzzing ------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
s32 = st.integers(-(2**31), 2**31 - 1)
names = st.text(min_size=1, max_size=20).filter(lambda s: 0 < len(s.encode()) < 200)
bodies = st.binary(max_size=WIRE_MAX_PAYLOAD)

to_proxy: st.SearchStrategy[ProxyBoundEvent] = st.one_of(
    st.builds(StreamType, names, u32, u32, st.just(1)),
    st.just(OnwardConnect()),
    st.just(Destroying()),
    st.builds(TxPayload, u64, u64, bodies, u32, u32, u64),
    st.builds(TxMetadata, names, st.binary(max_size=50)),
    st.builds(TxCreditUpdate, s32),
    st.builds(TimeoutUpdate, u32),
    st.builds(PayloadLengthHint, u32),
    st.builds(LinkValidityProbe, st.binary(max_size=20)),
)
to_client: st.SearchStrategy[ClientBoundEvent] = st.one_of(
    st.builds(RxPayload, u64, u64, bodies, u32, u32, u64),
    st.builds(CreateResult, st.integers(0, 255), u32, st.binary(max_size=30)),
    st.builds(ConnState, u32, u32),
    st.builds(RxCreditUpdate, s32),
    st.builds(RxMetadata, names, st.binary(max_size=50)),
    st.builds(Perf, st.binary(min_size=1, max_size=50)),
)


def _feed_in_pieces(role: Role, data: bytes, cuts: list[int]) -> list[Event]:
    decoder = Decoder(role)
    events: list[Event] = []
    last = 0
    for cut in sorted(set(cuts)):
        events.extend(decoder.feed(data[last:cut]))
        last = cut
    events.extend(decoder.feed(data[last:]))
    return events


@given(st.binary(max_size=600), st.sampled_from(list(Role)))
@settings(max_examples=400)
def test_random_bytes_never_raise(data: bytes, role: Role) -> None:
    events = decode(data, role)
    errors = [i for i, e in enumerate(events) if isinstance(e, DecodeError)]
    assert errors in ([], [len(events) - 1]), "at most one error, and it is the last event"


@given(st.lists(to_proxy, max_size=12), st.lists(st.integers(0, 6000), max_size=20))
@settings(max_examples=200)
def test_random_splits_to_proxy(events: list[ProxyBoundEvent], cuts: list[int]) -> None:
    data = encode_all(events)
    assert decode(data, Role.PROXY) == events
    assert _feed_in_pieces(Role.PROXY, data, [c % (len(data) + 1) for c in cuts]) == events


@given(st.lists(to_client, max_size=12), st.lists(st.integers(0, 6000), max_size=20))
@settings(max_examples=200)
def test_random_splits_to_client(events: list[ClientBoundEvent], cuts: list[int]) -> None:
    data = encode_all(events)
    assert decode(data, Role.CLIENT) == events
    assert _feed_in_pieces(Role.CLIENT, data, [c % (len(data) + 1) for c in cuts]) == events


@given(
    st.lists(to_proxy, max_size=5),
    st.binary(min_size=1, max_size=100),
    st.lists(st.integers(0, 2000), max_size=10),
)
def test_errors_land_at_the_same_byte_however_split(
    events: list[ProxyBoundEvent], garbage: bytes, cuts: list[int]
) -> None:
    data = encode_all(events) + garbage
    whole = decode(data, Role.PROXY)
    assert _feed_in_pieces(Role.PROXY, data, [c % (len(data) + 1) for c in cuts]) == whole
    assert whole[: len(events)] == events


@given(st.lists(to_proxy, min_size=1, max_size=8))
def test_one_byte_at_a_time(events: list[ProxyBoundEvent]) -> None:
    data = encode_all(events)
    assert _feed_in_pieces(Role.PROXY, data, list(range(len(data)))) == events


# -- dispatch: the hot path without events -------------------------------------


def _dispatch_all(role: Role, data: bytes, cuts: list[int]) -> list[Event]:
    """Feed in pieces, draining with dispatch() and next_event() alternately."""
    decoder = Decoder(role)
    payload = TxPayload if role is Role.PROXY else RxPayload
    out: list[Event] = []

    def sink(cls: int, ts: int, body: bytes) -> None:
        out.append(payload(cls, ts, body))

    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        decoder.feed(data[last:cut])
        last = cut
        while True:
            decoder.dispatch(sink)
            event = decoder.next_event()
            if event is None:
                break
            if isinstance(event, TxPayload | RxPayload):
                # dispatch stops only before frames it may not take
                raise AssertionError(f"dispatch left a payload behind: {event!r}")
            out.append(event)
    return out


def _without_ss_header(events: list[Event]) -> list[Event]:
    """dispatch hands over class, timestamp and body; the rest is left at its default."""
    return [type(e)(e.cls, e.timestamp_us, e.payload) if isinstance(e, TxPayload | RxPayload) else e
            for e in events]  # fmt: skip


@given(st.lists(to_proxy, max_size=12), st.lists(st.integers(0, 6000), max_size=20))
@settings(max_examples=200)
def test_dispatch_agrees_with_events_to_proxy(
    events: list[ProxyBoundEvent], cuts: list[int]
) -> None:
    data = encode_all(events)
    got = _dispatch_all(Role.PROXY, data, [c % (len(data) + 1) for c in cuts])
    assert got == _without_ss_header(list(events))


@given(
    st.lists(to_client, max_size=12),
    st.binary(max_size=40),
    st.lists(st.integers(0, 6000), max_size=20),
)
@settings(max_examples=200)
def test_dispatch_agrees_with_events_to_client(
    events: list[ClientBoundEvent], tail: bytes, cuts: list[int]
) -> None:
    data = encode_all(events) + tail  # the tail may be garbage: the same error follows
    got = _dispatch_all(Role.CLIENT, data, [c % (len(data) + 1) for c in cuts])
    assert got == _without_ss_header(decode(data, Role.CLIENT))


def test_dispatch_limit_hold_mask_stop_and_interruption() -> None:
    stream = encode_all([TxPayload(1 << i, i, b"%d" % i) for i in range(6)])
    decoder = Decoder(Role.PROXY)
    decoder.feed(stream)
    got: list[tuple[int, int, bytes]] = []

    def sink(cls: int, ts: int, body: bytes) -> bool:
        got.append((cls, ts, body))
        return cls != 4

    assert decoder.dispatch(sink, limit=1) == 1 and got == [(1, 0, b"0")]
    assert decoder.dispatch(sink, hold_mask=2) == 0, "held before class 2, nothing consumed"
    assert decoder.next_event() == TxPayload(2, 1, b"1")
    assert decoder.dispatch(sink, stop_on_false=True) == 1 and decoder.stopped_by_sink
    assert got[-1] == (4, 2, b"2")

    def refuse(cls: int, ts: int, body: bytes) -> None:
        raise RuntimeError("not now")

    with pytest.raises(RuntimeError):
        decoder.dispatch(refuse)
    assert decoder.interrupted == (8, 3, b"3"), "consumed, and kept for the caller"
    assert decoder.dispatch(sink) == 2 and not decoder.stopped_by_sink
    assert got[-2:] == [(16, 4, b"4"), (32, 5, b"5")]
    assert decoder.buffered == 0 and decoder.next_event() is None


def test_dispatch_leaves_malformed_and_oversize_frames_to_next_event() -> None:
    decoder = Decoder(Role.PROXY, max_payload=10)
    decoder.feed(tx_payload_frame(4, 0, b"ok") + tx_payload_frame(4, 0, bytes(11)))
    seen: list[bytes] = []
    assert decoder.dispatch(lambda c, t, b: seen.append(b)) == 1 and seen == [b"ok"]
    assert decoder.dispatch(lambda c, t, b: seen.append(b)) == 0
    error = decoder.next_event()
    assert isinstance(error, DecodeError) and error.problem is Problem.PAYLOAD_TOO_LARGE


def test_dispatch_payloads_hands_class_and_payload_only() -> None:
    stream = encode_all([TxPayload(4, 99, b"a"), TxPayload(2, 98, b"b"), OnwardConnect()])
    decoder = Decoder(Role.PROXY)
    decoder.feed(stream)
    sent: list[tuple[int, bytes]] = []
    assert decoder.dispatch_payloads(lambda c, b: sent.append((c, b)), hold_mask=2) == 1
    assert sent == [(4, b"a")]
    assert decoder.dispatch_payloads(lambda c, b: sent.append((c, b))) == 1
    assert sent[-1] == (2, b"b") and decoder.dispatched == 1
    assert decoder.dispatch_payloads(lambda c, b: sent.append((c, b))) == 0
    assert decoder.next_event() == OnwardConnect()


def test_collect_builds_tuples_up_to_a_limit_and_stops_before_other_frames() -> None:
    from collections import deque

    from smdbus.wire import SmdMessage

    stream = encode_all([RxPayload(4, i, b"%d" % i) for i in range(3)] + [ConnState(5)])
    decoder = Decoder(Role.CLIENT)
    decoder.feed(stream + encode(RxPayload(8, 9, b"last")))
    inbox: deque[SmdMessage] = deque()
    assert decoder.collect(inbox.append, SmdMessage, limit=2) == 2
    assert decoder.collect(inbox.append, SmdMessage) == 1
    assert list(inbox) == [SmdMessage(4, i, b"%d" % i) for i in range(3)]
    assert decoder.collect(inbox.append, SmdMessage) == 0
    assert decoder.next_event() == ConnState(5)
    assert decoder.collect(inbox.append, SmdMessage) == 1
    assert inbox[-1] == SmdMessage(8, 9, b"last")
