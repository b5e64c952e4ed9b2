"""The proxy's settings, each with the default we ship and why."""

from __future__ import annotations

from dataclasses import dataclass

from smdbus.wire import CONTROL_STREAMTYPE, DEFAULT_ADDRESS, WIRE_MAX_PAYLOAD

__all__ = ["CONTROL_STREAMTYPE", "ProxySettings"]

MAXIMA: dict[str, float] = {
    "max_connections": 65536,
    "first_frame_timeout": 60.0,
    "queue_depth": 4096,
    "high_water": 64 * 1024 * 1024,
    "max_buffer": 64 * 1024 * 1024,
    "stall_grace": 10.0,
    "stall_timeout": 300.0,
    "reserved_connections": 65536,
    "max_connections_per_uid": 65536,
    "max_outbound": 1024 * 1024 * 1024,
}
"""The largest value of each limit: past these a limit no longer limits anything.

4096 queued messages of at most 383 bytes, 64 MiB held for one subscriber, a
minute for a first frame, ten seconds of publishers held back by one reader,
five minutes of a reader that reads nothing, 1 GiB unread by all subscribers
together (docs/proxy.md).
"""
FD_HEADROOM = 64
"""Descriptors kept out of ``max_connections`` for everything else in the process
(the listening socket, the loop, netlink, input devices, CPD probes, a config reload)."""


def connection_limit(max_connections: int, nofile: int) -> int:
    """Connections the proxy can hold with ``nofile`` descriptors (RLIMIT_NOFILE's soft limit).

    A quarter of small limits, at most :data:`FD_HEADROOM`, stays free, so that
    the proxy refuses the connection past the limit (which needs a descriptor for
    a moment) instead of meeting EMFILE, and a SIGHUP can still open its config.
    """
    if nofile < 0:  # RLIM_INFINITY
        return max_connections
    return max(1, min(max_connections, nofile - min(FD_HEADROOM, nofile // 4)))


@dataclass(frozen=True)
class ProxySettings:
    """Everything the proxy can be told. All sizes are bytes, all times seconds."""

    address: str = DEFAULT_ADDRESS
    """Kernel form: ``"\\0name"`` for an abstract socket, else a filesystem path."""
    mode: int = 0o660
    """Permissions of a filesystem socket (connecting needs write permission)."""
    group: str | int | None = None
    """Group owning a filesystem socket (name or gid); None keeps the process's."""

    max_connections: int = 1024
    """Connections beyond this are refused (CREATE_RESULT failure, counted, logged).

    Lowered at start to what RLIMIT_NOFILE leaves (see :func:`connection_limit`)."""
    reserved_connections: int = 32
    """Of ``max_connections``, slots only root and the proxy's own uid may take
    (at most half of them: the others must keep some)."""
    max_connections_per_uid: int = 128
    """Connections one uid other than root and the proxy's own may hold at once, for a
    proxy without an access policy (it becomes the default quota's ``connections``); with a
    policy, the policy's quota is the one per-uid limit and this is not used."""
    max_frame: int = 1024
    """Largest len field accepted in a frame (a TX_PAYLOAD of a 383-byte body is 415)."""
    max_payload: int = WIRE_MAX_PAYLOAD
    """Largest SMD payload (383, as the C proxy): a larger one closes that connection."""
    first_frame_timeout: float = 3.0
    """A connection that has not sent STREAMTYPE by then is closed (C: 3 s)."""

    queue_depth: int = 256
    """Depth of the proxy's own bus queue; a full queue pauses the publisher, never drops."""
    high_water: int = 256 * 1024
    """Outbound bytes buffered for a subscriber above which it holds back publishers."""
    stall_grace: float = 0.05
    """A subscriber over high water that reads nothing this long stops holding publishers."""
    stall_timeout: float = 2.0
    """A subscriber over high water that reads nothing this long is disconnected."""
    max_buffer: int = 4 * 1024 * 1024
    """Outbound bytes for one subscriber past which it is disconnected at once."""
    max_outbound: int = 24 * 1024 * 1024
    """Outbound bytes buffered for all subscribers together; past it the stalled ones
    holding most are disconnected first. Keeps the proxy's memory bounded in total."""
    history: int = 64
    """Closed connections remembered (with their reason) for ``smd peers``."""
    control_rate: float = 10.0
    """Control-stream queries a second per connection (a token bucket; ``smd peers`` sends one)."""
    control_burst: int = 20
    """Control-stream queries a connection may send at once before ``control_rate`` applies."""

    def __post_init__(self) -> None:
        checks = [
            ("max_connections", self.max_connections >= 1),
            ("reserved_connections", self.reserved_connections >= 0),
            ("max_connections_per_uid", self.max_connections_per_uid >= 1),
            ("max_frame", 32 <= self.max_frame <= 0xFFFF),
            ("max_payload", 0 <= self.max_payload <= 0xFFFF - 32),
            ("first_frame_timeout", self.first_frame_timeout > 0),
            ("queue_depth", self.queue_depth >= 1),
            ("high_water", self.high_water >= 1),
            ("stall_grace", self.stall_grace > 0),
            ("stall_timeout", self.stall_timeout >= self.stall_grace),
            ("max_buffer", self.max_buffer >= self.high_water),
            ("max_outbound", self.max_outbound >= self.max_buffer),
            ("history", self.history >= 0),
            ("control_rate", 0 < self.control_rate <= 1000),
            ("control_burst", 1 <= self.control_burst <= 1000),
        ]
        checks += [(name, getattr(self, name) <= top) for name, top in MAXIMA.items()]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"proxy setting {name}={getattr(self, name)!r} is out of range")
