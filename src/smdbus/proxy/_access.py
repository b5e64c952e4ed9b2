"""The proxy's side of the policy (:mod:`smdbus.policy`): who each peer is and what it may do.

Rules:

- Every connection's identity is read from the kernel when it is accepted
  (:func:`smdbus.policy.read_identity`), before any byte of it is read. Its
  send and receive masks are computed then, and again on a reload; nothing
  is computed per message.
- A message with a class bit its sender may not send reaches nobody. The
  connection's *denied* mask is the decoder's hold mask as well, so the hot
  path stops at such a message without a test of its own; the slow path then
  refuses it: counted per peer and per class (``smd peers``, stats
  ``refused_policy``), logged with pid, uid, comm and class (rate-limited
  per kind by the proxy's peer log, what is left out counted in
  ``log_suppressed``). The
  connection stays open and its next messages are read: a C client cannot
  be told, and one refused class must not cost it the others.
- Our client learns what it may not send on the control stream it already
  watches (the interest reply carries ``"denied"``), so ``send()`` raises
  :class:`~smdbus.client._errors.SendRefused` instead of sending in vain.
- A receiver gets the classes it asked for *and* may receive: its effective
  mask is ``asked & allowed``. ``smd peers`` shows the effective mask.
- Quotas are per uid (:class:`smdbus.policy.Ledger`): a connection over the
  uid's connection quota is refused at accept; a publisher over its rate is
  *held* (it stops being read, as for a full queue) until its bucket has a
  token again, never dropped; a control query over the uid's query rate is
  answered with an error.
- What waits to be written to a uid's connections is summed per uid (the
  transports' buffers, as seen at each write); the connection whose write
  takes it past the uid's ``outbound`` quota is disconnected
  (``quota_disconnects``), as ``max_buffer`` does for one connection.
- A reload (:meth:`Access.set_policy`) drops no connection: masks and
  limits are recomputed, and a receiver whose effective mask changed moves
  to its new fan-out group.

Classes above bit 31 are outside the policy's alphabet (lws_smd's classes
are 32 bits): the policy neither grants nor refuses them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from smdbus._escape import printable
from smdbus.classes import format_mask
from smdbus.policy import (
    AccessPolicy,
    Identity,
    Ledger,
    Limits,
    Quotas,
    default_rules,
)
from smdbus.proxy._connection import NAME_SHOWN
from smdbus.proxy._owner import Owner

if TYPE_CHECKING:
    from smdbus.proxy._connection import Connection
    from smdbus.proxy._interest import InterestWatch
    from smdbus.proxy._logs import PeerLog


POLICY_BITS = 0xFFFFFFFF
"""The class bits the policy speaks of."""


class Host(Owner, Protocol):
    """What access control uses of its proxy (a protocol: the proxy imports this module)."""

    @property
    def logs(self) -> PeerLog: ...
    @property
    def interest(self) -> InterestWatch: ...

    def open_connections(self) -> list[Connection]: ...


class Access:
    """Identity, masks, refusals and quotas for one proxy's connections."""

    def __init__(
        self,
        proxy: Host,
        policy: AccessPolicy | None,
        daemon_uid: int,
        per_uid: int = Limits.connections,
    ) -> None:
        self.proxy = proxy
        self.daemon_uid = daemon_uid
        if policy is None:
            # No policy given (a standalone proxy): ``max_connections_per_uid`` (``per_uid``)
            # is the default quota's connection count, the proxy's one per-uid limit.
            limits = replace(Limits(), connections=per_uid)
            policy = AccessPolicy(default_rules({0, daemon_uid}), Quotas(default=limits))
        self.policy = policy
        self.ledger = Ledger(self.policy.quotas, daemon_uid)
        self.by_class: Counter[str] = Counter()
        """Refused messages per class name, all peers."""
        self.by_peer: dict[int, Counter[int]] = {}
        """Refused messages per connection id, per class bit (open connections)."""
        self._dropping: set[Connection] = set()  # over the outbound quota, closing this pass

    # -- connect, disconnect ---------------------------------------------------------

    def admit(self, who: Identity) -> str | None:
        """A new connection of ``who``: counted for its uid, or why its uid may not have one more.

        The proxy's one count of connections per uid (the slots count only the total).
        Checked at accept, after the proxy's slots (:mod:`smdbus.proxy._slots`), which
        the caller gives back when this refuses.
        """
        return self.ledger.connect(who.uid, self.proxy.clock())

    def gone(self, conn: Connection) -> None:
        self.ledger.disconnect(conn.who.uid)
        self.by_peer.pop(conn.id, None)

    def refused(self, conn: Connection) -> int:
        counts = self.by_peer.get(conn.id)
        return sum(counts.values()) if counts else 0

    def apply(self, conn: Connection) -> int:
        """Set ``conn.denied``; returns the receive mask it may have (policy bits only)."""
        masks = self.policy.rules.masks(conn.who)
        conn.denied = ~masks.send & POLICY_BITS
        return masks.receive | ~POLICY_BITS

    def effective(self, conn: Connection, asked: int) -> int:
        """The classes ``conn`` receives when it asks for ``asked``."""
        return asked & self.apply(conn)

    # -- messages ----------------------------------------------------------------------

    def refuse(self, conn: Connection, cls: int) -> None:
        """A message of ``cls`` from ``conn`` has a class it may not send: it goes nowhere."""
        proxy = self.proxy
        proxy.count("refused_policy")
        bits = cls & conn.denied
        counts = self.by_peer.get(conn.id)
        if counts is None:
            counts = self.by_peer[conn.id] = Counter()
        rest = bits
        while rest:  # per class bit: at most 32 keys, whatever combinations a peer sends
            bit = rest & -rest
            rest ^= bit
            counts[bit] += 1
            self.by_class[format_mask(bit)] += 1
        first = bits & -bits
        self.warn(
            "refused",
            conn,
            f"{format_mask(bits)} message dropped: the policy lets "
            f"{self.policy.rules.describe_senders(first)} send {format_mask(first)} "
            f"({counts[first]} refused from this connection)",
        )

    def publish_allowance(self, conn: Connection, room: int) -> int:
        """Of ``room`` messages, how many ``conn``'s uid may publish now (its publish quota)."""
        usage = self.ledger.usage(conn.who.uid)
        if usage is None:
            return room
        return min(room, usage.publish.available(self.proxy.clock()))

    def published(self, conn: Connection, n: int) -> None:
        usage = self.ledger.usage(conn.who.uid)
        if usage is not None:
            usage.publish.spend(n)

    def quota_wait(self, conn: Connection) -> float:
        """``conn``'s uid is out of publish tokens: count the trip, log it, say how long to wait."""
        proxy = self.proxy
        usage = self.ledger.usage(conn.who.uid)
        if usage is None:  # pragma: no cover - a connection's uid always has a record
            return 0.0
        self.ledger.trips[(conn.who.uid, "publish_rate")] += 1
        lim = usage.limits
        self.warn(
            "publish quota",
            conn,
            f"held: over its uid's {lim.publish_rate:g} messages a second "
            f"(bursts of {lim.publish_burst})",
        )
        return max(usage.publish.wait(proxy.clock()), 0.001)

    def queued(self, conn: Connection, delta: int) -> str | None:
        """The bytes waiting for ``conn`` changed by ``delta``: its uid's total follows.

        Called by the proxy where it keeps the total of all connections
        (``Proxy.outbound_changed``, and when a connection is gone); returns
        why the uid is now over its ``outbound`` quota (counted), or None.
        """
        why = self.ledger.queue(conn.who.uid, delta)
        if why is not None and conn not in self._dropping and self.proxy.loop is not None:
            # not now: a group may be writing to its members; at the end of the pass
            self._dropping.add(conn)
            self.proxy.count("quota_disconnects")
            self.warn("outbound quota", conn, f"disconnected: {why}")
            self.proxy.loop.call_soon(self._drop, conn, why)
        return why

    def _drop(self, conn: Connection, why: str) -> None:
        self._dropping.discard(conn)
        conn.abort(f"outbound quota: {why}")

    def query(self, conn: Connection) -> str | None:
        """A control query: None if its uid may ask now, else why not."""
        return self.ledger.query(conn.who.uid, self.proxy.clock())

    # -- logging -----------------------------------------------------------------------

    def warn(self, what: str, conn: Connection, text: str) -> None:
        """One line naming the peer (pid, uid, comm: escaped at read), rate-limited per kind
        by the proxy's peer log (:mod:`smdbus.proxy._logs`)."""
        self.proxy.logs.warning(
            what,
            "%s: %s #%d (%s): %s",
            what,
            conn.who.label(),
            conn.id,
            printable(conn.streamtype, limit=NAME_SHOWN) or "no stream yet",
            text,
        )

    # -- reload ------------------------------------------------------------------------

    def set_policy(self, policy: AccessPolicy) -> None:
        """A new policy: every open connection's masks and limits follow, none is dropped."""
        proxy = self.proxy
        self.policy = policy
        self.ledger.reconfigure(policy.quotas, proxy.clock())
        for conn in proxy.open_connections():
            conn.reapply()
        proxy.interest.retell()
