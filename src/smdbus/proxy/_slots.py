"""Connection slots: whether the proxy has room for one more connection, and why not.

Every connection holds a descriptor and some memory, and any local user who
can reach the socket can open them. Without a share kept back, users'
idle connections lock out the system's own tools (``smd peers``, ``smd
state``). The rules, checked at accept, before any byte is read:

- ``limit`` connections in all (``max_connections``, lowered to what
  RLIMIT_NOFILE allows: :func:`smdbus.proxy._settings.connection_limit`).
- The last ``reserved`` of them are for the *privileged* uids only: root
  and the proxy's own uid (the daemon's user, whose tools and services
  must always get in). The proxy's own uid is one notion, ``Proxy.daemon_uid``
  (this process's uid unless the proxy is told): the same the policy's ledger
  gives the daemon's limits to, so the two never disagree about who it is.

What one uid may hold is not counted here: that is the policy's connection
quota (:meth:`smdbus.policy.Ledger.connect`, through
:meth:`smdbus.proxy._access.Access.admit`), the proxy's one count of
connections per uid. A standalone proxy, which has no policy file, makes
``max_connections_per_uid`` the default quota's ``connections``.

Pure bookkeeping: the proxy asks :meth:`Slots.take` on accept and calls
:meth:`Slots.give_back` when the connection is gone.
"""

from __future__ import annotations

from collections.abc import Iterable


class Slots:
    """Open connections, against the total and the reserved share."""

    def __init__(self, limit: int, reserved: int, privileged: Iterable[int]) -> None:
        self.limit = limit
        self.reserved = reserved
        self.privileged = frozenset(privileged)
        self.open = 0

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
        return None

    def take(self, uid: int | None) -> tuple[str, str] | None:
        """Take a slot for ``uid``; or, refused, (counter, reason) and nothing taken."""
        refused = self.refusal(uid)
        if refused is None:
            self.open += 1
        return refused

    def give_back(self) -> None:
        """A connection that took a slot has closed (or was refused after all)."""
        if self.open > 0:
            self.open -= 1
