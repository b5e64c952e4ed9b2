"""Blobs: slots, direct and heap content, the cap, partial reads, single buffers, secrets."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smdbus.system import (
    AUTH_TOKEN,
    MAX_HEAP_BLOB,
    SLOT_COUNT,
    Blob,
    BlobError,
    Blobs,
    BlobTooLarge,
    BlobType,
)


def test_types_and_slot_counts_follow_lws_numbering() -> None:
    blobs = Blobs()
    assert len(BlobType) == 10 and len(blobs) == SLOT_COUNT == 11
    assert BlobType.AUTH.slots == 2
    assert all(t.slots == 1 for t in BlobType if t is not BlobType.AUTH)
    assert BlobType.CLIENT_CERT_DER.value == 2 and BlobType.MQTT_PASSWORD.value == 10
    assert blobs.get(BlobType.AUTH, 1) is not blobs.get(BlobType.AUTH, 0)
    assert blobs["device_serial"] is blobs.get(BlobType.DEVICE_SERIAL)


def test_slot_out_of_range_is_an_error_naming_type_and_slot() -> None:
    blobs = Blobs()
    with pytest.raises(BlobError, match=r"AUTH has 2 slot\(s\) \(0..1\): slot 2 does not exist"):
        blobs.get(BlobType.AUTH, 2)  # C would hand out CLIENT_CERT_DER here
    with pytest.raises(BlobError, match="DEVICE_TYPE has 1 slot"):
        blobs.get(BlobType.DEVICE_TYPE, 1)
    with pytest.raises(BlobError, match="slot -1"):
        blobs.get(BlobType.DEVICE_TYPE, -1)
    with pytest.raises(BlobError, match="unknown blob type 'password' \\(known: AUTH, "):
        blobs.get("password")
    with pytest.raises(BlobError, match="AUTH slot 1"):
        blobs.get(1)
    with pytest.raises(BlobError, match="numbered 11"):
        blobs.get(11)


def test_ntp_server_defaults_to_pool_ntp_org() -> None:
    blobs = Blobs()
    ntp = blobs.get(BlobType.NTP_SERVER)
    assert ntp.get() == b"pool.ntp.org" and ntp.is_direct
    assert blobs.ntp_server() == "pool.ntp.org"
    ntp.set(b"time.example.net")
    assert blobs.ntp_server() == "time.example.net"
    ntp.heap_empty()
    assert ntp.size == 0 and blobs.ntp_server() == "pool.ntp.org"


def test_direct_refers_to_the_callers_buffer_without_copying() -> None:
    buf = bytearray(b"serial-0001")
    blob = Blob(BlobType.DEVICE_SERIAL)
    blob.direct_set(buf)
    buf[-1:] = b"2"
    assert blob.get() == b"serial-0002"
    view = blob.get_single_ptr()
    assert view.readonly and view.obj is buf
    with pytest.raises(BlobError, match="DEVICE_SERIAL is direct"):
        blob.heap_append(b"x")
    blob.heap_empty()  # only lets go of the reference (C frees it here by mistake)
    assert blob.size == 0 and buf == bytearray(b"serial-0002")
    blob.heap_append(b"now heap")
    assert not blob.is_direct and blob.get() == b"now heap"


def test_heap_chunks_partial_reads_and_offsets() -> None:
    blob = Blob(BlobType.DEVICE_FW_VERSION)
    for part in (b"abc", b"", b"defg", b"hi"):
        blob.heap_append(part)
    assert blob.chunks == 3 and blob.get_size() == 9
    assert blob.get() == b"abcdefghi"
    assert blob.get(4, 2) == b"cdef"
    assert blob.get(100, 5) == b"fghi"
    assert blob.get(0, 3) == b""
    assert blob.get(offset=9) == b"" and blob.get(5, 50) == b""  # past the end: nothing
    out = bytearray(4)
    assert blob.get_into(out, 7) == 2 and out == bytearray(b"hi\0\0")
    with pytest.raises(ValueError, match="offset must be >= 0"):
        blob.get(1, -1)
    with pytest.raises(ValueError, match="length must be >= 0"):
        blob.get(-1)


def test_direct_reads_past_the_end_give_nothing_too() -> None:
    blob = Blob(BlobType.DEVICE_TYPE)
    blob.direct_set(b"sensor")
    assert blob.get(3, 4) == b"or"
    assert blob.get(offset=6) == b"" and blob.get(offset=600) == b""


def test_single_ptr_needs_exactly_one_chunk() -> None:
    blob = Blob(BlobType.CLIENT_CERT_DER)
    with pytest.raises(BlobError, match="CLIENT_CERT_DER has 0 heap chunks"):
        blob.get_single_ptr()
    blob.heap_append(b"\x30\x82")
    assert bytes(blob.get_single_ptr()) == b"\x30\x82"
    blob.heap_append(b"\x01")
    with pytest.raises(BlobError, match="has 2 heap chunks: no single buffer"):
        blob.get_single_ptr()


def test_heap_cap_is_2_mib() -> None:
    blob = Blob(BlobType.CLIENT_CERT_DER)
    blob.heap_append(bytes(MAX_HEAP_BLOB - 1))
    blob.heap_append(b"\0")
    assert blob.size == 2 * 1024 * 1024
    with pytest.raises(BlobTooLarge, match="appending 1 bytes to 2097152 would pass the 2097152"):
        blob.heap_append(b"\0")
    assert blob.size == MAX_HEAP_BLOB


@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(0, 400), st.integers(0, 400))
def test_heap_read_matches_slicing_the_whole(parts: list[bytes], length: int, offset: int) -> None:
    blob = Blob(BlobType.MQTT_CLIENT_ID)
    for p in parts:
        blob.heap_append(p)
    whole = b"".join(parts)
    assert blob.get(length, offset) == whole[offset : offset + length]


def test_secrets_never_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    token = b"eyJhbGciOi-SECRET-registration"
    auth = b"SECRET-auth-token-7f3a"
    key = b"SECRET-private-key-der"
    password = b"SECRET-mqtt-pw"
    with caplog.at_level(logging.DEBUG, logger="smdbus.system.blobs"):
        blobs = Blobs()
        blobs.get(BlobType.AUTH, 0).set(token)
        blobs.get(BlobType.AUTH, AUTH_TOKEN).heap_append(auth)
        blobs.get(BlobType.CLIENT_KEY_DER).direct_set(key)
        blobs.get(BlobType.MQTT_PASSWORD).set(password)
        blobs.get(BlobType.MQTT_USERNAME).set(b"device-42")
        shown = repr(blobs) + str(blobs.get(BlobType.AUTH, 1)) + repr(list(blobs))
        logging.getLogger("test").debug("blobs now %r", blobs)
    assert caplog.records  # the blob code did log (sizes), so the check below means something
    for secret in (token, auth, key, password, b"SECRET"):
        assert secret.decode() not in shown
        assert secret.decode() not in caplog.text
    assert "AUTH[1] heap x1 22 bytes, secret" in shown
    assert "'device-42'" in shown  # non-secrets are previewed


def test_cert_is_public_but_never_previewed() -> None:
    blob = Blob(BlobType.CLIENT_CERT_DER)
    blob.set(b"PRINTABLE-LOOKING-CERT")
    assert not blob.secret
    assert "PRINTABLE" not in repr(blob) and "22 bytes" in repr(blob)
