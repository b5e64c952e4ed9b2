"""The unsent frames of one client: a bounded buffer that survives reconnects.

Rules:

- One buffer serves both purposes: frames waiting for the socket to take them
  while connected, and frames kept during an outage. The bound (messages and
  bytes) is on the sum, so a program learns the same way, with the same
  error, that its messages cannot be taken.
- Only whole frames count as sent. A frame the kernel took part of when the
  connection died never reached the proxy whole, so :meth:`rewind` puts it
  back to be sent again in full on the next connection. A frame the kernel
  took entirely is gone from here: if the proxy died before reading it, it
  is lost (the wire has no acknowledgement), and the docs say so.
- Each frame may carry a *key*: the caller is told when that frame was
  handed over whole, to expect its echo (see :mod:`smdbus.client._echo`).
- Whole frames can be taken one at a time (:meth:`first`) for a peer that
  must get one frame per write (a C proxy, see :mod:`smdbus.client._link`).

Nothing here touches a socket: the owner passes :meth:`data` to ``send`` and
reports how much was taken with :meth:`written`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import TypeAlias

from smdbus.wire import PAYLOAD_CLASS

_unpack_class = PAYLOAD_CLASS.unpack_from

EchoKey: TypeAlias = tuple[int, bytes]
"""``(class, payload)``: what identifies our own message when the proxy echoes it."""
OutboxKey: TypeAlias = tuple[int, bytes, bool]
"""``(class, payload, bridged)``: an echo key, and whether the bridge sent it."""


class Outbox:
    """Frames not yet written to the proxy, bounded by count and bytes.

    Theory of operation: the unsent bytes are one ``bytearray`` starting at
    the first frame not yet written whole; frame boundaries are kept as
    absolute stream offsets (``_ends``, ascending), so a partial write finds
    the frames it completed with one ``bisect`` instead of a step per frame.
    The few frames with an echo key keep theirs in a side queue.
    """

    __slots__ = (
        "_base",
        "_buf",
        "_end",
        "_ends",
        "_head",
        "_keys",
        "_pos",
        "max_bytes",
        "max_messages",
    )

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError(
                f"buffer bounds must be positive, got {max_messages} messages, {max_bytes} bytes"
            )
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._end = 0  # stream offset after the last frame
        self._ends: list[int] = []  # stream offset after each frame; [_head:] are unsent
        self._head = 0
        self._keys: deque[tuple[int, OutboxKey]] = deque()  # (end offset, key)
        self._pos = 0  # bytes of the first frames already written

    def room_for(self, size: int) -> bool:
        """Whether one more frame of ``size`` bytes fits the bounds."""
        return (
            len(self._ends) - self._head < self.max_messages
            and len(self._buf) + size <= self.max_bytes
        )

    def offer(self, frame: bytes, key: OutboxKey | None = None) -> int:
        """Append a whole frame if it fits the bounds: the bytes now held, or -1 if it did not.

        The send hot path: one call instead of :meth:`room_for`, :meth:`put`, :attr:`nbytes`.
        """
        buf = self._buf
        ends = self._ends
        if len(ends) - self._head >= self.max_messages or len(buf) + len(frame) > self.max_bytes:
            return -1
        buf += frame
        self._end = end = self._end + len(frame)
        ends.append(end)
        if key is not None:
            self._keys.append((end, key))
        return len(buf)

    def put(self, frame: bytes, key: OutboxKey | None = None) -> None:
        """Append a whole frame; the caller checked :meth:`room_for`."""
        self._buf += frame
        self._end += len(frame)
        self._ends.append(self._end)
        if key is not None:
            self._keys.append((self._end, key))

    @property
    def count(self) -> int:
        """Frames not yet written whole."""
        return len(self._ends) - self._head

    @property
    def nbytes(self) -> int:
        """Bytes those frames take (a partly written frame counts whole)."""
        return len(self._buf)

    def data(self) -> bytearray | memoryview:
        """The bytes still to write, for one ``send`` call (do not keep it)."""
        if self._pos == 0:
            return self._buf
        return memoryview(self._buf)[self._pos :]

    def first(self) -> bytes | bytearray | memoryview:
        """The rest of the first frame not yet written whole, for a one-frame write."""
        end = self._ends[self._head] - self._base
        if self._pos == 0 and end == len(self._buf):
            return self._buf
        return memoryview(self._buf)[self._pos : end]

    def classes(self) -> int:
        """The union of the classes of the frames held (a scan: for a reconnect, not per send)."""
        union = 0
        buf = self._buf
        base = self._base
        start = 0
        for end in self._ends[self._head :]:
            union |= _unpack_class(buf, start)[0]
            start = end - base
        return union

    def count_keys(self, *, bridged: bool) -> int:
        """Frames not yet written whole that carry a key with this ``bridged`` flag."""
        return sum(1 for _, key in self._keys if key[2] is bridged)

    def written(self, n: int) -> list[OutboxKey]:
        """Record that ``n`` bytes of :meth:`data` were taken; the keys of frames now whole."""
        if n <= 0:
            return []
        pos = self._pos + n
        keys = self._keys
        if pos >= len(self._buf):  # everything went: the common case
            done_keys = [k for _, k in keys] if keys else []
            keys.clear()
            self._buf.clear()
            self._ends.clear()
            self._head = 0
            self._base = self._end
            self._pos = 0
            return done_keys
        ends = self._ends
        head = self._head
        reached = self._base + pos
        k = bisect_right(ends, reached, head)
        done_keys = []
        if k > head:
            done = ends[k - 1]
            while keys and keys[0][0] <= done:
                done_keys.append(keys.popleft()[1])
            del self._buf[: done - self._base]
            self._base = done
            if k > 1024 and k * 2 > len(ends):  # drop the written offsets now and then
                del ends[:k]
                k = 0
            self._head = k
        self._pos = reached - self._base
        return done_keys

    def rewind(self) -> None:
        """The connection died: a partly written frame will be sent whole again."""
        self._pos = 0

    def clear(self) -> int:
        """Drop everything (closing); returns how many frames were dropped."""
        dropped = self.count
        self._buf.clear()
        self._ends.clear()
        self._keys.clear()
        self._head = 0
        self._base = self._end
        self._pos = 0
        return dropped
