"""The proxy's log lines about peers, rate-limited per kind.

Why: every connection that sends garbage, stops reading or is refused earns
a line, and a peer can open connections as fast as the proxy accepts them
(a fuzzer made 419 000 lines in 60 s). The log is a shared resource of the
device like memory, so it is bounded too.

Rules:

- Each *kind* of line ("closing", "joined", "refused", ...) has a token
  bucket: ``burst`` lines at once, then ``rate`` per second. The kinds are
  the proxy's own fixed set, so the buckets do not grow with peers.
- A line over the budget is not written but counted (:attr:`PeerLog.suppressed`,
  shown by ``smd peers`` as ``log_suppressed``); the next line of that kind
  that is written says how many of its kind were left out since.
- A line below the logger's level spends nothing: a burst of ``joined`` lines
  nobody asked to see must not use up the budget of the warnings.
- The text in the arguments is already escaped by the caller
  (:func:`smdbus._escape.printable`); this module only decides whether it goes out.

Pure logic with an injected clock (tests drive time by hand).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

RATE = 1.0
"""Lines per second per kind once the burst is spent."""
BURST = 10
"""Lines of one kind written at once before the rate applies."""


class _Bucket:
    __slots__ = ("last", "suppressed", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.last = now
        self.suppressed = 0


class PeerLog:
    """Writes a line about a peer unless its kind is over its rate."""

    def __init__(
        self,
        logger: logging.Logger,
        clock: Callable[[], float],
        *,
        rate: float = RATE,
        burst: int = BURST,
    ) -> None:
        self.logger = logger
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.suppressed = 0
        """Lines left out so far, all kinds together."""
        self._buckets: dict[str, _Bucket] = {}

    def log(self, level: int, kind: str, msg: str, *args: object) -> bool:
        """Write ``msg % args`` at ``level`` if ``kind`` has a token; True if it was written."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        bucket = self._buckets.get(kind)
        if bucket is None:
            bucket = self._buckets[kind] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.last) * self.rate)
            bucket.last = now
        if bucket.tokens < 1:
            bucket.suppressed += 1
            self.suppressed += 1
            return False
        bucket.tokens -= 1
        if bucket.suppressed:
            msg += " [%d more %r lines were suppressed before this one]"
            args = (*args, bucket.suppressed, kind)
            bucket.suppressed = 0
        self.logger.log(level, msg, *args, stacklevel=3)  # the caller of warning()/info()
        return True

    def warning(self, kind: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, kind, msg, *args)

    def info(self, kind: str, msg: str, *args: object) -> bool:
        return self.log(logging.INFO, kind, msg, *args)
