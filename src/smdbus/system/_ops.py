"""Platform operations: the few things only the device's own code knows how to do.

Reboot, set the clock, find a trusted CA certificate, flash firmware, check
for a captive portal its own way. User code calls these through one
:class:`SystemOps` object instead of spreading platform calls around, so it
runs unchanged on another board (lws ``lws_system_ops_t``).

Rules
-----
- Every op is optional. Calling one that the platform did not provide raises
  :class:`MissingOp` naming it (and who needed it), never an AttributeError
  or a crash deep inside.
- ``attach`` is not an op here: Python threads need no platform-specific
  locking, so :class:`~smdbus.system._attach.AttachQueue` does it for everyone.
- A JIT trust query is answered later, possibly from another thread: the
  platform gets a :class:`TrustQuery` and calls :meth:`TrustQuery.answer`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

OTA_PERIODIC_CHECK_SECS = 24 * 3600
"""Default interval between OTA update checks (one day)."""


class MissingOp(LookupError):
    """A platform op was needed but not provided."""

    def __init__(self, op: str, needed_by: str | None = None) -> None:
        self.op, self.needed_by = op, needed_by
        by = f" (needed by {needed_by})" if needed_by else ""
        super().__init__(f"platform op {op!r} is not provided{by}: pass it to SystemOps(...)")


class TrustQuery:
    """A request for the trusted CA certificate whose subject key id is ``skid``.

    The platform answers once with the DER certificate, or None if it has
    none; the answer may come from any thread.
    """

    def __init__(self, skid: bytes) -> None:
        if not skid:
            raise ValueError("a trust query needs a non-empty subject key id")
        self.skid = bytes(skid)
        self._future: concurrent.futures.Future[bytes | None] = concurrent.futures.Future()

    def answer(self, der: bytes | None) -> None:
        """Give the certificate (DER) or None (not trusted / unknown). Once."""
        if self._future.done():
            raise RuntimeError(f"trust query for {self.skid.hex()} was already answered")
        self._future.set_result(bytes(der) if der is not None else None)

    @property
    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> bytes | None:
        """Block until answered (for threads)."""
        return self._future.result(timeout)

    async def wait(self) -> bytes | None:
        """Until answered (for the loop)."""
        return await asyncio.wrap_future(self._future)

    def __repr__(self) -> str:
        status = "answered" if self.done else "pending"
        return f"<TrustQuery skid={self.skid.hex()} {status}>"


class OtaOps:
    """Firmware update hooks (lws ``lws_ota_ops_t``), each optional."""

    def __init__(
        self,
        *,
        start: Callable[[], object] | None = None,
        queue: Callable[[bytes], object] | None = None,
        report_current: Callable[[bool], object] | None = None,
        progress: Callable[[str, int], object] | None = None,
        last_fw_unixtime: Callable[[], int] | None = None,
        periodic_check_secs: int = OTA_PERIODIC_CHECK_SECS,
    ) -> None:
        if periodic_check_secs <= 0:
            raise ValueError(f"periodic_check_secs must be > 0, got {periodic_check_secs}")
        self._start = start
        self._queue = queue
        self._report_current = report_current
        self._progress = progress
        self._last_fw_unixtime = last_fw_unixtime
        self.periodic_check_secs = periodic_check_secs

    def provides(self, op: str) -> bool:
        return getattr(self, f"_{op}", None) is not None

    def start(self) -> object:
        """Prepare to receive a new image (erase the spare slot, ...)."""
        return _need(self._start, "ota.start")()

    def queue(self, chunk: bytes | bytearray | memoryview) -> object:
        """Write the next chunk of the image."""
        return _need(self._queue, "ota.queue")(bytes(chunk))

    def report_current(self, bad: bool) -> object:
        """Tell the platform whether the running firmware is good or bad."""
        return _need(self._report_current, "ota.report_current")(bool(bad))

    def progress(self, status: str, percent: int) -> object:
        """Report update progress (0..100)."""
        if not 0 <= percent <= 100:
            raise ValueError(f"OTA progress must be 0..100 %, got {percent}")
        return _need(self._progress, "ota.progress")(status, percent)

    def last_fw_unixtime(self) -> int:
        """Build time of the running firmware, Unix seconds."""
        return int(_need(self._last_fw_unixtime, "ota.last_fw_unixtime")())

    def __repr__(self) -> str:
        have = [n for n in _OTA_OPS if self.provides(n)]
        return f"<OtaOps {', '.join(have) or 'none'}; check every {self.periodic_check_secs} s>"


_OTA_OPS = ("start", "queue", "report_current", "progress", "last_fw_unixtime")


class SystemOps:
    """The platform's ops, all optional; call them as methods."""

    def __init__(
        self,
        *,
        reboot: Callable[[], object] | None = None,
        set_clock: Callable[[int], object] | None = None,
        jit_trust_query: Callable[[TrustQuery], object] | None = None,
        captive_portal_detect_request: Callable[[], object] | None = None,
        ota: OtaOps | None = None,
        wake_latency_us: int = 0,
    ) -> None:
        if wake_latency_us < 0:
            raise ValueError(f"wake_latency_us must be >= 0, got {wake_latency_us}")
        self._reboot = reboot
        self._set_clock = set_clock
        self._jit_trust_query = jit_trust_query
        self._captive_portal_detect_request = captive_portal_detect_request
        self.ota = ota if ota is not None else OtaOps()
        self.wake_latency_us = wake_latency_us
        """Time this device takes to wake from suspend, µs."""

    def provides(self, op: str) -> bool:
        """Whether ``op`` (e.g. ``"reboot"``, ``"ota.start"``) was given."""
        if op.startswith("ota."):
            return self.ota.provides(op[4:])
        return getattr(self, f"_{op}", None) is not None

    def require(self, op: str, needed_by: str) -> None:
        """Fail early, naming ``needed_by``, if ``op`` is missing (e.g. at daemon start)."""
        if not self.provides(op):
            raise MissingOp(op, needed_by)

    def reboot(self) -> object:
        return _need(self._reboot, "reboot")()

    def set_clock(self, unix_us: int) -> object:
        """Set the system clock to ``unix_us`` (Unix time, microseconds), e.g. from NTP."""
        if isinstance(unix_us, bool) or not isinstance(unix_us, int):
            raise TypeError(f"set_clock takes integer Unix microseconds, got {unix_us!r}")
        if unix_us < 0:
            raise ValueError(f"set_clock: Unix time must be >= 0 µs, got {unix_us}")
        return _need(self._set_clock, "set_clock")(unix_us)

    def jit_trust_query(self, skid: bytes) -> TrustQuery:
        """Ask the platform for the CA cert with subject key id ``skid``; answered later."""
        hook = _need(self._jit_trust_query, "jit_trust_query")
        query = TrustQuery(skid)
        hook(query)
        return query

    def captive_portal_detect_request(self) -> object:
        """Start the platform's own captive portal check (overrides the built-in one)."""
        return _need(self._captive_portal_detect_request, "captive_portal_detect_request")()

    def __repr__(self) -> str:
        names = ("reboot", "set_clock", "jit_trust_query", "captive_portal_detect_request")
        have = [n for n in names if self.provides(n)]
        return (
            f"<SystemOps {', '.join(have) or 'none'}; {self.ota!r}; "
            f"wake latency {self.wake_latency_us} µs>"
        )


_F = TypeVar("_F")


def _need(hook: _F | None, op: str) -> _F:
    if hook is None:
        raise MissingOp(op)
    return hook
