"""The client on a C proxy: paced, so nothing is lost or corrupted, and sends confirmed.

The peer is ``tests/fake_c_proxy.py`` in a child process: a real socket
server that reads, splits frames and drops clients as the C proxy was
measured to (2048-byte reads, a frame across two reads becomes two corrupt
messages, 32 KiB of unprocessed input, discard on hang-up).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smdbus.classes import user_class
from smdbus.client import connect

FAKE = Path(__file__).parent / "fake_c_proxy.py"
_names = itertools.count()
CLS = user_class(4)


class FakeCProxy:
    def __init__(self, *options: str) -> None:
        self.address = f"@smdbus-test-cproxy-{os.getpid()}-{next(_names)}"
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE), self.address, *options],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next_line(lambda o: "listening" in o) == {"listening": True}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def next_line(
        self, want: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        """The next report the fake prints that ``want`` accepts (bounded wait for a sentinel)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no report from the fake C proxy in time") from None
            if not line:
                raise AssertionError(f"fake C proxy exited with {self.proc.wait()}")
            obj: dict[str, Any] = json.loads(line)
            if want(obj):
                return obj

    async def report(self, want: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """:meth:`next_line` without blocking the loop the client runs on."""
        return await asyncio.to_thread(self.next_line, want)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def cproxy() -> Iterator[FakeCProxy]:
    p = FakeCProxy()
    try:
        yield p
    finally:
        p.stop()


def body(i: int) -> bytes:
    return b'{"i": %d, "pad": "%s"}' % (i, b"p" * (i % 97))


def end_or_failure(o: dict[str, Any]) -> bool:
    return "end" in o or "disconnect" in o


async def test_unpaced_publisher_loses_and_corrupts_nothing(cproxy: FakeCProxy) -> None:
    n = 10_000
    pub = await connect(cproxy.address, 0, max_buffered=n + 1, max_buffered_bytes=4 << 20)
    for i in range(n):  # no drain, no yield: the client paces by itself
        pub.send(CLS, body(i))
    pub.send(CLS, b"END")
    report = await cproxy.report(end_or_failure)
    expected = hashlib.sha256(b"\n".join(body(i) for i in range(n))).hexdigest()
    assert report == {"end": {"n": n, "sha256": expected, "classes": [CLS], "undersize": 0}}, (
        "every message whole, once, in order, nothing split, nobody disconnected"
    )
    assert pub.stats().proxy == "other"  # no mark in CREATE_RESULT: a C proxy
    assert pub.stats().interest is None  # a C proxy tells nobody who listens: send() queues
    await pub.close()


async def test_paced_writes_one_frame_per_loop_pass(cproxy: FakeCProxy) -> None:
    pub = await connect(cproxy.address, 0)
    for i in range(20):
        pub.send(CLS, body(i))
    assert pub.stats().sent == 1, "one frame written in this pass, the rest wait"
    await pub.drain(confirm=True)  # nothing is confirmable with mask 0: returns once written
    assert pub.stats().sent == 20
    pub.send(CLS, b"END")
    assert (await cproxy.report(end_or_failure))["end"]["n"] == 20
    await pub.close()


async def test_drain_confirm_on_a_c_proxy(cproxy: FakeCProxy) -> None:
    client = await connect(cproxy.address, CLS, on_message=lambda *_: None)
    for i in range(300):
        client.send(CLS, body(i))
    assert await client.drain(confirm=True, timeout=30) == 0
    stats = client.stats()
    assert (stats.confirmed, stats.awaiting_confirmation, stats.unconfirmed) == (300, 0, 0)
    await client.close()


def smd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smdbus", *args], capture_output=True, text=True, timeout=60
    )


async def test_smd_send_count_100_confirms_on_a_c_proxy(cproxy: FakeCProxy) -> None:
    got: list[bytes] = []
    sub = await connect(cproxy.address, CLS, on_message=lambda c, t, p: got.append(p))
    done = await asyncio.to_thread(
        smd, "send", "user4", "hello", "--count", "100", "--socket", cproxy.address
    )
    assert done.returncode == 0, done.stderr
    # exit 0 means every message came back to smd send; the C proxy sent each to us
    # in the same pass, so they are on our socket already
    deadline = time.monotonic() + 10
    while len(got) < 100 and time.monotonic() < deadline:
        await asyncio.sleep(0.005)  # bounded poll for what the other process sent
    assert got == [b"hello"] * 100
    await sub.close()


def test_smd_send_names_the_shortfall() -> None:
    proxy = FakeCProxy("--echo-limit", "60")  # passes on 60, drops the rest silently
    try:
        done = smd(
            "send", "user4", "hello", "--count", "100", "--socket", proxy.address, "--timeout", "1"
        )
    finally:
        proxy.stop()
    assert done.returncode == 1
    assert "40 of 100 messages not confirmed within 1 s" in done.stderr
