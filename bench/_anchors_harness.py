"""The measuring harness shared by every system in ``bench/proxy.py``.

One shape for all brokers so the figures compare: the publisher and each
subscriber are separate processes (``fork``); a system only says how to start
its broker and how its clients send and receive bytes.

Payloads: ``b"P"`` + padding is a probe, sent until every subscriber has seen
one (ZeroMQ's and MQTT's subscriptions propagate asynchronously); ``b"D"`` +
seq u32 + send time u64 ns (CLOCK_MONOTONIC, so it compares across processes)
+ padding is a measured message. A subscriber counts data messages, checks
their order and reports when it has all of them: throughput is the count over
(last subscriber's last arrival - publisher's first send).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import queue
import statistics
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

_DATA = struct.Struct(">cIQ")
MP = multiprocessing.get_context("fork")
ReportQueue = Any  # multiprocessing.Queue[tuple[...]]: not subscriptable at runtime


def probe(size: int) -> bytes:
    return b"P" + bytes(max(0, size - 1))


def data(seq: int, size: int, pad: bytes) -> bytes:
    return _DATA.pack(b"D", seq, time.monotonic_ns()) + pad


@dataclass
class Plan:
    """What one run asks of the clients (picklable: it crosses ``fork``)."""

    count: int
    size: int
    rate: float | None  # messages/s, None = as fast as possible
    go: multiprocessing.synchronize.Event
    reports: ReportQueue
    latency: bool = False

    @property
    def pad(self) -> bytes:
        return bytes(max(0, self.size - _DATA.size))


class PublishingClient(Protocol):
    """A system's client under test as the publisher drives it (not smdbus._announce's)."""

    def send(self, payload: bytes) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class System(Protocol):
    """A broker under test and its clients."""

    name: str

    def start(self) -> None:
        """Start the broker (in the parent); return when it accepts clients."""

    def stop(self) -> None: ...

    def broker_pid(self) -> int: ...

    def run_publisher(self, plan: Plan) -> None:
        """In a child: connect, then :func:`publish_sync` / :func:`publish_async`."""

    def run_subscriber(self, index: int, plan: Plan) -> None:
        """In a child: connect, then feed every payload to a :class:`Tally` until it says stop."""


def publish_sync(plan: Plan, pub: PublishingClient) -> None:
    """Probe until the parent says go, then send the plan's messages."""
    p = probe(plan.size)
    while not plan.go.is_set():
        pub.send(p)
        pub.flush()
        time.sleep(0.005)
    pad, size, rate = plan.pad, plan.size, plan.rate
    t0 = time.monotonic_ns()
    send = pub.send
    if rate is None:
        for i in range(plan.count):
            send(data(i, size, pad))
    else:
        step = 1e9 / rate
        for i in range(plan.count):
            _wait_until(t0 + int(i * step))
            send(data(i, size, pad))
            pub.flush()
    pub.flush()
    plan.reports.put(("start", t0))
    pub.close()


async def publish_async(
    plan: Plan,
    send: Callable[[bytes], object],
    drain: Callable[[], Awaitable[object]],
) -> None:
    """:func:`publish_sync` for an asyncio client: ``drain`` is its flow control."""
    import asyncio

    p = probe(plan.size)
    while not plan.go.is_set():
        send(p)
        await drain()
        await asyncio.sleep(0.005)
    pad, size, rate = plan.pad, plan.size, plan.rate
    t0 = time.monotonic_ns()
    if rate is None:
        for i in range(plan.count):
            send(data(i, size, pad))
            if i & 63 == 63:
                await drain()
    else:
        step = 1e9 / rate
        for i in range(plan.count):
            _wait_until(t0 + int(i * step))  # nothing else runs here meanwhile
            send(data(i, size, pad))
            await drain()
            await asyncio.sleep(0)  # the loop's turn: the client writes now
    await drain()
    plan.reports.put(("start", t0))


def _wait_until(t_ns: int) -> None:
    while True:
        left = t_ns - time.monotonic_ns()
        if left <= 0:
            return
        if left > 200_000:
            time.sleep((left - 100_000) / 1e9)


@dataclass
class Tally:
    """A subscriber's bookkeeping: ready on the first probe, done at ``count``."""

    index: int
    plan: Plan
    got: int = 0
    disorder: int = 0
    ready: bool = False
    latencies: list[int] = field(default_factory=list)

    def feed(self, payload: bytes | memoryview) -> bool:
        """Take one payload; False once the plan's messages are all in."""
        kind = payload[0]
        if kind == 0x50:  # "P"
            if not self.ready:
                self.ready = True
                self.plan.reports.put(("ready", self.index))
            return True
        _, seq, t_send = _DATA.unpack_from(payload)
        if self.plan.latency:
            self.latencies.append(time.monotonic_ns() - t_send)
        if seq != self.got:
            self.disorder += 1
        self.got += 1
        if self.got >= self.plan.count:
            self.plan.reports.put(
                ("done", self.index, time.monotonic_ns(), self.disorder, self.latencies)
            )
            return False
        return True


@dataclass
class RunResult:
    system: str
    elapsed_s: float
    msgs_per_s: float
    deliveries_per_s: float
    latencies_ns: list[int]
    disorder: int
    error: str | None = None


def run_once(
    system: System,
    *,
    count: int,
    size: int,
    subscribers: int,
    rate: float | None,
    timeout: float,
) -> RunResult:
    """One publisher, ``subscribers`` subscribers, on a running broker."""
    go = MP.Event()
    reports: ReportQueue = MP.Queue()
    plan = Plan(count, size, rate, go, reports, latency=rate is not None)
    subs = [
        MP.Process(target=system.run_subscriber, args=(i, plan), daemon=True)
        for i in range(subscribers)
    ]
    for s in subs:
        s.start()
    pub = MP.Process(target=system.run_publisher, args=(plan,), daemon=True)
    pub.start()
    deadline = time.monotonic() + timeout
    ready: set[int] = set()
    done: dict[int, tuple[int, int, list[int]]] = {}
    t0: int | None = None
    error: str | None = None
    try:
        while len(done) < subscribers or t0 is None:
            left = deadline - time.monotonic()
            if left <= 0:
                error = (
                    f"timeout after {timeout:g} s: {len(ready)}/{subscribers} ready, "
                    f"{len(done)}/{subscribers} complete (messages lost or stalled)"
                )
                break
            try:
                msg = reports.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if msg[0] == "ready":
                ready.add(msg[1])
                if len(ready) == subscribers:
                    go.set()
            elif msg[0] == "start":
                t0 = msg[1]
            elif msg[0] == "done":
                done[msg[1]] = (msg[2], msg[3], msg[4])
    finally:
        for p in [pub, *subs]:
            p.join(timeout=2 if error is None else 0.1)
            if p.is_alive():
                p.kill()
                p.join()
    if error is not None or t0 is None:
        return RunResult(system.name, 0.0, 0.0, 0.0, [], 0, error or "publisher did not report")
    elapsed = (max(d[0] for d in done.values()) - t0) / 1e9
    lat = [x for d in done.values() for x in d[2]]
    return RunResult(
        system.name,
        elapsed,
        count / elapsed,
        count * subscribers / elapsed,
        lat,
        sum(d[1] for d in done.values()),
    )


def percentile(values: list[int], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return float(s[k])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
