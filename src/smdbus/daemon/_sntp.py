"""SNTP (RFC 4330) packets, sans I/O: build a request, check and read the answer.

Rules
-----
- Bytes in, values out; no sockets and no clocks here. The caller gives the
  local time it sent at (T1) and received at (T4) as Unix seconds.
- An answer is believed only if it is a server answer (mode 4) to *our*
  request: its originate timestamp must equal the transmit timestamp we
  sent (RFC 4330 section 5), so a stray or spoofed datagram is refused.
- A kiss-o'-death (stratum 0), an unsynchronized server (leap indicator 3)
  or a zero transmit time is refused with :class:`SntpError` saying which.

Timestamps are 64-bit NTP fixed point: seconds since 1900 and a binary
fraction. The seconds wrap in 2036; as RFC 4330 suggests, a seconds field
with the top bit clear is read as the era after the wrap.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

NTP_UNIX_DELTA = 2_208_988_800
"""Seconds from 1900-01-01 (NTP's epoch) to 1970-01-01 (Unix)."""

PACKET_SIZE = 48
VERSION = 4
MODE_CLIENT = 3
MODE_SERVER = 4
LEAP_ALARM = 3

_PACKET = struct.Struct("!BBbbII4sQQQQ")


class SntpError(ValueError):
    """An answer that must not set the clock; the message says why."""


class NotOurAnswer(SntpError):
    """A well-formed answer to some other request (a late or stray datagram)."""


def to_ntp(unix: float) -> int:
    """Unix seconds as a 64-bit NTP timestamp (era-folded into 64 bits)."""
    seconds = unix + NTP_UNIX_DELTA
    whole = int(seconds // 1)
    frac = int((seconds - whole) * (1 << 32)) & 0xFFFFFFFF
    return ((whole & 0xFFFFFFFF) << 32) | frac


def from_ntp(stamp: int) -> float:
    """A 64-bit NTP timestamp as Unix seconds (top bit clear: after the 2036 wrap)."""
    whole, frac = stamp >> 32, stamp & 0xFFFFFFFF
    if not whole & 0x80000000:
        whole += 1 << 32
    return whole - NTP_UNIX_DELTA + frac / (1 << 32)


def build_request(transmit_unix: float) -> bytes:
    """A 48-byte client request stamped with ``transmit_unix`` (T1)."""
    first = (0 << 6) | (VERSION << 3) | MODE_CLIENT
    return _PACKET.pack(first, 0, 0, 0, 0, 0, b"\0" * 4, 0, 0, 0, to_ntp(transmit_unix))


@dataclass(frozen=True)
class SntpAnswer:
    """What a server said, and what it means for our clock."""

    leap: int
    version: int
    stratum: int
    reference_id: str
    originate: float
    receive: float
    """T2: when the server received the request (server clock)."""
    transmit: float
    """T3: when the server sent the answer (server clock)."""
    sent: float
    """T1: when we sent (our clock)."""
    received: float
    """T4: when we received (our clock)."""

    @property
    def offset(self) -> float:
        """Seconds to add to our clock: ((T2 - T1) + (T3 - T4)) / 2."""
        return ((self.receive - self.sent) + (self.transmit - self.received)) / 2

    @property
    def delay(self) -> float:
        """Round trip minus the server's own time: (T4 - T1) - (T3 - T2)."""
        return (self.received - self.sent) - (self.transmit - self.receive)

    @property
    def corrected(self) -> float:
        """The time (Unix seconds) at the moment we received the answer."""
        return self.received + self.offset


def parse_response(data: bytes, request: bytes, received_unix: float) -> SntpAnswer:
    """Check an answer against the request we sent and read it."""
    if len(data) < PACKET_SIZE:
        raise SntpError(f"answer is {len(data)} bytes, an SNTP packet is {PACKET_SIZE}")
    if len(request) < PACKET_SIZE:
        raise ValueError(f"request is {len(request)} bytes, expected {PACKET_SIZE}")
    first, stratum, _poll, _prec, _delay, _disp, ref, _ref_ts, orig, recv, xmit = (
        _PACKET.unpack_from(data)
    )
    leap, version, mode = first >> 6, (first >> 3) & 7, first & 7
    sent_stamp = _PACKET.unpack_from(request)[10]
    if mode != MODE_SERVER:
        raise SntpError(f"answer has mode {mode}, a server answers with mode {MODE_SERVER}")
    if version not in (3, 4):
        raise SntpError(f"answer has NTP version {version}, expected 3 or 4")
    ref_text = _reference_id(ref, stratum)
    if stratum == 0:
        raise SntpError(f"kiss-o'-death from the server ({ref_text}): try later or elsewhere")
    if stratum > 15:
        raise SntpError(f"answer has stratum {stratum}: the server is not synchronized")
    if leap == LEAP_ALARM:
        raise SntpError("the server says its clock is not synchronized (leap indicator 3)")
    if orig != sent_stamp:
        raise NotOurAnswer("answer is not for our request (originate timestamp differs)")
    if xmit == 0:
        raise SntpError("answer has no transmit timestamp")
    return SntpAnswer(
        leap=leap,
        version=version,
        stratum=stratum,
        reference_id=ref_text,
        originate=from_ntp(orig),
        receive=from_ntp(recv) if recv else from_ntp(xmit),
        transmit=from_ntp(xmit),
        sent=from_ntp(sent_stamp),
        received=received_unix,
    )


def build_response(
    request: bytes, *, receive_unix: float, transmit_unix: float, stratum: int = 1
) -> bytes:
    """A server answer to ``request`` (for test responders and demos)."""
    if len(request) < PACKET_SIZE:
        raise ValueError(f"request is {len(request)} bytes, expected {PACKET_SIZE}")
    first = request[0]
    version = (first >> 3) & 7 or VERSION
    reply_first = (0 << 6) | (version << 3) | MODE_SERVER
    transmit_of_request = _PACKET.unpack_from(request)[10]
    return _PACKET.pack(
        reply_first,
        stratum,
        4,
        -20,
        0,
        0,
        b"LOCL",
        to_ntp(receive_unix),
        transmit_of_request,
        to_ntp(receive_unix),
        to_ntp(transmit_unix),
    )


def _reference_id(ref: bytes, stratum: int) -> str:
    if stratum <= 1:
        return ref.rstrip(b"\0").decode("ascii", "replace") or "?"
    return ".".join(str(b) for b in ref)
