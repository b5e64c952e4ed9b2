"""Golden frames: the bytes captured between the C proxy and client (tests/data/wire_golden.txt).

Every frame is checked both ways: building the event gives the golden bytes,
and decoding the golden bytes gives the event. docs/wire.md, the protocol as a
client writer in another language reads it, shows these frames; a test checks
that every hex example there is one of them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smdbus.wire import (
    MASK_ZERO_QUIRK,
    ClientBoundEvent,
    ConnState,
    ConnStateCode,
    CreateResult,
    DecodeError,
    Decoder,
    ProxyBoundEvent,
    Role,
    RxPayload,
    StreamType,
    TxPayload,
    conn_state_frame,
    create_result_frame,
    decode,
    encode,
    encode_all,
    rx_payload_frame,
    stream_type_frame,
    tx_payload_frame,
)

BODY = b'{"class":"NETWORK","x":0}'

_DATA = Path(__file__).parent / "data" / "wire_golden.txt"


def _golden() -> dict[str, tuple[str, bytes]]:
    """name -> (direction, bytes), from the test data file."""
    rows: dict[str, tuple[str, bytes]] = {}
    for line in _DATA.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, direction, hexline = line.split(maxsplit=2)
            rows[name] = (direction, _hex(hexline))
    return rows


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


GOLDEN = _golden()

GOLDEN_TO_PROXY: list[tuple[str, ProxyBoundEvent]] = [
    ("streamtype", StreamType("_lws_smd", 0x0E, 0x3A7E, 1)),
    ("tx_payload", TxPayload(4, 0, BODY, 3, 0x2DB94914, 0x2DB94914)),
]

GOLDEN_TO_CLIENT: list[tuple[str, ClientBoundEvent]] = [
    ("create_result_c", CreateResult(0, 0, b",(null)")),
    ("create_result_min", CreateResult(0, 0, b"")),
    ("create_result_fail", CreateResult(1, 0, b"")),
    ("connstate_creating", ConnState(ConnStateCode.CREATING, 0)),
    ("connstate_connecting", ConnState(ConnStateCode.CONNECTING, 0)),
    ("connstate_connected", ConnState(ConnStateCode.CONNECTED, 0)),
    ("rx_payload", RxPayload(4, 0x2DB94938, BODY, 3, 0, 0x2DB9493E)),
]


def test_every_golden_frame_is_checked_in_its_direction() -> None:
    assert {n: d for n, (d, _) in GOLDEN.items()} == {
        **{n: "to-proxy" for n, _ in GOLDEN_TO_PROXY},
        **{n: "to-client" for n, _ in GOLDEN_TO_CLIENT},
    }


@pytest.mark.parametrize(("name", "event"), GOLDEN_TO_PROXY, ids=lambda x: x)
def test_to_proxy_golden_both_ways(name: str, event: ProxyBoundEvent) -> None:
    golden = GOLDEN[name][1]
    assert encode(event) == golden
    assert decode(golden, Role.PROXY) == [event]


@pytest.mark.parametrize(("name", "event"), GOLDEN_TO_CLIENT, ids=lambda x: x)
def test_to_client_golden_both_ways(name: str, event: ClientBoundEvent) -> None:
    golden = GOLDEN[name][1]
    assert encode(event) == golden
    assert decode(golden, Role.CLIENT) == [event]


def test_fast_builders_match_golden() -> None:
    assert stream_type_frame("_lws_smd", 0x0E, 0x3A7E) == GOLDEN["streamtype"][1]
    assert tx_payload_frame(4, 0, BODY, 0x2DB94914, 3, 0x2DB94914) == GOLDEN["tx_payload"][1]
    assert rx_payload_frame(4, 0x2DB94938, BODY, 0x2DB9493E) == GOLDEN["rx_payload"][1]
    assert create_result_frame(0, 0, b",(null)") == GOLDEN["create_result_c"][1]
    assert create_result_frame() == GOLDEN["create_result_min"][1]
    assert conn_state_frame(ConnStateCode.CONNECTING) == GOLDEN["connstate_connecting"][1]


def test_proxy_greeting_is_one_coalesced_read() -> None:
    """The C proxy's reply (CREATE_RESULT + three CONNSTATEs) decoded from one buffer."""
    events = [e for _, e in GOLDEN_TO_CLIENT if isinstance(e, CreateResult | ConnState)]
    greeting = encode_all(events)
    assert decode(greeting, Role.CLIENT) == events
    assert CreateResult(1).ok is False and CreateResult().ok is True


def test_mask_zero_quirk_is_taken_literally() -> None:
    """A C client asking for mask 0 sends 500000000 (0x1DCD6500) in the credit field."""
    frame = _hex("aa 00 11 01 00 00 00 07 1d cd 65 00") + b"_lws_smd"
    assert MASK_ZERO_QUIRK == 0x1DCD6500
    assert decode(frame, Role.PROXY) == [StreamType("_lws_smd", 0x1DCD6500, 7, 1)]


def test_wide_connstate_uses_four_bytes() -> None:
    frame = conn_state_frame(1000, 9)
    assert frame == _hex("57 00 08 00 00 03 e8 00 00 00 09")
    assert decode(frame, Role.CLIENT) == [ConnState(1000, 9)]


# -- the protocol doc: no hex example in docs/wire.md escapes the golden data ---------

_DOC = Path(__file__).resolve().parent.parent / "docs" / "wire.md"
_HEXRUN = re.compile(r"^(?:[0-9a-f]{2}\s+)*[0-9a-f]{2}(?=\s|$)")


def _doc_blocks(text: str) -> list[bytes]:
    """Each indented block of hex lines in the doc, as one byte stream."""
    blocks: list[bytes] = []
    current = b""
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("       ") and (m := _HEXRUN.match(stripped)):
            rest = stripped[m.end() :].strip()
            current += bytes.fromhex(m.group(0).replace(" ", ""))
            if rest.startswith("{"):
                current += rest.encode()
            continue
        if line.startswith("       ") and stripped.startswith("("):
            continue  # a comment line under a frame
        if current:
            blocks.append(current)
            current = b""
    if current:
        blocks.append(current)
    return blocks


def test_every_hex_example_of_the_doc_is_golden() -> None:
    known = {frame for _, frame in GOLDEN.values()}
    blocks = _doc_blocks(_DOC.read_text())
    assert len(blocks) >= 4
    for block in blocks:
        role = Role.PROXY if block[0] >= 0x80 else Role.CLIENT
        events = decode(block, role)
        assert events, block.hex(" ")
        for event in events:
            assert not isinstance(event, DecodeError), event.message
            assert encode(event) in known, f"doc frame {encode(event).hex(' ')} not golden"
        assert encode_all(e for e in events if not isinstance(e, DecodeError)) == block


def test_decoder_keeps_unread_events_buffered() -> None:
    """Stopping early (a full bus) leaves the rest for later, in order."""
    stream = encode_all([TxPayload(1, 0, b"a"), TxPayload(2, 0, b"b"), TxPayload(4, 0, b"c")])
    decoder = Decoder(Role.PROXY)
    first = next(iter(decoder.feed(stream)))
    assert first == TxPayload(1, 0, b"a")
    assert decoder.buffered == len(stream) * 2 // 3
    assert decoder.next_event() == TxPayload(2, 0, b"b")
    assert list(decoder.feed(b"")) == [TxPayload(4, 0, b"c")]
    assert decoder.next_event() is None and decoder.buffered == 0
