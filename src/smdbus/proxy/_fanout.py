"""Fan-out: the connections that share a mask share one bus participant and one frame list.

Why: with one participant per connection, every message cost a callback,
an RX frame and a list append per subscriber, and every flush a join per
subscriber. Connections with the same mask always receive the same messages
in the same order, so they can share all of that: the group is the bus
participant, builds each RX_PAYLOAD frame once (or takes it from the
proxy's one-message cache when several groups match), appends it to one
list, and at flush joins the list once and hands the same bytes to every
member. Per connection there is one write per flush, nothing per message.

The semantics stay lws_smd's per connection: a group registers on the bus
with its mask, so a message reaches every connection whose mask matches,
its sender included, in the bus's queue order; a connection joining later
gets what is still queued in the bus (as a new participant does), never
frames delivered before it joined (the group is flushed first).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, Protocol

from smdbus.wire import FLAGS_WHOLE, PAYLOAD_HEAD, PAYLOAD_OVERHEAD, FrameType, rx_payload_frame

if TYPE_CHECKING:
    from smdbus.bus import Participant

_pack_head: Final = PAYLOAD_HEAD.pack
_monotonic_ns: Final = time.monotonic_ns
# the wire's values as plain ints: Group.on_message packs them per message
_RX_PAYLOAD: Final = int(FrameType.RX_PAYLOAD)
_WHOLE: Final = int(FLAGS_WHOLE)


def rx_frame(cls: int, timestamp_us: int, payload: bytes, time_us: int | None = None) -> bytes:
    """RX_PAYLOAD of one message; its time field is the proxy's clock (now by default), as C."""
    if time_us is None:
        time_us = _monotonic_ns() // 1000
    return rx_payload_frame(cls, timestamp_us, payload, time_us)


class Member(Protocol):
    """What a group needs of a member (a proxy's Connection): take the pass's bytes."""

    def deliver(self, data: bytes, n: int) -> None: ...


class Host(Protocol):
    """What a group needs of its proxy. A protocol, not an import of the Proxy: the
    proxy and its connections build on this module, so it names only what it calls."""

    @property
    def shared_frames(self) -> bool: ...

    @property
    def pass_us(self) -> int: ...

    def mark_dirty(self, group: Group) -> None: ...

    def rx_frame(self, cls: int, timestamp_us: int, payload: bytes) -> bytes: ...


class Group:
    """The open ``_lws_smd`` connections of one mask."""

    __slots__ = ("dirty", "frames", "mask", "members", "participant", "proxy")

    def __init__(self, proxy: Host, mask: int) -> None:
        self.proxy = proxy
        self.mask = mask
        self.members: dict[Member, None] = {}  # an ordered set
        self.frames: list[bytes] = []  # delivered by the bus, not yet written
        self.dirty = False
        self.participant: Participant | None = None

    def __repr__(self) -> str:
        return f"<Group mask={self.mask:#x} members={len(self.members)}>"

    def on_message(self, cls: int, timestamp_us: int, payload: bytes) -> None:
        """Bus callback: one frame for every member, written at the end of the read or pass.

        The frame's time field ("when the proxy wrote it") is read once per
        read, or pass (:attr:`Proxy.pass_us`): the frames of a read go out together.
        """
        proxy = self.proxy
        if not self.dirty:
            self.dirty = True
            proxy.mark_dirty(self)
        if proxy.shared_frames:
            frame = proxy.rx_frame(cls, timestamp_us, payload)
        else:  # rx_payload_frame inlined (a call less per message)
            frame = (
                _pack_head(
                    _RX_PAYLOAD,
                    PAYLOAD_OVERHEAD + len(payload),
                    _WHOLE,
                    0,
                    proxy.pass_us,
                    cls,
                    timestamp_us,
                )
                + payload
            )
        self.frames.append(frame)

    def flush(self) -> None:
        """Write what was collected: one join, then the same bytes to each member."""
        self.dirty = False
        frames = self.frames
        if not frames:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        n = len(frames)
        frames.clear()
        for conn in tuple(self.members):  # a write may end a connection: it leaves meanwhile
            conn.deliver(data, n)
