"""The SMD message as it travels inside a payload frame: ``class u64 | timestamp u64 | body``.

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
    """One SMD message: a class bit set, a monotonic µs timestamp, and the body."""

    cls: int
    timestamp: int
    body: bytes


def pack_message(cls: int, timestamp: int, body: bytes) -> bytes:
    """The wire form of an SMD message (both integers MSB-first)."""
    return SMD_HEAD.pack(cls, timestamp) + body


def unpack_message(payload: bytes) -> SmdMessage:
    """Split a payload into class, timestamp and body.

    Raises ``ValueError`` when the payload is shorter than the 16-byte header.
    """
    if len(payload) < SMD_HEAD.size:
        raise ValueError(
            f"SMD message of {len(payload)} bytes is shorter than its {SMD_HEAD.size}-byte header"
        )
    cls, timestamp = SMD_HEAD.unpack_from(payload)
    return SmdMessage(cls, timestamp, bytes(payload[SMD_HEAD.size :]))
