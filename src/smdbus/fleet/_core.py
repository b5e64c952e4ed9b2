"""The bridge's decisions, sans I/O: what goes up where, what may come down.

Rules
-----
- Up: a bus message goes up when its class is in ``up`` and it is not a
  downlinked command coming back (:mod:`._loops`). It becomes an
  :class:`Uplink` (topic, QoS, retain); the outbox gives it its sequence
  number. State classes (``retain``) go up retained.
- A state *query* (``{"query":"state"}`` on SYSTEM_STATE, the bridge's own
  on each link or anyone's) is a question, not a state: it does not go up
  (counted in ``queries``), so it never replaces the retained state. The
  daemon's answer (``{"current":...}``) is a state and goes up.
- Down: a broker message is taken only on ``<prefix>/<device>/cmd/<CLASS>``
  for a class on the allow-list (``down``), within that class's token
  bucket, no larger than the bus allows, and not carrying our own origin
  (an envelope with ``origin`` = this device, or the MQTT 5 user property):
  anything else is a :class:`Refused` with the reason, counted per reason.
- This module knows no socket, thread, broker or database; it takes calls
  and an injected clock and returns values. The adapter (:mod:`._bridge`)
  does the I/O.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from smdbus.classes import Class
from smdbus.fleet._config import BridgeConfig
from smdbus.fleet._loops import DownlinkMemory
from smdbus.fleet._ratelimit import TokenBucket
from smdbus.fleet._topics import Topics, origin_of
from smdbus.system import is_query
from smdbus.wire import WIRE_MAX_PAYLOAD

ORIGIN_PROPERTY = "smd-origin"
"""The MQTT 5 user property naming the device a message came from."""


@dataclass(frozen=True)
class Uplink:
    cls: int
    topic: str
    qos: int
    retain: bool


@dataclass(frozen=True)
class Downlink:
    cls: int
    body: bytes


@dataclass(frozen=True)
class Refused:
    reason: str
    """``topic``, ``class``, ``rate``, ``size`` or ``own``."""
    detail: str


class BridgeCore:
    """Mapping, allow-list, rate limits and loop prevention for one device."""

    def __init__(self, cfg: BridgeConfig, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.topics = Topics(cfg.prefix, cfg.device_id)
        self._up = cfg.up
        self._retain_all = 0
        self._retain_types: dict[int, tuple[str, ...]] = {}
        for cls, kind in cfg.retain:
            if kind is None:
                self._retain_all |= cls
            else:
                self._retain_types[cls] = (*self._retain_types.get(cls, ()), kind)
        self._buckets = {cls: TokenBucket(r.rate, r.burst, clock) for cls, r in cfg.down.items()}
        bound = max(64, int(sum(r.burst + r.rate * cfg.echo_ttl for r in cfg.down.values())))
        self.memory = DownlinkMemory(cfg.echo_ttl, bound, clock)
        self._cache: dict[int, Uplink] = {}
        self.refused: Counter[str] = Counter()
        self.downlinked = 0
        self.queries = 0

    # -- up -----------------------------------------------------------------

    def uplink(self, cls: int, body: bytes) -> Uplink | None:
        """Where a bus message goes up, or None (not an up class, or our own command)."""
        bits = cls & self._up
        if not bits:
            return None
        if self.memory.is_ours(cls, body):
            return None
        bit = bits & -bits
        if bit == Class.SYSTEM_STATE and is_query(body):
            self.queries += 1
            return None
        if bit in self._retain_types:
            kind = self._state_type(body)
            if kind in self._retain_types[bit]:
                return Uplink(bit, self.topics.up(bit, kind), self.cfg.qos_for(bit), True)
        up = self._cache.get(bit)
        if up is None:
            retain = bool(bit & self._retain_all)
            up = self._cache[bit] = Uplink(bit, self.topics.up(bit), self.cfg.qos_for(bit), retain)
        return up

    @staticmethod
    def _state_type(body: bytes) -> str | None:
        if b'"type"' not in body:
            return None
        try:
            obj = json.loads(body)
        except ValueError:
            return None
        kind = obj.get("type") if isinstance(obj, dict) else None
        return kind if isinstance(kind, str) else None

    # -- down ---------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return [self.topics.commands] if self.cfg.down else []

    def downlink(self, topic: str, payload: bytes, origin: str | None = None) -> Downlink | Refused:
        """Decide on one broker message; a Downlink is remembered so it never goes back up."""
        cls = self.topics.down_class(topic)
        if cls is None:
            return self._refuse("topic", f"not a command topic of this device: {topic!r}")
        bucket = self._buckets.get(cls)
        if bucket is None:
            return self._refuse("class", f"{topic!r}: class not on the downlink allow-list")
        if len(payload) > WIRE_MAX_PAYLOAD:
            return self._refuse("size", f"{topic!r}: {len(payload)} bytes, over {WIRE_MAX_PAYLOAD}")
        if origin == self.cfg.device_id or origin_of(payload) == self.cfg.device_id:
            return self._refuse("own", f"{topic!r}: this device's own message came back")
        if not bucket.take():
            return self._refuse("rate", f"{topic!r}: over {bucket.rate:g}/s (burst {bucket.burst})")
        self.memory.remember(cls, payload)
        self.downlinked += 1
        return Downlink(cls, payload)

    def _refuse(self, reason: str, detail: str) -> Refused:
        self.refused[reason] += 1
        return Refused(reason, detail)
