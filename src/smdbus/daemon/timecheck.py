"""TIME_VALID: is the clock sane, and if not, ask an NTP server and set it.

libwebsockets holds the move to TIME_VALID while its clock reads earlier
than a fixed instant (2020-07-06 06:42:34 UTC, the ``valid_after`` default)
and starts its NTP client. We do the same: :class:`TimeGate` refuses the
move while :meth:`WallClock.valid` is False, asks the server named by the
NTP_SERVER blob over SNTP (:func:`sntp_query`), hands the answer to the
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
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from smdbus.daemon.sntp import (
    NotOurAnswer,
    SntpAnswer,
    SntpError,
    build_request,
    parse_response,
)

log = logging.getLogger("smdbus.daemon.time")

TIME_VALID = 8  # smdbus.system.State.TIME_VALID


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


class TimeGate:
    """The notifier holding TIME_VALID until the clock is valid.

    ``server`` is called each attempt so a changed NTP_SERVER blob is used at
    the next try. ``on_note`` receives short human-readable progress lines.
    """

    name = "time"

    def __init__(
        self,
        clock: WallClock,
        set_clock: Callable[[int], object],
        server: Callable[[], str],
        *,
        port: int = 123,
        timeout: float = 2.0,
        retry_interval: float = 5.0,
        on_note: Callable[[str, str], None] | None = None,
        query: Callable[..., Any] = sntp_query,
    ) -> None:
        self.clock = clock
        self._set_clock = set_clock
        self._server = server
        self.port = port
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._note = on_note or (lambda level, text: None)
        self._query = query
        self._task: asyncio.Task[None] | None = None
        self._manager: Any = None
        self._link: Any = None
        self.attempts = 0
        self.last_answer: SntpAnswer | None = None
        self.last_error: str | None = None

    def __call__(self, manager: Any, link: Any, current: int, target: int) -> int:
        if target != TIME_VALID or current == target or self.clock.valid():
            return 0
        self._manager, self._link = manager, link
        if self._task is None or self._task.done():
            self._note(
                "info",
                f"clock reads {_iso(self.clock.now())}, before {_iso(self.clock.valid_after)}: "
                f"asking {self._server()} over SNTP",
            )
            self._task = asyncio.get_running_loop().create_task(self._sync(), name="sntp")
        return 1

    async def _sync(self) -> None:
        while not self.clock.valid():
            server = self._server()
            self.attempts += 1
            try:
                answer = await self._query(
                    server, self.port, timeout=self.timeout, now=self.clock.now
                )
            except (OSError, TimeoutError, SntpError) as e:
                self.last_error = f"{server}:{self.port}: {e}"
                self._note(
                    "warning",
                    f"SNTP attempt {self.attempts} failed: {self.last_error}; "
                    f"retry in {self.retry_interval:g} s",
                )
                await asyncio.sleep(self.retry_interval)
                continue
            self.last_answer = answer
            corrected = answer.corrected + (self.clock.now() - answer.received)
            self._set_clock(int(corrected * 1e6))
            self._note(
                "info",
                f"clock set from {server} (stratum {answer.stratum}, "
                f"offset {answer.offset:+.3f} s, delay {answer.delay * 1000:.1f} ms): "
                f"now {_iso(self.clock.now())}",
            )
            if not self.clock.valid():
                self.last_error = (
                    f"{server} says {_iso(answer.corrected)}, still before "
                    f"{_iso(self.clock.valid_after)}"
                )
                self._note("warning", f"{self.last_error}; retry in {self.retry_interval:g} s")
                await asyncio.sleep(self.retry_interval)
        self._resume()

    def _resume(self) -> None:
        manager, link = self._manager, self._link
        if manager is None or manager.held_by is not link:
            return
        self._manager = self._link = None
        try:
            manager.resume()
        except Exception:
            log.exception("resuming the boot after setting the clock failed")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _iso(unix: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))
    except (OverflowError, OSError, ValueError):
        return f"{unix:.0f} (Unix)"
