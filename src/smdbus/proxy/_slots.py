"""Connection slots: who may open one more connection, and why not.

Every connection holds a descriptor and some memory, and any local user who
can reach the socket can open them. Without a rule per user, one user's
idle connections lock out everybody, the system's own tools included
(``smd peers``, ``smd state``). The rules, checked at accept, before any
byte is read:

- ``limit`` connections in all (``max_connections``, lowered to what
  RLIMIT_NOFILE allows: :func:`smdbus.proxy._settings.connection_limit`).
- The last ``reserved`` of them are for the *privileged* uids only: root
  and the proxy's own uid (the daemon's user, whose tools and services
  must always get in).
- Every other uid holds at most ``per_uid`` at once. A connection whose uid
  is unknown (no SO_PEERCRED) counts as one more such uid.

Pure bookkeeping: the proxy asks :meth:`Slots.take` on accept and calls
:meth:`Slots.give_back` when the connection is gone.
"""

from __future__ import annotations

from collections.abc import Iterable


class Slots:
    """Open connections per uid, against the limits."""

    def __init__(self, limit: int, reserved: int, per_uid: int, privileged: Iterable[int]) -> None:
        self.limit = limit
        self.reserved = reserved
        self.per_uid = per_uid
        self.privileged = frozenset(privileged)
        self.open = 0
        self._by_uid: dict[int | None, int] = {}

    def refusal(self, uid: int | None) -> tuple[str, str] | None:
        """Why a connection from ``uid`` may not open now: (counter, reason), or None."""
        if self.open >= self.limit:
            return "refused_max_connections", f"{self.limit} connections open (max_connections)"
        if uid in self.privileged:
            return None
        shared = self.limit - self.reserved
        if self.open >= shared:
            return (
                "refused_max_connections",
                f"{self.open} of {self.limit} connections open, the other {self.limit - self.open} "
                "reserved for root and the proxy's uid (reserved_connections)",
            )
        held = self._by_uid.get(uid, 0)
        if held >= self.per_uid:
            return (
                "refused_per_uid",
                f"uid {uid} holds {held} connections (max_connections_per_uid {self.per_uid})",
            )
        return None

    def take(self, uid: int | None) -> tuple[str, str] | None:
        """Take a slot for ``uid``; or, refused, (counter, reason) and nothing taken."""
        refused = self.refusal(uid)
        if refused is None:
            self.open += 1
            self._by_uid[uid] = self._by_uid.get(uid, 0) + 1
        return refused

    def give_back(self, uid: int | None) -> None:
        """A connection of ``uid`` has closed."""
        held = self._by_uid.get(uid, 0)
        if held <= 0:
            return
        self.open -= 1
        if held == 1:
            del self._by_uid[uid]
        else:
            self._by_uid[uid] = held - 1

    def held(self, uid: int | None) -> int:
        return self._by_uid.get(uid, 0)
