"""The daemon's signals while no event loop can take them: at start and on the way out.

Rules
-----
- SIGHUP's default action is to terminate (exit 129), SIGTERM's too; a
  daemon killed that way mid-start leaves its socket file behind. So the
  first thing ``smd daemon`` does, before it reads its config or imports
  anything slow, is :meth:`PendingSignals.catch`: from then on SIGHUP,
  SIGTERM and SIGINT only *record* themselves. The handler appends to a
  list and does nothing else, so it is safe wherever the main thread is.
- The daemon's loop takes the signals over (``loop.add_signal_handler``
  replaces the recording handler; the signal stays caught throughout) and
  then acts on what was recorded with :meth:`PendingSignals.take`: SIGTERM
  or SIGINT stops before anything is served, SIGHUP re-reads the policy
  before the boot starts. A signal lands in one handler or the other, never
  in neither.
- When the loop lets go (after the proxy is closed and its socket removed),
  :meth:`catch` is called again: a SIGHUP while the process exits is
  recorded and ignored, not turned into exit status 129.
"""

from __future__ import annotations

import signal
from types import FrameType

HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


class PendingSignals:
    """Records :data:`HANDLED` signals until somebody takes them."""

    def __init__(self) -> None:
        self._pending: list[signal.Signals] = []

    def catch(self) -> PendingSignals:
        """Record each handled signal from now on (main thread only, as ``signal.signal``)."""
        for sig in HANDLED:
            signal.signal(sig, self._record)
        return self

    def take(self) -> list[signal.Signals]:
        """What arrived since the last call, in order; forgets it."""
        taken, self._pending = self._pending, []
        return taken

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self._pending.append(signal.Signals(signum))
