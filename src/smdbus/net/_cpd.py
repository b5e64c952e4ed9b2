"""Captive portal detection: one HTTP probe, read the answer, tell the bus.

Rules of this module:

- What a response *means* is decided by :func:`classify` and
  :func:`classify_failure`, pure functions of the policy settings and what
  came back. The result mapping (libwebsockets' CPD):

  ===========================================================  ============
  status equals ``http_expect`` (or any 2xx when none is set)  OK
  301/302/303/307/308 with a Location, ``http_fail_redirect``  Captive
  timeout, connection refused or reset, DNS failure            No internet
  any other status (a portal answering 200 instead of 204,     No internet
  a redirect with no Location, a 5xx)
  ===========================================================  ============

- Redirects are never followed. The timeout is real and covers the whole
  probe (connect, request, response head); it defaults to 3 s.
- The probe is one HTTP/1.1 request on its own connection (h11, the sans-IO
  HTTP/1.1 state machine, over asyncio streams): only the response head is
  read, at most :data:`MAX_HEAD` bytes of it; the body of a portal page is
  never read. A policy asking for ``h2`` is probed over HTTP/1.1 too: the
  answer's status and Location are what CPD reads, and they are the same.
  TLS (``https``) is checked against the system's trust store (or the
  ``tls_context`` given), done by :mod:`smdbus.net._transport` over memory
  BIOs, not by asyncio; ``ssl`` is imported only for such a probe.
  Proxies from the environment are not used.
- Failures that may pass (timeout, connection, DNS, a connection dropped
  before the answer) are retried along the policy's retry table: ``1 +
  conceal`` tries, waiting ``backoff[i]`` ms (+ up to ``jitterpc`` %)
  between them. A server that *answered* is believed at once.
- One check at a time. While a check runs the state is UNKNOWN; its result
  becomes the state, is published on NETWORK as
  ``{"type":"cpd","result":"OK"|"Captive"|"No internet"}`` and is handed to
  result listeners (the state-manager gate).
- Triggers: :meth:`CaptivePortalDetector.trigger` (a call: the state
  machine, ``smd cpd``), and, once attached to a bus, a NETWORK message
  with ``"trigger":"cpdcheck"`` (any ``src``; the route monitor sends
  ``"src":"gw-change"``) or with ``"type":"ipacq"`` (an interface acquired
  an address). A call while a check runs joins it (counted in ``coalesced``).
- Bus triggers are rate-limited, because any local user can send them and
  each check is an HTTP request (one user made 3 001 in 10 s). A check
  started by the bus begins at least ``min_interval`` seconds after the
  previous check began. A bus trigger is never dropped: one that comes while
  a check runs, or sooner than that, makes the detector *owe* one check
  (counted in ``deferred``), which starts as soon as both allow; every
  further trigger until then joins the owed check (counted in
  ``coalesced``). So a gateway change in the middle of a check is still
  followed by a check on the new route, and a flood costs one probe per
  ``min_interval``. The log says so once per owed check, not per trigger.
- The ``src`` of a trigger is a peer's text: it is shown only if it is a
  short plain token, else escaped and cut.

The sleeper, clock and jitter source are injected so tests never wait for
backoff delays or the minimum interval to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import h11

if TYPE_CHECKING:
    import ssl

from smdbus._announce import Announcer, Publisher
from smdbus.classes import Class
from smdbus.net._loggers import CPD_LOGGER, CPD_RESULT_LOGGER
from smdbus.net._policy import CaptivePortalDetect, Policy, PolicyError, RetryPolicy
from smdbus.net._transport import ConnectFailed, Stream, connect

log = logging.getLogger(CPD_LOGGER)
result_log = logging.getLogger(CPD_RESULT_LOGGER)


class BusLike(Publisher, Protocol):
    """The part of :class:`smdbus.Bus` the detector sends and listens with."""

    def register(
        self, mask: int, callback: Callable[[int, int, bytes], None], name: str | None = None
    ) -> Any: ...

    def unregister(self, participant: Any) -> None: ...


DEFAULT_TIMEOUT = 3.0
"""Seconds for one probe (C meant 3 s and wrote 3 ms-as-seconds: 50 minutes)."""
DEFAULT_MIN_INTERVAL = 2.0
"""Seconds from the start of one check to the start of one a bus trigger asks for (C: none)."""

REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "smdbus-cpd/0.1"
MAX_HEAD = 16384
"""Bytes of response head read at most (a longer head is a protocol error)."""


class CpdResult(enum.Enum):
    """A check's verdict; the value is the text published on the bus."""

    OK = "OK"
    CAPTIVE = "Captive"
    NO_INTERNET = "No internet"


class CpdState(enum.Enum):
    """What the device believes now (lws ``lws_cpd_result_t``)."""

    UNKNOWN = "Unknown"
    OK = "OK"
    CAPTIVE = "Captive"
    NO_INTERNET = "No internet"

    @classmethod
    def of(cls, result: CpdResult) -> CpdState:
        return cls(result.value)


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe: the verdict, why, and whether trying again could change it."""

    result: CpdResult
    reason: str
    status: int | None = None
    location: str | None = None
    retryable: bool = False
    elapsed: float = 0.0


@dataclass(frozen=True)
class CheckReport:
    """A whole check: every probe made, the last one deciding."""

    url: str
    probes: tuple[ProbeOutcome, ...]
    trigger: str

    @property
    def result(self) -> CpdResult:
        return self.probes[-1].result

    @property
    def attempts(self) -> int:
        return len(self.probes)


# -- the mapping (pure) --------------------------------------------------------------


def classify(settings: CaptivePortalDetect, status: int, location: str | None) -> ProbeOutcome:
    """What a received status line (and Location header) means."""
    expect = settings.http_expect
    if expect is not None and status == expect:
        return ProbeOutcome(CpdResult.OK, f"{status} as expected", status, location)
    if expect is None and 200 <= status < 300:
        return ProbeOutcome(CpdResult.OK, f"{status} (2xx)", status, location)
    if status in REDIRECTS:
        if not location:
            return ProbeOutcome(
                CpdResult.NO_INTERNET, f"{status} redirect without Location", status, None
            )
        if settings.http_fail_redirect:
            return ProbeOutcome(
                CpdResult.CAPTIVE, f"{status} redirect to {location}", status, location
            )
    wanted = str(expect) if expect is not None else "2xx"
    return ProbeOutcome(
        CpdResult.NO_INTERNET, f"{status} where {wanted} was expected", status, location
    )


def classify_failure(kind: str, detail: str) -> ProbeOutcome:
    """A probe that got no answer: always No internet, worth retrying."""
    return ProbeOutcome(CpdResult.NO_INTERNET, f"{kind}: {detail}", retryable=True)


def _failure(exc: BaseException, timeout: float) -> ProbeOutcome:
    if isinstance(exc, TimeoutError):
        return classify_failure("timeout", f"no answer within {timeout:g} s")
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return classify_failure("dns", str(cause))
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, ConnectFailed):
        return classify_failure("connect", str(exc))
    if isinstance(exc, h11.RemoteProtocolError):
        return classify_failure("protocol", str(exc))
    return classify_failure(type(exc).__name__, str(exc) or "no response")


_TRIGGER = re.compile(rb'"trigger"\s*:\s*"cpdcheck"')
_IPACQ = re.compile(rb'"type"\s*:\s*"ipacq"')
_PLAIN_SRC = re.compile(r"[\w.:@/-]{1,32}", re.ASCII)


def _shown_src(src: str) -> str:
    """A peer's ``src`` for the log: a short plain token as is, anything else escaped and cut."""
    return src if _PLAIN_SRC.fullmatch(src) else ascii(src[:32])


def trigger_reason(payload: bytes) -> str | None:
    """Why a NETWORK message asks for a check (``cpdcheck:gw-change``, ``ipacq``), or None."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        obj = None
    if isinstance(obj, dict):
        if obj.get("trigger") == "cpdcheck":
            src = obj.get("src")
            return f"cpdcheck:{_shown_src(src)}" if isinstance(src, str) else "cpdcheck"
        if obj.get("type") == "ipacq":
            return "ipacq"
        return None
    # Not strict JSON (a printf-made message): look for the fields as text.
    if _TRIGGER.search(payload):
        return "cpdcheck"
    if _IPACQ.search(payload):
        return "ipacq"
    return None


Sleeper = Callable[[float], Awaitable[None]]
ResultListener = Callable[[CpdResult, "CaptivePortalDetector"], None]


class CaptivePortalDetector:
    """Runs checks, one at a time, and keeps the CPD state.

    ``url`` overrides where the probe goes (scheme, host, port, path), keeping
    the policy's method and expectations. ``retry`` None means one try.
    ``min_interval`` spaces the checks bus triggers ask for (module rules).
    ``tls_context`` checks ``https`` probes (default: the system's trust store).
    """

    def __init__(
        self,
        settings: CaptivePortalDetect,
        *,
        retry: RetryPolicy | None = None,
        bus: BusLike | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        url: str | None = None,
        sleep: Sleeper = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        smd_class: int = Class.NETWORK,
        tls_context: ssl.SSLContext | None = None,
        min_interval: float = DEFAULT_MIN_INTERVAL,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 s, got {timeout}")
        if not 0 <= min_interval < float("inf"):
            raise ValueError(f"min_interval must be >= 0 s and finite, got {min_interval}")
        self.settings = settings
        self.retry = retry
        self.timeout = timeout
        self.url = url if url is not None else settings.url
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"CPD url must be http:// or https:// with a host, got {self.url!r}")
        self.smd_class = smd_class
        self.min_interval = min_interval
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._state = CpdState.UNKNOWN
        self._ssl: ssl.SSLContext | None = tls_context
        self._task: asyncio.Task[CheckReport] | None = None
        self._listeners: list[ResultListener] = []
        self._bus: BusLike | None = None
        self._participant: Any = None
        self.announcer = Announcer(bus, "cpd")
        self.last: CheckReport | None = None
        self.last_at: float | None = None
        """``clock()`` when the last check finished."""
        self._started_at: float | None = None
        self._owed: str | None = None
        """Why the check a bus trigger is owed was asked for (None: none owed)."""
        self._owed_task: asyncio.Task[None] | None = None
        self._owed_joined = 0
        self.checks = 0
        """Checks started."""
        self.coalesced = 0
        """Triggers that started no check of their own: a call while a check ran (it joins
        that check), a bus trigger while a check was already owed (it joins the owed one)."""
        self.deferred = 0
        """Owed checks: bus triggers that came while a check ran or within ``min_interval``."""
        if bus is not None:
            self.attach(bus)

    @classmethod
    def from_policy(cls, policy: Policy, **kwargs: Any) -> CaptivePortalDetector:
        """A detector for the policy's ``captive_portal_detect`` streamtype and its retry table."""
        cpd = policy.captive_portal_detect
        if cpd is None:
            raise PolicyError("s", "no captive_portal_detect streamtype", policy.source)
        kwargs.setdefault("retry", policy.retry_for("captive_portal_detect"))
        if "timeout" not in kwargs and cpd.timeout_ms:
            kwargs["timeout"] = cpd.timeout_ms / 1000
        return cls(cpd, **kwargs)

    # -- state ----------------------------------------------------------------------

    @property
    def state(self) -> CpdState:
        """UNKNOWN before the first result and while a check runs."""
        return self._state

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def owed(self) -> bool:
        """A bus trigger is waiting for its check (the running one to end, the interval to pass)."""
        return self._owed is not None

    def add_result_listener(self, listener: ResultListener) -> Callable[[], None]:
        """Call ``listener(result, detector)`` after each check; returns a remover."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    # -- triggers -----------------------------------------------------------------

    def trigger(self, reason: str = "call") -> bool:
        """Start a check on the running loop; False (and counted) if one is running."""
        if self.running:
            self.coalesced += 1
            log.debug("cpd: %s trigger while a check runs: it answers this one too", reason)
            return False
        loop = asyncio.get_running_loop()
        self.checks += 1
        self._state = CpdState.UNKNOWN
        self._started_at = self._clock()
        task = loop.create_task(self._run(reason), name=f"cpd-check-{self.checks}")
        self._task = task
        task.add_done_callback(self._check_done)
        if self._owed is not None:  # a check that starts now is the one the bus was owed
            self._forget_owed()
        return True

    def request(self, reason: str) -> bool:
        """A trigger from the bus: a check now if the interval allows, else one owed (module rules).

        True when a check started now.
        """
        if self._owed is not None:
            self.coalesced += 1
            self._owed_joined += 1
            return False
        wait = self._wait_left()
        if not self.running and wait <= 0:
            return self.trigger(reason)
        self._owed, self._owed_joined = reason, 0
        self.deferred += 1
        if self.running:
            log.info("cpd: %s while check %d runs: another check follows it", reason, self.checks)
        else:
            self._owe(wait, announce=True)
        return False

    def _wait_left(self) -> float:
        if self._started_at is None:
            return 0.0
        return self._started_at + self.min_interval - self._clock()

    def _owe(self, wait: float, *, announce: bool = False) -> None:
        """Start the owed check after ``wait`` seconds (on the injected sleeper).

        ``announce``: log the wait (one line per owed check: a check owed while
        another ran was announced then).
        """
        if announce and wait > 0:
            log.info(
                "cpd: %s %.3g s after check %d began: checking in %.3g s (min_interval %g s)",
                self._owed,
                self.min_interval - wait,
                self.checks,
                wait,
                self.min_interval,
            )
        self._owed_task = asyncio.get_running_loop().create_task(
            self._start_owed(max(wait, 0.0)), name=f"cpd-owed-{self.checks + 1}"
        )

    async def _start_owed(self, wait: float) -> None:
        if wait > 0:
            await self._sleep(wait)
        reason, joined = self._owed, self._owed_joined
        self._forget_owed(cancel=False)
        if reason is not None:
            self.trigger(f"{reason}, owed; {joined} later triggers joined it" if joined else reason)

    def _check_done(self, task: asyncio.Task[CheckReport]) -> None:
        """A check ended: the check the bus is owed may be started (or its wait begun)."""
        if task is self._task and self._owed is not None and self._owed_task is None:
            self._owe(self._wait_left())

    def _forget_owed(self, *, cancel: bool = True) -> None:
        task, self._owed_task = self._owed_task, None
        self._owed = None
        if cancel and task is not None and not task.done():
            task.cancel()

    async def check(self, reason: str = "call") -> CheckReport:
        """Run a check and return its report (joins the running one if there is one)."""
        self.trigger(reason)
        assert self._task is not None
        return await asyncio.shield(self._task)

    def attach(self, bus: BusLike) -> None:
        """Listen on ``bus`` for NETWORK triggers and publish results there."""
        if self._participant is not None:
            raise RuntimeError("detector already attached to a bus")
        self._bus = bus
        self.announcer.bus = bus
        self._participant = bus.register(self.smd_class, self._on_message, name="cpd")

    def detach(self) -> None:
        if self._participant is not None and self._bus is not None:
            self._bus.unregister(self._participant)
        self._participant = None

    async def aclose(self) -> None:
        """Stop listening, forget an owed check, cancel a running one (its result unpublished)."""
        self.detach()
        self._forget_owed()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_message(self, cls: int, timestamp_us: int, payload: bytes) -> None:
        reason = trigger_reason(payload)
        if reason is not None:
            self.request(reason)

    # -- the check ----------------------------------------------------------------------

    async def _run(self, reason: str) -> CheckReport:
        log.info("cpd: check %d (%s) of %s", self.checks, reason, self.url)
        attempts = self.retry.attempts if self.retry is not None else 1
        probes: list[ProbeOutcome] = []
        for i in range(attempts):
            if i:
                assert self.retry is not None
                delay = self.retry.delay_ms(i - 1, self._rand()) / 1000
                log.info(
                    "cpd: %s; retry %d/%d in %.3f s", probes[-1].reason, i, attempts - 1, delay
                )
                await self._sleep(delay)
            outcome = await self.probe()
            probes.append(outcome)
            if not outcome.retryable:
                break
        report = CheckReport(self.url, tuple(probes), reason)
        self._finish(report)
        return report

    async def probe(self) -> ProbeOutcome:
        """One HTTP request, bounded by ``timeout``, classified."""
        start = self._clock()
        try:
            async with asyncio.timeout(self.timeout):
                outcome = await self._request()
        except Exception as e:
            outcome = _failure(e, self.timeout)
        return replace(outcome, elapsed=self._clock() - start)

    async def _request(self) -> ProbeOutcome:
        parts = urlsplit(self.url)
        tls = parts.scheme == "https"
        host = parts.hostname
        assert host is not None  # checked in __init__
        port = parts.port or (443 if tls else 80)
        stream = await connect(host, port, self._tls_context() if tls else None)
        try:
            return await self._exchange(stream, parts.netloc.rpartition("@")[2])
        finally:
            stream.close()

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            import ssl

            # Made once (~30 ms each); the system's trust store, as the device's other TLS uses.
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _exchange(self, stream: Stream, host: str) -> ProbeOutcome:
        """Send the request, read up to the response head, classify it."""
        parts = urlsplit(self.url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        request = h11.Request(
            method=self.settings.http_method,
            target=target,
            headers=[("host", host), ("user-agent", USER_AGENT), ("connection", "close")],
        )
        await stream.send(conn.send(request) + conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.recv())  # b"": the server closed
            elif isinstance(event, h11.Response):
                location = next((v for k, v in event.headers if k == b"location"), None)
                text = location.decode("latin-1") if location is not None else None
                return classify(self.settings, event.status_code, text)
            elif not isinstance(event, h11.InformationalResponse):
                raise h11.RemoteProtocolError(f"{type(event).__name__} before the response")

    def _finish(self, report: CheckReport) -> None:
        result = report.result
        self._state = CpdState.of(result)
        self.last = report
        self.last_at = self._clock()
        result_log.info(
            "cpd: %s after %d probe(s): %s", result.value, report.attempts, report.probes[-1].reason
        )
        self.announcer.announce(self.smd_class, {"type": "cpd", "result": result.value})
        for listener in tuple(self._listeners):
            try:
                listener(result, self)
            except Exception:
                log.exception("cpd result listener %r raised", listener)
