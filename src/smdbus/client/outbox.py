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
- Each frame may carry an *echo key*: the caller is told when that frame
  was handed over whole (see :mod:`smdbus.client.echo`).

Nothing here touches a socket: the owner passes :meth:`data` to ``send`` and
reports how much was taken with :meth:`written`.
"""

from __future__ import annotations

from collections import deque
from typing import TypeAlias

EchoKey: TypeAlias = tuple[int, bytes]
"""``(class, body)``: what identifies our own message when the proxy echoes it."""


class Outbox:
    """Frames not yet written to the proxy, bounded by count and bytes."""

    __slots__ = ("_buf", "_frames", "_keyed", "_pos", "max_bytes", "max_messages")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError(
                f"buffer bounds must be positive, got {max_messages} messages, {max_bytes} bytes"
            )
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._frames: deque[tuple[int, EchoKey | None]] = deque()
        self._pos = 0  # bytes of the first frames already written
        self._keyed = 0  # frames with an echo key

    def room_for(self, size: int) -> bool:
        """Whether one more frame of ``size`` bytes fits the bounds."""
        return len(self._frames) < self.max_messages and len(self._buf) + size <= self.max_bytes

    def offer(self, frame: bytes, key: EchoKey | None = None) -> bool:
        """Append a whole frame if it fits the bounds (the send hot path: one call)."""
        frames = self._frames
        buf = self._buf
        if len(frames) >= self.max_messages or len(buf) + len(frame) > self.max_bytes:
            return False
        buf += frame
        frames.append((len(frame), key))
        if key is not None:
            self._keyed += 1
        return True

    def put(self, frame: bytes, key: EchoKey | None = None) -> None:
        """Append a whole frame; the caller checked :meth:`room_for`."""
        self._buf += frame
        self._frames.append((len(frame), key))
        if key is not None:
            self._keyed += 1

    @property
    def count(self) -> int:
        """Frames not yet written whole."""
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        """Bytes those frames take (a partly written frame counts whole)."""
        return len(self._buf)

    def data(self) -> bytearray | memoryview:
        """The bytes still to write, for one ``send`` call (do not keep it)."""
        if self._pos == 0:
            return self._buf
        return memoryview(self._buf)[self._pos :]

    def written(self, n: int) -> list[EchoKey]:
        """Record that ``n`` bytes of :meth:`data` were taken; the keys of frames now whole."""
        if n <= 0:
            return []
        pos = self._pos + n
        frames = self._frames
        if pos >= len(self._buf):  # everything went: the common case
            keys = [k for _, k in frames if k is not None] if self._keyed else []
            frames.clear()
            self._buf.clear()
            self._pos = 0
            self._keyed = 0
            return keys
        keys = []
        done = 0
        while frames and done + frames[0][0] <= pos:
            length, key = frames.popleft()
            done += length
            if key is not None:
                keys.append(key)
                self._keyed -= 1
        if done:
            del self._buf[:done]
        self._pos = pos - done
        return keys

    def rewind(self) -> None:
        """The connection died: a partly written frame will be sent whole again."""
        self._pos = 0

    def clear(self) -> int:
        """Drop everything (closing); returns how many frames were dropped."""
        dropped = len(self._frames)
        self._frames.clear()
        self._buf.clear()
        self._pos = 0
        self._keyed = 0
        return dropped
