"""Soak: the proxy under fuzzing, floods, stalled subscribers and a kill, while
well-behaved clients count every message they exchange.

    .venv/bin/python bench/soak.py [--seconds 60] [--seed 1] [--json] [--logs DIR]

One ``smd proxy`` process (on its default loop: uvloop where the ``fast``
extra is installed; ``SMD_LOOP=asyncio`` for asyncio's) on a fresh abstract
address, and for ``--seconds``,
each kind of load in its own process(es), all at once:

- fuzzers (``--fuzzers``): many short connections, each one scenario from
  :data:`SCENARIOS` in turn (garbage, a valid STREAMTYPE then garbage,
  truncated frames, huge lengths, wrong-direction frames, a newline or ESC
  in the streamtype name, random 64-bit classes, control-stream queries the
  asker never reads, connections that never finish their first frame);
- flooders (``--flooders`` threads): raw publishers of class USER1 writing
  64 KiB of frames at a time, as fast as the proxy reads them; every other
  connection also subscribes to its own class and never reads; each closes
  after a random number of writes and connects again;
- stalled subscribers (``--stalled``): mask ALL, never read; dropped by the
  proxy, they connect again;
- one SIGKILL of the proxy half-way, and a restart on the same address;
- well-behaved clients (``smdbus.client``, with its reconnect): a *steady*
  publisher at ``--rate`` msgs/s for the whole run, a *burst* publisher that
  connects (subscribed to its own class), sends ``--burst`` messages as fast
  as ``drain`` lets it, closes and starts again, and ``--subscribers``
  subscribers of class USER0 checking every sequence.

Every well-behaved message carries ``SOAK | stream u32 | seq u32 | sent
ns``; the proxy stamps its bus time (CLOCK_MONOTONIC, as ours) when it
admits it. So a subscriber knows, per message, when it was sent, admitted and
received, and the parent knows, per stream, how many were handed to the
kernel (steady: every accepted ``send`` once the outbox is empty; burst:
``stats().sent``, whole frames written).

The *restart window* runs from ``--window-margin`` seconds before the kill
to that long after the last long-lived well-behaved client is connected to
the new proxy. A message belongs to it when its send time does (a burst:
when any of it does). The goals hold outside it:

- lost, duplicated, reordered deliveries of well-behaved messages: 0;
- the steady publisher's longest gap between two admitted messages
  (proxy timestamps of consecutive sequences): <= 100 ms;
- the proxy's peak RSS (VmHWM of both proxy processes): <= 64 MiB;
- the proxy's descriptors back to their count before the load (taken with
  one control query answered, less its connection), once the load is gone;
- no proxy exit but the planned kill; no log line forged from peer text.

Also reported: log lines per second on the proxy's stderr, the publisher's
own longest gap between accepted sends, split into waking late (this
machine) and waiting in ``drain`` (the proxy not reading it), latencies,
the load each process managed, and the proxy's counters at the end. Exit
status is 0 whatever the figures (a bench).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import queue
import random
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from smdbus.classes import ALL_CLASSES, user_class
from smdbus.wire import (
    FrameType,
    format_address,
    parse_address,
    stream_type_frame,
    tx_payload_frame,
)

MP = multiprocessing.get_context("fork")
Q = Any  # multiprocessing queues and events: not subscriptable at runtime

GOOD = user_class(0)
"""The well-behaved clients' class."""
FLOOD = user_class(1)
"""The flooders' class."""
_REC = struct.Struct(">4sIIQ")
MAGIC = b"SOAK"
STEADY = 0
"""Stream id of the steady publisher; bursts are 1, 2, ..."""
FORGED = "SOAK-FORGED"
"""What a fuzzer puts after a newline in a streamtype name: a line starting with it is forged."""
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: "
)
"""The ``smd`` command's log format (cli.py)."""


@dataclass(frozen=True)
class Settings:
    """What one soak run does (picklable: it crosses ``fork``)."""

    address: str
    seconds: float = 60.0
    seed: int = 1
    rate: float = 1000.0
    subscribers: int = 2
    burst: int = 500
    fuzzers: int = 2
    fuzz_rate: float = 300.0
    flooders: int = 4
    stalled: int = 16
    window_margin: float = 1.0
    settle: float = 3.0
    payload: int = 64


# -- the proxy under test --------------------------------------------------------


class ProxyProcess:
    """``smd proxy`` (``python -m smdbus proxy``) with its stderr in a file."""

    def __init__(self, address: str, log_path: str) -> None:
        self.address = address
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smdbus", "proxy", "--socket", format_address(address)],
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the sentinel: "smd proxy: listening on ..."
        if b"listening" not in line:
            self.proc.kill()
            self.proc.wait()
            self._log.close()
            raise RuntimeError(f"smd proxy did not start: {line!r}, see {log_path}")
        self.started = time.monotonic()
        # its loop, as it names it ("... listening on @x (uvloop)"): SMD_LOOP chooses
        self.loop = line.rstrip().rpartition(b"(")[2].rstrip(b")").decode()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def fds(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return -1

    def status_kib(self, field: str) -> int:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def kill(self) -> int:
        self.proc.kill()
        rc = self.proc.wait()
        self._log.close()
        return rc

    def stop(self, timeout: float = 10.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = self.kill()
        self._log.close()
        return rc


def _connect_raw(address: str, timeout: float = 1.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(address)
    except OSError:
        s.close()
        raise
    return s


def _frame(ftype: int, body: bytes) -> bytes:
    return struct.pack(">BH", ftype, len(body)) + body


def _raw_streamtype(name: bytes, mask: int = 0, version: int = 1) -> bytes:
    return struct.pack(">BHBII", 0xAA, 9 + len(name), version, os.getpid(), mask) + name


def _txcr() -> bytes:
    return _frame(FrameType.TX_TXCR_UPDATE, struct.pack(">i", 1000))


# -- fuzzers -----------------------------------------------------------------------
# Each scenario returns the bytes one connection sends; "linger" ones keep the
# connection open a while (a first frame never finished: the first-frame timeout).


def _garbage(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1, 2048))


def _valid_then_garbage(rng: random.Random) -> bytes:
    return stream_type_frame("_lws_smd", rng.getrandbits(32)) + _garbage(rng)


def _truncated(rng: random.Random) -> bytes:
    frame = tx_payload_frame(FLOOD, 0, rng.randbytes(rng.randint(0, 383)))
    return stream_type_frame("_lws_smd", 0) + frame[: rng.randint(1, len(frame) - 1)]


def _huge_length(rng: random.Random) -> bytes:
    ftype = rng.choice([0xAD, 0xAA, 0xAE, 0xB3, rng.randint(0, 255)])
    head = struct.pack(">BH", ftype, rng.randint(1025, 0xFFFF))
    lead = stream_type_frame("_lws_smd", 0) if rng.random() < 0.5 else b""
    return lead + head + rng.randbytes(rng.randint(0, 4096))


def _bad_name(rng: random.Random) -> bytes:
    names = [
        f"_lws_smd\n{FORGED} 2026-01-01 00:00:00,000 ERROR smdbus.proxy: forged".encode(),
        b"\x1b[2J\x1b[31mred\x1b[0m",
        f"x\r{FORGED}\n{FORGED}".encode(),
        rng.randbytes(rng.randint(1, 200)),  # often not UTF-8
        b"_lws_smd\x00hidden",
    ]
    return _raw_streamtype(rng.choice(names), rng.getrandbits(32))


def _wrong_direction(rng: random.Random) -> bytes:
    lead = stream_type_frame("_lws_smd", 0) if rng.random() < 0.5 else b""
    return lead + _frame(rng.choice([0x55, 0x56, 0x57, 0x58, 0x59, 0x5B]), rng.randbytes(40))


def _random_classes(rng: random.Random) -> bytes:
    # valid messages of random 64-bit classes (never the well-behaved one)
    frames = [stream_type_frame("_lws_smd", 0)]
    for _ in range(rng.randint(1, 50)):
        cls = (rng.getrandbits(64) & ~GOOD) or FLOOD
        frames.append(tx_payload_frame(cls, 0, rng.randbytes(rng.randint(0, 64))))
    return b"".join(frames)


def _metadata(rng: random.Random) -> bytes:
    return stream_type_frame("_lws_smd", 0) + _frame(0xAE, b"\x04name" + rng.randbytes(20))


def _second_streamtype(rng: random.Random) -> bytes:
    return stream_type_frame("_lws_smd", 0) + stream_type_frame("_lws_smd", rng.getrandbits(32))


def _before_streamtype(rng: random.Random) -> bytes:
    return tx_payload_frame(FLOOD, 0, rng.randbytes(20))


def _bad_version(rng: random.Random) -> bytes:
    return _raw_streamtype(b"_lws_smd", 0, rng.choice([0, 2, 255]))


def _control(rng: random.Random) -> bytes:
    # tools' stream: queries the asker never reads, one of them not JSON
    queries = [b'{"op":"peers"}'] * rng.randint(1, 5) + [b'{"op":"stats"}', rng.randbytes(30)]
    return stream_type_frame("_smdbus_ctl", 0) + b"".join(
        tx_payload_frame(1, 0, q) for q in queries
    )


def _empty(rng: random.Random) -> bytes:
    return b""


def _slow(rng: random.Random) -> bytes:
    return stream_type_frame("_lws_smd", 0)[: rng.randint(1, 8)]


SCENARIOS: list[tuple[str, Callable[[random.Random], bytes], bool]] = [
    ("garbage", _garbage, False),
    ("valid-then-garbage", _valid_then_garbage, False),
    ("truncated", _truncated, False),
    ("huge-length", _huge_length, False),
    ("bad-name", _bad_name, False),
    ("wrong-direction", _wrong_direction, False),
    ("random-classes", _random_classes, False),
    ("metadata", _metadata, False),
    ("second-streamtype", _second_streamtype, False),
    ("before-streamtype", _before_streamtype, False),
    ("bad-version", _bad_version, False),
    ("control-unread", _control, False),
    ("empty", _empty, False),
    ("slow-first-frame", _slow, True),
]
"""(name, bytes to send, linger): each fuzzer takes them in turn."""
MAX_LINGERING = 16


def fuzzer(cfg: Settings, index: int, stop: Q, reports: Q) -> None:
    rng = random.Random(cfg.seed * 1000 + index)
    connections = connect_failed = sent = 0
    lingering: list[tuple[float, socket.socket]] = []
    scenarios = itertools.cycle(SCENARIOS)
    period = 1.0 / cfg.fuzz_rate if cfg.fuzz_rate > 0 else 0.0
    next_at = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        while lingering and (lingering[0][0] <= now or len(lingering) > MAX_LINGERING):
            lingering.pop(0)[1].close()
        if period:
            if next_at > now:
                time.sleep(next_at - now)
            next_at = max(next_at + period, now - 1.0)
        _name, make, linger = next(scenarios)
        data = make(rng)
        try:
            s = _connect_raw(cfg.address, 0.5)
        except OSError:
            connect_failed += 1  # the proxy is down, or too busy to accept within 0.5 s
            time.sleep(0.01)
            continue
        connections += 1
        try:
            if data:
                s.sendall(data)
                sent += len(data)
            if linger:
                lingering.append((time.monotonic() + rng.uniform(0.1, 4.0), s))
                lingering.sort(key=lambda x: x[0])
                continue
            if rng.random() < 0.5:
                s.settimeout(0.05)
                with contextlib.suppress(OSError):
                    s.recv(4096)
        except OSError:
            pass
        s.close()
    for _, s in lingering:
        s.close()
    counts = {"connections": connections, "connect_failed": connect_failed, "bytes": sent}
    reports.put(("fuzzer", index, counts))


# -- flooders and stalled subscribers ------------------------------------------------


def flooders(cfg: Settings, stop: Q, reports: Q) -> None:
    body = bytes(100)
    frame = tx_payload_frame(FLOOD, 0, body)
    batch = frame * (65536 // len(frame))
    per_batch = 65536 // len(frame)
    counts = [0] * cfg.flooders  # frames handed to the kernel whole
    connects = [0] * cfg.flooders

    def flood(i: int) -> None:
        rng = random.Random(cfg.seed * 2000 + i)
        while not stop.is_set():
            try:
                s = _connect_raw(cfg.address)
            except OSError:
                time.sleep(0.02)
                continue
            s.settimeout(None)  # block while the proxy holds us: as fast as it admits
            connects[i] += 1
            mask = FLOOD if connects[i] % 2 == 0 else 0
            try:
                s.sendall(stream_type_frame("_lws_smd", mask))
                for _ in range(rng.randint(5, 100)):
                    if stop.is_set():
                        break
                    s.sendall(batch)
                    counts[i] += per_batch
            except OSError:
                pass
            s.close()

    threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(cfg.flooders)]
    for t in threads:
        t.start()
    stop.wait()
    reports.put(("flooders", 0, {"frames": sum(counts), "connections": sum(connects)}))
    # threads blocked in sendall die with the process


def stalled(cfg: Settings, stop: Q, reports: Q) -> None:
    socks: list[socket.socket | None] = [None] * cfg.stalled
    connects = 0
    while not stop.is_set():
        for i, s in enumerate(socks):
            if s is None:
                try:
                    s = _connect_raw(cfg.address, 0.2)
                    s.sendall(stream_type_frame("_lws_smd", ALL_CLASSES))
                    s.setblocking(False)
                except OSError:
                    continue
                socks[i] = s
                connects += 1
            try:
                # a frame the proxy ignores: how we learn it dropped us (EPIPE)
                s.send(_txcr())
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                socks[i] = None
        stop.wait(0.25)
    for s in socks:
        if s is not None:
            s.close()
    reports.put(("stalled", 0, {"connections": connects}))


# -- well-behaved clients ------------------------------------------------------------


async def _watch(client: Any, timeline: list[tuple[float, bool]]) -> None:
    """Record when ``client`` goes down and up (every 10 ms)."""
    up = client.connected
    timeline.append((time.monotonic(), up))
    while True:
        await asyncio.sleep(0.01)
        if client.connected != up:
            up = client.connected
            timeline.append((time.monotonic(), up))


def steady_publisher(cfg: Settings, go: Q, stop: Q, reports: Q) -> None:
    from smdbus.client import BufferFull, connect

    async def main() -> None:
        c = await connect(cfg.address, 0)
        timeline: list[tuple[float, bool]] = []
        watch = asyncio.create_task(_watch(c, timeline))
        reports.put(("ready", "steady", None))
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        pad = bytes(max(0, cfg.payload - _REC.size))
        sent_ns = array.array("q")
        # (when, ns): this process woke late (the machine), or waited in drain (the proxy)
        late: list[tuple[int, int]] = []
        drained: list[tuple[int, int]] = []
        refused = 0
        period = 1.0 / cfg.rate
        t0 = time.monotonic()
        seq = 0
        while not stop.is_set():
            due = int((time.monotonic() - t0) * cfg.rate) + 1
            while seq < due:
                now = time.monotonic_ns()
                try:
                    c.send(GOOD, _REC.pack(MAGIC, STEADY, seq, now) + pad)
                except BufferFull:
                    refused += 1
                    await c.drain()
                    drained.append((now, time.monotonic_ns() - now))
                    continue
                sent_ns.append(now)
                seq += 1
            slept = time.monotonic_ns()
            await asyncio.sleep(period)
            over = time.monotonic_ns() - slept - int(period * 1e9)
            if over > 2_000_000:
                late.append((slept, over))
        deadline = time.monotonic() + 10
        while c.stats().buffered and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        unsent = c.stats().buffered  # the last ones, never handed to the kernel
        watch.cancel()
        await c.close(timeout=0)
        reports.put(
            (
                "steady",
                0,
                {
                    "sent_ns": sent_ns.tobytes(),
                    "expected": len(sent_ns) - unsent,
                    "unsent_at_close": unsent,
                    "refused": refused,
                    "late": late,
                    "drained": drained,
                    "timeline": timeline,
                },
            )
        )

    asyncio.run(main())


def burst_publisher(cfg: Settings, go: Q, stop: Q, reports: Q) -> None:
    from smdbus.client import BufferFull, ProxyUnavailable, connect

    async def main() -> None:
        reports.put(("ready", "burst", None))
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        pad = bytes(max(0, cfg.payload - _REC.size))
        bursts: list[tuple[int, int, int, int]] = []  # (stream, handed over, first ns, last ns)
        unavailable = 0
        for stream in itertools.count(STEADY + 1):
            if stop.is_set():
                break
            try:
                # subscribed to its own class: the proxy echoes every message back
                c = await connect(cfg.address, GOOD, create_timeout=1.0)
            except ProxyUnavailable:
                unavailable += 1
                await asyncio.sleep(0.05)
                continue
            first = time.monotonic_ns()
            seq = 0
            while seq < cfg.burst:
                try:
                    c.send(GOOD, _REC.pack(MAGIC, stream, seq, time.monotonic_ns()) + pad)
                    seq += 1
                except BufferFull:
                    await c.drain()
            await c.close(timeout=2.0)
            bursts.append((stream, c.stats().sent, first, time.monotonic_ns()))
            await asyncio.sleep(0.2)
        reports.put(("burst", 0, {"bursts": bursts, "unavailable": unavailable}))

    asyncio.run(main())


def subscriber(cfg: Settings, index: int, finish: Q, reports: Q) -> None:
    from smdbus.client import Client

    async def main() -> None:
        # stream -> seq -> (admitted us, received ns)
        seen: dict[int, dict[int, tuple[int, int]]] = {}
        top: dict[int, int] = {}
        dups: list[tuple[int, int]] = []
        late: list[tuple[int, int]] = []
        other = 0

        def on_message(cls: int, ts: int, payload: bytes) -> None:
            nonlocal other
            if len(payload) < _REC.size or payload[:4] != MAGIC:
                other += 1
                return
            _, stream, seq, _sent = _REC.unpack_from(payload)
            got = seen.get(stream)
            if got is None:
                got = seen[stream] = {}
            if seq in got:
                dups.append((stream, seq))
                return
            got[seq] = (ts, time.monotonic_ns())
            if seq < top.get(stream, -1):
                late.append((stream, seq))
            else:
                top[stream] = seq

        c = Client(cfg.address, GOOD, on_message=on_message)
        await c.start()
        timeline: list[tuple[float, bool]] = []
        watch = asyncio.create_task(_watch(c, timeline))
        reports.put(("ready", f"sub{index}", None))
        loop = asyncio.get_running_loop()
        expected: dict[int, int] = await loop.run_in_executor(None, finish.get)
        deadline = time.monotonic() + cfg.settle
        while time.monotonic() < deadline and any(
            len(seen.get(k, ())) < n for k, n in expected.items()
        ):
            await asyncio.sleep(0.02)
        watch.cancel()
        await c.close(timeout=0)
        reports.put(
            (
                "sub",
                index,
                {"seen": seen, "dups": dups, "late": late, "other": other, "timeline": timeline},
            )
        )

    asyncio.run(main())


# -- analysis (pure) ---------------------------------------------------------------


@dataclass
class Window:
    """The restart window in CLOCK_MONOTONIC nanoseconds."""

    start_ns: int
    end_ns: int

    def holds(self, t_ns: int) -> bool:
        return self.start_ns <= t_ns <= self.end_ns

    def overlaps(self, a_ns: int, b_ns: int) -> bool:
        return a_ns <= self.end_ns and b_ns >= self.start_ns


def _back_after(timeline: list[tuple[float, bool]], t_kill: float) -> float | None:
    """When a long-lived client was connected again after the kill (None: never)."""
    for t, up in timeline:
        if up and t > t_kill:
            return t
    return None


def _unplanned_drops(
    timelines: dict[str, list[tuple[float, bool]]], window: Window, t0: float
) -> list[dict[str, Any]]:
    """Drops of a long-lived well-behaved client outside the window: who, and when."""
    return [
        {"client": name, "at_s": round(t - t0, 3)}
        for name, timeline in timelines.items()
        for t, up in timeline
        if not up and not window.holds(int(t * 1e9))
    ]


def _longest_outside(events: list[tuple[int, int]], window: Window) -> float:
    """The longest of ``(when ns, duration ns)`` events outside the window, in ms."""
    return max((d / 1e6 for t, d in events if not window.holds(t)), default=0.0)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def analyze_deliveries(
    steady_sent_ns: list[int],
    steady_expected: int,
    bursts: list[tuple[int, int, int, int]],
    subs: list[dict[str, Any]],
    window: Window,
) -> dict[str, Any]:
    """Lost, duplicated, reordered deliveries (outside and in the window), gaps, latency."""

    def in_window(stream: int, seq: int) -> bool:
        if stream == STEADY:
            return window.holds(steady_sent_ns[seq]) if seq < len(steady_sent_ns) else True
        b = burst_at.get(stream)
        return True if b is None else window.overlaps(b[2], b[3])

    burst_at = {b[0]: b for b in bursts}
    expected = {STEADY: steady_expected, **{b[0]: b[1] for b in bursts}}
    tally = {
        where: {"lost": 0, "duplicated": 0, "reordered": 0} for where in ("outside", "in_window")
    }
    # the same split by publisher: "steady" (long-lived) and "burst" (closes after each burst)
    by_kind = {
        f"{kind}_{where}": {"lost": 0, "duplicated": 0, "reordered": 0}
        for kind in ("steady", "burst")
        for where in ("outside", "in_window")
    }

    def count(stream: int, seq: int, what: str) -> str:
        where = "in_window" if in_window(stream, seq) else "outside"
        tally[where][what] += 1
        by_kind[f"{'steady' if stream == STEADY else 'burst'}_{where}"][what] += 1
        return where

    lost_outside: list[tuple[int, int]] = []
    latencies: list[float] = []
    for sub in subs:
        seen: dict[int, dict[int, tuple[int, int]]] = sub["seen"]
        for stream, n in expected.items():
            got = seen.get(stream, {})
            for seq in range(n):
                if seq not in got:
                    where = count(stream, seq, "lost")
                    if where == "outside" and len(lost_outside) < 20:
                        lost_outside.append((stream, seq))
        for key, what in (("dups", "duplicated"), ("late", "reordered")):
            for stream, seq in sub[key]:
                count(stream, seq, what)
        for seq, (_ts, arrived) in seen.get(STEADY, {}).items():
            if seq < len(steady_sent_ns) and not window.holds(steady_sent_ns[seq]):
                latencies.append((arrived - steady_sent_ns[seq]) / 1e6)
    # admission: the proxy's timestamps of consecutive steady messages, whoever saw them
    admitted: dict[int, int] = {}
    for sub in subs:
        for seq, (ts, _arrived) in sub["seen"].get(STEADY, {}).items():
            admitted.setdefault(seq, ts)
    order = sorted(s for s in admitted if s < len(steady_sent_ns))
    gap_ms, gap_at = 0.0, -1
    for a, b in itertools.pairwise(order):
        if window.holds(steady_sent_ns[a]) or window.holds(steady_sent_ns[b]):
            continue
        g = (admitted[b] - admitted[a]) / 1000
        if g > gap_ms:
            gap_ms, gap_at = g, b
    send_gap = 0.0
    for a, b in itertools.pairwise(steady_sent_ns):
        if not (window.holds(a) or window.holds(b)):
            send_gap = max(send_gap, (b - a) / 1e6)
    return {
        **tally,
        "by_publisher": by_kind,
        "expected_deliveries": sum(expected.values()) * len(subs),
        "first_lost_outside": lost_outside,
        "admission_gap_ms": gap_ms,
        "admission_gap_at_seq": gap_at,
        "publisher_send_gap_ms": send_gap,
        "latency_ms": {
            "p50": _pct(latencies, 50),
            "p99": _pct(latencies, 99),
            "max": max(latencies, default=float("nan")),
        },
    }


def analyze_logs(paths: list[str], seconds: float) -> dict[str, Any]:
    """Lines, lines per second (overall and the busiest second), tracebacks, forged lines."""
    lines = tracebacks = forged = escapes = foreign = 0
    per_second: Counter[str] = Counter()
    second = ""
    for path in paths:
        with open(path, "rb") as f:
            for raw in f:
                lines += 1
                text = raw.decode("utf-8", "replace")
                m = LOG_LINE.match(text)
                if m:
                    second = text[:19]
                else:
                    foreign += 1
                per_second[second] += 1
                if text.startswith("Traceback (most recent call last)"):
                    tracebacks += 1
                if text.lstrip("\r").startswith(FORGED):
                    forged += 1
                if "\x1b" in text:
                    escapes += 1
    return {
        "lines": lines,
        "lines_per_s": lines / seconds if seconds > 0 else float("nan"),
        "busiest_second_lines": max(per_second.values(), default=0),
        "tracebacks": tracebacks,
        "lines_not_in_log_format": foreign,
        "forged_lines": forged,
        "lines_with_raw_escape": escapes,
    }


# -- the driver -----------------------------------------------------------------------


def _query_stats(address: str, proxy: ProxyProcess | None = None) -> dict[str, Any]:
    """The proxy's counters (``{"op":"stats"}`` on the control stream), or {} if it fails.

    With ``proxy``, also ``idle_fds``: its descriptors counted while the answer is
    in hand, less one per open connection (the asker's included). Taken so, the
    baseline has what a loop opens at its first connection and keeps (uvloop:
    libuv's reserve against EMFILE, ``/dev/null``), as the count at the end has.
    """
    from smdbus.wire import WireStream

    async def ask() -> dict[str, Any]:
        s = await WireStream.connect(address, 0, streamtype="_smdbus_ctl", max_payload=0xFFFF - 32)
        try:
            await s.send(1, b'{"op":"stats"}')
            msg = await asyncio.wait_for(s.receive(), 3.0)
            reply: dict[str, Any] = json.loads(msg.payload)
            stats = dict(reply.get("stats", {}))
            if proxy is not None:
                stats["idle_fds"] = proxy.fds() - int(stats["connections"])
            return stats
        finally:
            await s.close()

    try:
        return asyncio.run(ask())
    except (OSError, ValueError, TimeoutError):
        return {}


def _get(reports: Q, kind: str, timeout: float, inbox: list[tuple[str, Any, Any]]) -> Any:
    """The next report of ``kind`` (others are kept in ``inbox``); None on timeout."""
    for i, (k, index, body) in enumerate(inbox):
        if k == kind:
            del inbox[i]
            return index, body
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            k, index, body = reports.get(timeout=left)
        except queue.Empty:
            return None
        if k == kind:
            return index, body
        inbox.append((k, index, body))


def run(cfg: Settings, logs: str) -> dict[str, Any]:
    reports: Q = MP.Queue()
    go, stop = MP.Event(), MP.Event()
    inbox: list[tuple[str, Any, Any]] = []
    proxies: list[dict[str, Any]] = []
    log_paths: list[str] = []

    def start_proxy() -> ProxyProcess:
        path = os.path.join(logs, f"proxy{len(log_paths) + 1}.log")
        log_paths.append(path)
        return ProxyProcess(cfg.address, path)

    proxy = start_proxy()
    fds_baseline = _query_stats(cfg.address, proxy).get("idle_fds", -1)
    rss_idle = proxy.status_kib("VmRSS")
    finishes = [MP.Queue() for _ in range(cfg.subscribers)]
    good = [
        *(
            MP.Process(target=subscriber, args=(cfg, i, finishes[i], reports), daemon=True)
            for i in range(cfg.subscribers)
        ),
        MP.Process(target=steady_publisher, args=(cfg, go, stop, reports), daemon=True),
        MP.Process(target=burst_publisher, args=(cfg, go, stop, reports), daemon=True),
    ]
    load = [
        *(
            MP.Process(target=fuzzer, args=(cfg, i, stop, reports), daemon=True)
            for i in range(cfg.fuzzers)
        ),
        MP.Process(target=flooders, args=(cfg, stop, reports), daemon=True),
        MP.Process(target=stalled, args=(cfg, stop, reports), daemon=True),
    ]
    for p in good:
        p.start()
    for _ in good:
        if _get(reports, "ready", 30, inbox) is None:
            raise RuntimeError("a well-behaved client did not start")
    for p in load:
        p.start()
    go.set()
    t_go = time.monotonic()
    t_end = t_go + cfg.seconds
    t_kill_at = t_go + cfg.seconds / 2
    t_kill = t_restarted = float("nan")
    rss_max = 0
    fds_max = 0
    unplanned: list[dict[str, Any]] = []
    stats_before_kill: dict[str, Any] = {}
    while time.monotonic() < t_end:
        rss_max = max(rss_max, proxy.status_kib("VmRSS"))
        fds_max = max(fds_max, proxy.fds())
        rc = proxy.proc.poll()
        if rc is not None:  # it died by itself
            unplanned.append({"at_s": time.monotonic() - t_go, "returncode": rc})
            proxies.append({"pid": proxy.pid, "vmhwm_kib": 0, "end": f"exited {rc}"})
            proxy._log.close()
            proxy = start_proxy()
        elif t_kill != t_kill and time.monotonic() >= t_kill_at:
            stats_before_kill = _query_stats(cfg.address)
            hwm = proxy.status_kib("VmHWM")
            t_kill = time.monotonic()
            proxy.kill()
            proxies.append({"pid": proxy.pid, "vmhwm_kib": hwm, "end": "SIGKILL (planned)"})
            proxy = start_proxy()
            t_restarted = time.monotonic()
        time.sleep(0.05)
    stop.set()
    t_stop = time.monotonic()

    steady = _get(reports, "steady", 60, inbox)
    burst = _get(reports, "burst", 60, inbox)
    if steady is None or burst is None:
        raise RuntimeError("a well-behaved publisher did not report")
    steady_body, burst_body = steady[1], burst[1]
    sent_ns = array.array("q")
    sent_ns.frombytes(steady_body["sent_ns"])
    expected = {STEADY: steady_body["expected"], **{b[0]: b[1] for b in burst_body["bursts"]}}
    for f in finishes:
        f.put(expected)
    subs: list[dict[str, Any]] = []
    for _ in range(cfg.subscribers):
        got = _get(reports, "sub", cfg.settle + 30, inbox)
        if got is None:
            raise RuntimeError("a well-behaved subscriber did not report")
        subs.append(got[1])
    load_reports: dict[str, Any] = {}
    for kind, n in (("fuzzer", cfg.fuzzers), ("flooders", 1), ("stalled", 1)):
        for _ in range(n):
            got = _get(reports, kind, 10, inbox)
            if got is not None:
                prev = load_reports.setdefault(kind, {})
                for k, v in got[1].items():
                    prev[k] = prev.get(k, 0) + v
    for p in good + load:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join()
    t_gone = time.monotonic()

    # descriptors back to baseline: wait for the count (a sentinel), at most 5 s
    fds_end = proxy.fds()
    deadline = time.monotonic() + 5
    while fds_end != fds_baseline and time.monotonic() < deadline:
        time.sleep(0.05)
        fds_end = proxy.fds()
    fds_settle_s = time.monotonic() - t_gone
    stats_end = _query_stats(cfg.address)
    rss_end = proxy.status_kib("VmRSS")
    hwm = proxy.status_kib("VmHWM")
    rc = proxy.stop()
    proxies.append({"pid": proxy.pid, "vmhwm_kib": hwm, "end": f"SIGTERM, exit {rc}"})
    if rc != 0:
        unplanned.append({"at_s": time.monotonic() - t_go, "returncode": rc, "on": "SIGTERM"})

    # the restart window, from the long-lived well-behaved clients' timelines
    timelines = {
        "steady": steady_body["timeline"],
        **{f"subscriber{i}": s["timeline"] for i, s in enumerate(subs)},
    }
    if t_kill == t_kill:
        backs = [_back_after(t, t_kill) for t in timelines.values()]
        t_back = t_stop if any(b is None for b in backs) else max(b for b in backs if b)
        window = Window(
            int((t_kill - cfg.window_margin) * 1e9), int((t_back + cfg.window_margin) * 1e9)
        )
    else:  # the run ended before the kill
        t_back = float("nan")
        window = Window(0, -1)
    deliveries = analyze_deliveries(
        list(sent_ns), steady_body["expected"], burst_body["bursts"], subs, window
    )
    rss_peak = max([hwm, *(p["vmhwm_kib"] for p in proxies), rss_max])
    logs_figs = analyze_logs(log_paths, t_stop - t_go)
    outside = deliveries["outside"]

    def goal(value: Any, target: str, ok: bool) -> dict[str, Any]:
        return {"value": value, "goal": target, "pass": ok}

    goals = {
        "lost_outside_restart": goal(outside["lost"], "0", outside["lost"] == 0),
        "duplicated_outside_restart": goal(outside["duplicated"], "0", outside["duplicated"] == 0),
        "reordered_outside_restart": goal(outside["reordered"], "0", outside["reordered"] == 0),
        "admission_gap_ms": goal(
            round(deliveries["admission_gap_ms"], 1),
            "<= 100",
            deliveries["admission_gap_ms"] <= 100,
        ),
        "peak_rss_mib": goal(round(rss_peak / 1024, 1), "<= 64", rss_peak <= 64 * 1024),
        "fds_back_to_baseline": goal(
            f"{fds_end} (baseline {fds_baseline})", "equal", fds_end == fds_baseline
        ),
        "unplanned_proxy_exits": goal(len(unplanned), "0", not unplanned),
        "forged_log_lines": goal(
            logs_figs["forged_lines"] + logs_figs["lines_with_raw_escape"],
            "0",
            logs_figs["forged_lines"] + logs_figs["lines_with_raw_escape"] == 0,
        ),
    }
    return {
        "settings": asdict(cfg),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "timeline_s": {
            "load": round(t_stop - t_go, 3),
            "kill": round(t_kill - t_go, 3),
            "restarted": round(t_restarted - t_go, 3),
            "clients_back": round(t_back - t_go, 3),
            "window": [
                round(window.start_ns / 1e9 - t_go, 3),
                round(window.end_ns / 1e9 - t_go, 3),
            ],
        },
        "well_behaved": {
            "steady_sent": len(sent_ns),
            "steady_unsent_at_close": steady_body["unsent_at_close"],
            "steady_refused_buffer_full": steady_body["refused"],
            "bursts": len(burst_body["bursts"]),
            "burst_messages": sum(b[1] for b in burst_body["bursts"]),
            "burst_connect_failures": burst_body["unavailable"],
            "unplanned_disconnects": _unplanned_drops(timelines, window, t_go),
            **deliveries,
            "publisher_late_ms": _longest_outside(steady_body["late"], window),
            "publisher_drain_wait_ms": _longest_outside(steady_body["drained"], window),
        },
        "proxy": {
            "processes": proxies,
            "loop": proxy.loop,
            "peak_rss_mib": rss_peak / 1024,
            "rss_idle_mib": rss_idle / 1024,
            "rss_end_mib": rss_end / 1024,
            "fds_baseline": fds_baseline,
            "fds_peak": fds_max,
            "fds_end": fds_end,
            "fds_settle_s": round(fds_settle_s, 3),
            "unplanned_exits": unplanned,
            "counters_before_kill": stats_before_kill,
            "counters_end": stats_end,
            "log": {**logs_figs, "files": log_paths},
        },
        "load": load_reports,
        "goals": goals,
    }


def print_text(r: dict[str, Any]) -> None:
    s, t, w, p = r["settings"], r["timeline_s"], r["well_behaved"], r["proxy"]
    print(
        f"soak {s['seconds']:g} s (seed {s['seed']}): kill at {t['kill']:.2f} s, "
        f"listening again at {t['restarted']:.2f} s, clients back at {t['clients_back']:.2f} s; "
        f"restart window {t['window'][0]:.2f}..{t['window'][1]:.2f} s"
    )
    print(
        f"well-behaved: steady {w['steady_sent']} msgs at {s['rate']:g}/s, "
        f"{w['bursts']} bursts ({w['burst_messages']} msgs), {s['subscribers']} subscribers"
    )
    print(f"  deliveries expected {w['expected_deliveries']}")
    for where in ("outside", "in_window"):
        for kind in ("steady", "burst"):
            d = w["by_publisher"][f"{kind}_{where}"]
            print(
                f"  {where:<10} {kind:<7} lost {d['lost']:>7}  duplicated {d['duplicated']:>5}  "
                f"reordered {d['reordered']:>5}"
            )
    lat = w["latency_ms"]
    print(
        f"  admission gap {w['admission_gap_ms']:.1f} ms; the publisher's longest gap between "
        f"sends {w['publisher_send_gap_ms']:.1f} ms (woke late by up to "
        f"{w['publisher_late_ms']:.1f} ms, waited in drain up to "
        f"{w['publisher_drain_wait_ms']:.1f} ms)"
    )
    print(
        f"  latency p50 {lat['p50']:.1f} p99 {lat['p99']:.1f} max {lat['max']:.1f} ms; "
        f"unplanned disconnects {w['unplanned_disconnects'] or 'none'}"
    )
    lg = p["log"]
    print(
        f"proxy ({p['loop']}): peak RSS {p['peak_rss_mib']:.1f} MiB "
        f"(idle {p['rss_idle_mib']:.1f}), "
        f"fds {p['fds_baseline']} -> peak {p['fds_peak']} -> {p['fds_end']}; "
        f"log {lg['lines']} lines, {lg['lines_per_s']:.0f}/s (busiest second "
        f"{lg['busiest_second_lines']}), {lg['tracebacks']} tracebacks"
    )
    ld = r["load"]
    print(
        "load: "
        + "; ".join(f"{k} " + ", ".join(f"{n} {v}" for n, v in d.items()) for k, d in ld.items())
    )
    print()
    for name, g in r["goals"].items():
        print(f"{'PASS' if g['pass'] else 'FAIL'}  {name:<28} {g['value']!s:<20} goal {g['goal']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Settings(address="")
    ap.add_argument("--seconds", type=float, default=d.seconds, help="load duration")
    ap.add_argument("--seed", type=int, default=d.seed, help="fuzzers' and flooders' seed")
    ap.add_argument("--rate", type=float, default=d.rate, help="steady publisher, msgs/s")
    ap.add_argument("--subscribers", type=int, default=d.subscribers)
    ap.add_argument("--burst", type=int, default=d.burst, help="messages per burst")
    ap.add_argument("--fuzzers", type=int, default=d.fuzzers, help="fuzzer processes")
    ap.add_argument(
        "--fuzz-rate", type=float, default=d.fuzz_rate, help="connections/s per fuzzer (0: max)"
    )
    ap.add_argument("--flooders", type=int, default=d.flooders, help="flooding connections")
    ap.add_argument("--stalled", type=int, default=d.stalled, help="subscribers never reading")
    ap.add_argument("--window-margin", type=float, default=d.window_margin, metavar="S")
    ap.add_argument("--settle", type=float, default=d.settle, metavar="S")
    ap.add_argument("--logs", metavar="DIR", help="keep the proxy's stderr here")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in fields(Settings) if hasattr(args, f.name)}
    cfg = Settings(
        **{**given, "address": parse_address(f"@smdsoak-{os.getpid()}-{time.monotonic_ns()}")}
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 4096):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    with contextlib.ExitStack() as stack:
        logs = args.logs or stack.enter_context(tempfile.TemporaryDirectory(prefix="soak"))
        os.makedirs(logs, exist_ok=True)
        report = run(cfg, logs)
        if not args.logs:
            report["proxy"]["log"]["files"] = []
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
