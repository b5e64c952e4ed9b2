"""The bridge: the device's bus on one side, the broker on the other, the outbox between.

Theory of operation. One asyncio loop runs it all. A proxy client
(:func:`smdbus.client.connect`, classes ``up``) hands each bus message to
:class:`~._core.BridgeCore`; what goes up enters the :class:`~._outbox.Outbox`
at once and gets its sequence number. Once per loop pass the outbox commits
and the *pump* publishes the oldest messages not yet handed to the broker,
up to ``inflight`` unacknowledged. A PUBACK (paho's ``on_publish``) removes
the message from the outbox. When the link drops, whatever was in flight is
still in the outbox and is sent again, oldest first, on the next link: a
backend may see a message twice (QoS 1 allows it) and tells by ``seq``.

Link states::

    connecting --CONNACK--> up --lost--> waiting --backoff--> connecting
    connecting --error--> waiting (retry table: backoff[i] + jitter, i grows)
    any --stop()--> stopped (``offline`` published, clean DISCONNECT)

On ``up``: the status topic gets a retained ``online`` (the will, set on
connect, makes it ``offline`` when the device dies), commands are
subscribed, too-old messages are dropped, and a drop report goes up if
anything was dropped. When SYSTEM_STATE goes up, the bridge asks the bus
for the current state (``{"query":"state"}``, :mod:`smdbus.system._query`):
the daemon's answer goes up retained, after whatever waited in the outbox,
so the retained state is the device's state now, not the last change that
happened to go up (a C lws bus has nobody answering: there it stays the
last change). Downlinked commands go to the bus through the same proxy
client.

Every link state change is also the bridge's label at the proxy
(:meth:`smdbus.client.Client.describe`), so ``smd peers`` shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from smdbus.classes import Class, format_mask
from smdbus.client import Client, ClientError, connect
from smdbus.errors import PayloadTooLarge
from smdbus.fleet._config import BridgeConfig
from smdbus.fleet._core import BridgeCore, Refused
from smdbus.fleet._mqtt import LinkError, LinkEvents, MqttLink, Will
from smdbus.fleet._outbox import DropReport, Outbox
from smdbus.fleet._topics import encode_envelope
from smdbus.system import QUERY
from smdbus.wire import MAX_LABEL

log = logging.getLogger("smdbus.fleet")

STATUS_EVERY = 2.0
"""Seconds between status saves while running (and at every link change)."""
STATE_QUERY = json.dumps(QUERY, separators=(",", ":")).encode()
"""Asked on SYSTEM_STATE each time the link comes up (the daemon answers it)."""


def _escape(text: str) -> str:
    return text.encode("unicode_escape").decode()[:200]


class FleetBridge:
    """Bridge one device's bus to an MQTT broker (see the module docstring)."""

    def __init__(
        self,
        cfg: BridgeConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        on_link: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_link(level, text)`` hears when the link comes up or goes down (the daemon's
        notes, so the live view shows it); the log hears it either way."""
        self.cfg = cfg
        self._on_link = on_link
        self.core = BridgeCore(cfg, clock)
        self.outbox = Outbox(
            cfg.outbox,
            max_messages=cfg.outbox_max_messages,
            max_bytes=cfg.outbox_max_bytes,
            max_age=cfg.outbox_max_age,
            clock=wall,
        )
        self._wall = wall
        self._rand = rand
        self.state = "idle"
        self.last_error: str | None = None
        self.connects = 0
        self.next_retry_at: float | None = None
        self.published = 0
        self.bus_refused = 0
        self.store_failed = 0
        self.state_queries = 0
        self._client: Client | None = None
        self._link: MqttLink | None = None
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._sent_upto = 0
        self._report: tuple[int, DropReport] | None = None
        self._flush_soon = False
        self._stop = asyncio.Event()
        self._lost: asyncio.Event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._status_task: asyncio.Task[None] | None = None
        self._up_event = asyncio.Event()
        self._gen = 0
        self._acked: dict[int, asyncio.Future[None]] = {}

    # -- lifecycle -----------------------------------------------------------

    async def start(self, *, wait_for_bus: bool = False) -> None:
        """Connect to the proxy and start the broker link.

        ``wait_for_bus``: return once the proxy stream exists (the daemon's
        case: its boot must not run ahead of the bridge), else keep trying
        in the background (``smd bridge`` may start before the proxy).
        """
        self._client = await connect(
            self.cfg.socket, self.cfg.up, wait=wait_for_bus, on_message=self._from_bus
        )
        self._task = asyncio.create_task(self._run_link(), name="fleet-link")
        self._status_task = asyncio.create_task(self._save_status_often(), name="fleet-status")

    async def wait_up(self, timeout: float | None = None) -> None:
        """Wait until the broker link is up (for tools and tests)."""
        await asyncio.wait_for(self._up_event.wait(), timeout)

    async def stop(self) -> None:
        """Publish ``offline``, hang up cleanly, keep what is unacknowledged on disk."""
        self._stop.set()
        self._lost.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:  # a bug in the link loop must not keep the outbox open
                log.exception("the broker link ended with an error")
        if self._status_task is not None:
            self._status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._status_task
        if self._client is not None:
            await self._client.close()
        self.state = "stopped"
        self._save_status()
        self.outbox.close()

    async def run(self) -> None:
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stop.set()
        self._lost.set()

    # -- the bus side --------------------------------------------------------

    def _from_bus(self, cls: int, _ts: int, body: bytes) -> None:
        up = self.core.uplink(cls, body)
        if up is None:
            return
        try:
            self.outbox.add(up.topic, up.qos, up.retain, body)
        except sqlite3.Error as exc:  # a full or broken disk: counted, said, not silent
            self.store_failed += 1
            if self.store_failed <= 10 or self.store_failed % 1000 == 0:
                log.error(
                    "outbox %s: %s (%d messages lost so far)",
                    self.cfg.outbox,
                    exc,
                    self.store_failed,
                )
            return
        self._schedule_flush()

    def _ask_state(self) -> None:
        """Ask the bus for the current state; the answer comes back on SYSTEM_STATE and goes up."""
        if self.cfg.up & Class.SYSTEM_STATE:
            self.state_queries += 1
            self._to_bus(Class.SYSTEM_STATE, STATE_QUERY)

    def _to_bus(self, cls: int, body: bytes) -> None:
        assert self._client is not None
        try:
            self._client.send(cls, body)
        except (ClientError, PayloadTooLarge) as exc:
            self.bus_refused += 1
            log.warning("command %s not put on the bus: %s", format_mask(cls), exc)

    # -- flushing and pumping ------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        self.outbox.commit()
        self._pump()

    def _pump(self) -> None:
        link = self._link
        if link is None or self.state != "up":
            return
        # two below the broker's Receive Maximum: room for the status and a drop report
        window = max(1, min(self.cfg.inflight, link.receive_maximum - 2))
        room = window - len(self._inflight)
        if room <= 0:
            return
        origin = self.cfg.device_id
        for row in self.outbox.pending(self._sent_upto, room):
            payload = encode_envelope(row.seq, origin, row.time, row.body)
            mid = link.publish(row.topic, payload, row.qos, row.retain)
            self._inflight[mid] = row.seq
            self._sent_upto = row.seq
        if self._report is None:
            report = self.outbox.drop_report()
            if report is not None:
                mid = link.publish(self.core.topics.dropped, report.to_json(origin), 1, False)
                self._report = (mid, report)

    # -- link events (on the loop) -------------------------------------------

    def _events(self, gen: int) -> LinkEvents:
        """Handlers for one link; events of a link already replaced are ignored."""

        def published(mid: int) -> None:
            if gen != self._gen:
                return
            waiter = self._acked.pop(mid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            seq = self._inflight.pop(mid, None)
            if seq is not None:
                self.outbox.ack(seq)
                self.published += 1
                self._schedule_flush()
            elif self._report is not None and self._report[0] == mid:
                self.outbox.drops_reported(self._report[1])
                self._report = None

        def message(topic: str, payload: bytes, origin: str | None) -> None:
            if gen != self._gen:
                return
            verdict = self.core.downlink(topic, payload, origin)
            if isinstance(verdict, Refused):
                self._log_refused(verdict)
                return
            self._to_bus(verdict.cls, verdict.body)

        def lost(why: str) -> None:
            if gen == self._gen:
                self.last_error = f"{self.cfg.broker.url}: connection lost: {why}"
                self._lost.set()

        return LinkEvents(published, message, lost)

    def _log_refused(self, verdict: Refused) -> None:
        n = self.core.refused[verdict.reason]
        if n <= 10 or n % 1000 == 0:  # bounded log lines; the counter has them all
            log.warning(
                "downlink refused (%s, %d so far): %s", verdict.reason, n, _escape(verdict.detail)
            )

    # -- the link loop -------------------------------------------------------

    async def _run_link(self) -> None:
        retry = 0
        topics = self.core.topics
        will = Will(topics.status, b"offline")
        while not self._stop.is_set():
            self._set_state("connecting")
            self._gen += 1
            link = MqttLink(
                self.cfg.broker,
                self.cfg.mqtt_client_id,
                self._events(self._gen),
                will=will,
                inflight=self.cfg.inflight,
                origin=self.cfg.device_id,
            )
            self._link = link
            self._lost.clear()
            try:
                await link.connect()
            except LinkError as exc:
                self._link = None
                self.last_error = str(exc)
                log.warning("%s", exc)
                await self._backoff(retry)
                retry += 1
                continue
            retry = 0
            self.connects += 1
            link.publish(topics.status, b"online", 1, True)
            for sub in self.core.subscriptions():
                link.subscribe(sub, 1)
            self.outbox.expire()
            self._set_state("up")
            self._ask_state()
            self._tell("info", f"bridge up: {self.cfg.broker.url} as {self.cfg.device_id}")
            self._up_event.set()
            self._flush()
            await self._lost.wait()
            self._up_event.clear()
            if self._stop.is_set():
                self._set_state("stopping")  # the pump stops: nothing goes up after offline
                with contextlib.suppress(Exception):
                    mid = link.publish(topics.status, b"offline", 1, True)
                    acked = self._acked[mid] = asyncio.get_running_loop().create_future()
                    await asyncio.wait_for(acked, 1.0)
                await link.close()
            else:
                self._tell("warning", f"bridge down: {self.last_error}")
                await link.close()
            self._link = None
            self._inflight.clear()
            self._acked.clear()
            self._report = None
            self._sent_upto = 0
            if not self._stop.is_set():
                await self._backoff(0)

    async def _backoff(self, retry: int) -> None:
        delay = self.cfg.retry.delay_ms(retry, self._rand()) / 1000
        self.next_retry_at = self._wall() + delay
        self._set_state("waiting")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)
        self.next_retry_at = None

    # -- status --------------------------------------------------------------

    def _tell(self, level: str, text: str) -> None:
        if self._on_link is not None:
            self._on_link(level, text)
        else:
            log.log(logging.WARNING if level == "warning" else logging.INFO, "%s", text)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._save_status()
            if self._client is not None:
                self._client.describe(self.label())

    def label(self) -> str:
        """What ``smd peers`` shows for the bridge's stream: where it bridges to, and the link."""
        return f"bridge {self.cfg.broker.url} {self.state}"[-MAX_LABEL:]

    def status(self) -> dict[str, Any]:
        client = self._client.stats() if self._client is not None else None
        return {
            "state": self.state,
            "broker": self.cfg.broker.url,
            "protocol": self.cfg.broker.protocol,
            "device_id": self.cfg.device_id,
            "prefix": self.cfg.prefix,
            "connects": self.connects,
            "last_error": self.last_error,
            "next_retry_at": self.next_retry_at,
            "inflight": len(self._inflight),
            "published": self.published,
            "downlinked": self.core.downlinked,
            "refused": dict(self.core.refused),
            "bus_refused": self.bus_refused,
            "store_failed": self.store_failed,
            "loops_prevented": self.core.memory.suppressed,
            "state_queries": self.state_queries,
            "bus": client.state if client is not None else None,
            "saved_at": self._wall(),
        }

    def _save_status(self) -> None:
        with contextlib.suppress(Exception):
            self.outbox.save_status(self.status())

    async def _save_status_often(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY)
            self._save_status()
