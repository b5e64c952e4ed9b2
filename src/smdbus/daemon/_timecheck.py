"""TIME_VALID: is the clock sane, and if not, ask an NTP server and set it.

libwebsockets holds the move to TIME_VALID while its clock reads earlier
than a fixed instant (2020-07-06 06:42:34 UTC, the ``valid_after`` default)
and starts its NTP client. We do the same: the time gate
(:class:`smdbus.daemon._gates.TimeGate`, with the other boot gates) refuses the
move while :meth:`WallClock.valid` is False, asks the server named by the
NTP_SERVER blob over SNTP (:func:`sntp_query`, here), hands the answer to the
``set_clock`` platform op, and resumes the boot once the clock is valid.
A failed query is retried every ``retry_interval`` seconds for as long as
the clock stays invalid: a device that cannot trust its clock cannot check
certificates, so it does not step on (as C).

The wall clock is injected (:class:`WallClock`), so the daemon can keep a
corrected time of its own where it may not set the system's (no
CAP_SYS_TIME), and tests can start from any "now".
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from smdbus.daemon._sntp import (
    NotOurAnswer,
    SntpAnswer,
    build_request,
    parse_response,
)

log = logging.getLogger("smdbus.daemon.time")


class WallClock:
    """Unix time as the daemon sees it: the system clock plus an offset it may keep.

    ``mode`` "system" sets the kernel's clock (CAP_SYS_TIME); if that is not
    permitted it falls back to "process" (an offset kept here) with a logged
    reason. ``now`` is injectable for tests.
    """

    def __init__(
        self,
        valid_after: int,
        *,
        mode: str = "system",
        now: Callable[[], float] = time.time,
        settime: Callable[[float], None] | None = None,
    ) -> None:
        if mode not in ("system", "process"):
            raise ValueError(f"set_clock mode must be 'system' or 'process', got {mode!r}")
        self.valid_after = valid_after
        self.mode = mode
        self._now = now
        self._settime = settime or (lambda t: time.clock_settime(time.CLOCK_REALTIME, t))
        self.offset = 0.0
        """Seconds added to the system clock (mode "process")."""
        self.fallback_reason: str | None = None

    def now(self) -> float:
        return self._now() + self.offset

    def valid(self) -> bool:
        """The lws test: the clock reads at or after ``valid_after``."""
        return self.now() >= self.valid_after

    def set_clock(self, unix_us: int) -> None:
        """The ``set_clock`` platform op: Unix microseconds from an NTP client."""
        target = unix_us / 1e6
        if self.mode == "system":
            try:
                self._settime(target)
                self.offset = 0.0
                return
            except (PermissionError, OSError) as e:
                self.fallback_reason = (
                    f"cannot set the system clock ({e}); keeping the time in the daemon"
                )
                log.warning("set_clock: %s", self.fallback_reason)
                self.mode = "process"
        self.offset = target - self._now()


async def sntp_query(
    host: str,
    port: int = 123,
    *,
    timeout: float = 2.0,
    now: Callable[[], float] = time.time,
) -> SntpAnswer:
    """One SNTP exchange with ``host``; raises OSError/TimeoutError/SntpError on failure.

    ``now`` stamps T1 and T4 (the clock that will be corrected).
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"no address for NTP server {host!r}")
    family, _, _, _, sockaddr = infos[0]
    addr = (str(sockaddr[0]), int(sockaddr[1]))
    inbox: asyncio.Queue[tuple[bytes, float] | Exception] = asyncio.Queue()

    class _Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            inbox.put_nowait((data, now()))

        def error_received(self, exc: Exception) -> None:
            inbox.put_nowait(exc)

    transport, _ = await loop.create_datagram_endpoint(_Proto, family=family, remote_addr=addr)
    try:
        request = build_request(now())
        transport.sendto(request)
        stray: NotOurAnswer | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    item = await inbox.get()
                    if isinstance(item, Exception):
                        raise item
                    data, received = item
                    try:
                        return parse_response(data, request, received)
                    except NotOurAnswer as e:
                        stray = e  # a late answer to an earlier request: keep waiting
        except TimeoutError:
            why = f" (only {stray})" if stray else ""
            raise TimeoutError(
                f"no SNTP answer from {host}:{port} within {timeout:g} s{why}"
            ) from None
    finally:
        transport.close()


def iso_time(unix: float) -> str:
    """Unix time as an ISO-like UTC string for notes (what a bad clock reads is shown too)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))
    except (OverflowError, OSError, ValueError):
        return f"{unix:.0f} (Unix)"
