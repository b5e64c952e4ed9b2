"""The SMD message as it travels inside a payload frame: ``class u64 | timestamp_us u64 | payload``.

Kept apart from the frame code because other transports (a log, a test
fixture) carry the same 16-byte header without the Secure Streams framing.
"""

from __future__ import annotations

from smdbus.wire._frames import SMD_HEAD

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (smdbus._namedtuple)
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from smdbus._namedtuple import NamedTuple


class SmdMessage(NamedTuple):
    """One SMD message: a class bit set, a monotonic µs timestamp, and the payload."""

    cls: int
    timestamp_us: int
    payload: bytes


def pack_message(cls: int, timestamp_us: int, payload: bytes) -> bytes:
    """The wire form of an SMD message (both integers MSB-first)."""
    return SMD_HEAD.pack(cls, timestamp_us) + payload


def unpack_message(data: bytes) -> SmdMessage:
    """Split a frame's data into class, timestamp and payload.

    Raises ``ValueError`` when the data is shorter than the 16-byte header.
    """
    if len(data) < SMD_HEAD.size:
        raise ValueError(
            f"SMD message of {len(data)} bytes is shorter than its {SMD_HEAD.size}-byte header"
        )
    cls, timestamp_us = SMD_HEAD.unpack_from(data)
    return SmdMessage(cls, timestamp_us, bytes(data[SMD_HEAD.size :]))
