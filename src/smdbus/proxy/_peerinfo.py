"""One connection's record as ``smd peers`` shows it: made by the proxy, sent by its control stream.

A module of its own, below the proxy and its control stream, so that the one
that answers ``peers`` queries (``_control``) need not import the proxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PeerInfo:
    """One connection as ``smd peers`` shows it (open, or recently closed)."""

    id: int
    state: str
    streamtype: str
    pid: int | None
    uid: int | None
    gid: int | None
    groups: tuple[int, ...]
    comm: str
    client_pid: int
    mask: int
    mask_names: str
    asked: int
    connected_at: float
    published: int
    delivered: int
    queued: int
    buffered: int
    dropped: int
    refused: int
    held: str | None
    congested: bool
    stalled: bool
    reason: str | None
    closed_at: float | None
    label: str | None = None
    """What the client said of itself (``describe`` on the control stream), as sent."""

    def to_json(self) -> dict[str, Any]:
        # the fields in order (``asdict`` deep-copies each: 40 of a record's ~55 µs)
        return dict(self.__dict__)
