"""Golden frames: the bytes captured between the C proxy and client (shared/spec/wire.md).

Every frame is checked both ways: building the event gives the golden bytes,
and decoding the golden bytes gives the event.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smdbus.wire import (
    MASK_ZERO_QUIRK,
    ConnState,
    ConnStateCode,
    CreateResult,
    DecodeError,
    Decoder,
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
from smdbus.wire.events import ClientBoundEvent, ProxyBoundEvent

BODY = b'{"class":"NETWORK","x":0}'

GOLDEN_TO_PROXY: list[tuple[str, str, ProxyBoundEvent]] = [
    (
        "streamtype",
        "aa 00 11 01 00 00 3a 7e 00 00 00 0e 5f 6c 77 73 5f 73 6d 64",
        StreamType("_lws_smd", 0x0E, 0x3A7E, 1),
    ),
    (
        "tx_payload",
        "ad 00 39 00 00 00 03 2d b9 49 14 00 00 00 00 2d b9 49 14"
        " 00 00 00 00 00 00 00 04  00 00 00 00 00 00 00 00" + BODY.hex(" "),
        TxPayload(4, 0, BODY, 3, 0x2DB94914, 0x2DB94914),
    ),
]

GOLDEN_TO_CLIENT: list[tuple[str, str, ClientBoundEvent]] = [
    (
        "create_result_c",
        "56 00 0c 00 00 00 00 00 2c 28 6e 75 6c 6c 29",
        CreateResult(0, 0, b",(null)"),
    ),
    ("create_result_min", "56 00 05 00 00 00 00 00", CreateResult(0, 0, b"")),
    ("create_result_fail", "56 00 05 01 00 00 00 00", CreateResult(1, 0, b"")),
    ("connstate_creating", "57 00 05 01 00 00 00 00", ConnState(ConnStateCode.CREATING, 0)),
    ("connstate_connecting", "57 00 05 06 00 00 00 00", ConnState(ConnStateCode.CONNECTING, 0)),
    ("connstate_connected", "57 00 05 05 00 00 00 00", ConnState(ConnStateCode.CONNECTED, 0)),
    (
        "rx_payload",
        "55 00 39 00 00 00 03 00 00 00 00 00 00 00 00 2d b9 49 3e"
        " 00 00 00 00 00 00 00 04  00 00 00 00 2d b9 49 38" + BODY.hex(" "),
        RxPayload(4, 0x2DB94938, BODY, 3, 0, 0x2DB9493E),
    ),
]


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.mark.parametrize(("name", "hexline", "event"), GOLDEN_TO_PROXY, ids=lambda x: x)
def test_to_proxy_golden_both_ways(name: str, hexline: str, event: ProxyBoundEvent) -> None:
    golden = _hex(hexline)
    assert encode(event) == golden
    assert decode(golden, Role.PROXY) == [event]


@pytest.mark.parametrize(("name", "hexline", "event"), GOLDEN_TO_CLIENT, ids=lambda x: x)
def test_to_client_golden_both_ways(name: str, hexline: str, event: ClientBoundEvent) -> None:
    golden = _hex(hexline)
    assert encode(event) == golden
    assert decode(golden, Role.CLIENT) == [event]


def test_fast_builders_match_golden() -> None:
    assert stream_type_frame("_lws_smd", 0x0E, 0x3A7E) == _hex(GOLDEN_TO_PROXY[0][1])
    assert tx_payload_frame(4, 0, BODY, 0x2DB94914, 3, 0x2DB94914) == _hex(GOLDEN_TO_PROXY[1][1])
    assert rx_payload_frame(4, 0x2DB94938, BODY, 0x2DB9493E) == _hex(GOLDEN_TO_CLIENT[-1][1])
    assert create_result_frame(0, 0, b",(null)") == _hex(GOLDEN_TO_CLIENT[0][1])
    assert create_result_frame() == _hex("56 00 05 00 00 00 00 00")
    assert conn_state_frame(ConnStateCode.CONNECTING) == _hex("57 00 05 06 00 00 00 00")


def test_proxy_greeting_is_one_coalesced_read() -> None:
    """The C proxy's reply (CREATE_RESULT + three CONNSTATEs) decoded from one buffer."""
    events = [e for _, _, e in GOLDEN_TO_CLIENT if isinstance(e, CreateResult | ConnState)]
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


# -- the spec itself: no hex line in wire.md escapes the tables above ---------

_SPEC = Path("/work/shared/spec/wire.md")
_HEXRUN = re.compile(r"^(?:[0-9a-f]{2}\s+)*[0-9a-f]{2}(?=\s|$)")


def _spec_blocks(text: str) -> list[bytes]:
    """Each indented block of hex lines in the spec, as one byte stream."""
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


@pytest.mark.skipif(not _SPEC.exists(), reason=f"{_SPEC} not present (outside the project tree)")
def test_every_hex_block_of_the_spec_is_covered() -> None:
    known = {_hex(h) for _, h, _ in GOLDEN_TO_PROXY + GOLDEN_TO_CLIENT}
    blocks = _spec_blocks(_SPEC.read_text())
    assert len(blocks) >= 4
    for block in blocks:
        role = Role.PROXY if block[0] >= 0x80 else Role.CLIENT
        events = decode(block, role)
        assert events, block.hex(" ")
        for event in events:
            assert not isinstance(event, DecodeError), event.message
            assert encode(event) in known, f"spec frame {encode(event).hex(' ')} not in the tables"
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
