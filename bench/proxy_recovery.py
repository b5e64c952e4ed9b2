"""Benchmark: how the proxy and the client recover from a peer that stops, on this machine.

    .venv/bin/python bench/proxy_recovery.py stopped [--messages 30000] [--rate 20000]
    .venv/bin/python bench/proxy_recovery.py reconnect [--rounds 5]

These are the figures that tests/test_proxy_processes.py and tests/test_client_proxy.py
used to assert as timings; the tests now assert the behaviour (nothing lost, the stopped
peer disconnected and counted, the client back with every accepted message) and the
figures live here, measured against an anchor taken in the same run.

- ``stopped``: a paced publisher (``--rate`` msgs/s, 100-byte USER... payloads on class
  NETWORK) to two healthy subscribers, through our proxy in its own process with small
  bounds (high water 64 KiB, buffer 1 MiB, stall grace 20 ms, stall timeout 1 s), first
  alone (the anchor) and then beside a SIGSTOPped subscriber. Reported: each run's rate
  at the healthy subscribers and the ratio (goal: >= 0.9), the longest gap between two
  arrivals, and the proxy's RSS growth while the stopped one is held.
- ``reconnect``: a client with the default reconnect delay (1 s, as the C proxy's
  clients); the proxy is killed with SIGKILL and started again at once. Reported per
  round and as the median: the seconds from the restart to the client's ``connected``
  (goal: about the 1 s delay, under 1.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from _anchors_harness import MP

STRICT = (
    "--high-water", "65536", "--max-buffer", "1048576",
    "--stall-grace", "0.02", "--stall-timeout", "1.0",
)  # fmt: skip
NETWORK = 4


class ProxyProcess:
    """``smd proxy`` in its own process on an abstract address."""

    def __init__(self, *options: str) -> None:
        self.address = f"@smdbench-recovery-{uuid.uuid4().hex[:10]}"
        self.options = options
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "smdbus", "proxy", "--socket", self.address, *self.options]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the proxy did not start: {line!r}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def rss_kib(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for row in f:
                if row.startswith("VmRSS:"):
                    return int(row.split()[1])
        raise RuntimeError("no VmRSS")


# -- stopped: healthy subscribers beside a stopped one -----------------------------


def _subscriber(address: str, n: int, ready: Any, out: Any) -> None:
    from smdbus.wire import WireStream

    async def main() -> None:
        s = await WireStream.connect(address, NETWORK)
        ready.set()
        first = prev = gap = 0.0
        for i in range(n):
            await s.receive()
            now = time.monotonic()
            if i == 0:
                first = prev = now
            gap, prev = max(gap, now - prev), now
        out.put({"rate": n / (prev - first), "max_gap_ms": gap * 1000})
        await s.close()

    asyncio.run(main())


def _publisher(address: str, n: int, rate: float, go: Any) -> None:
    from smdbus.wire import WireStream

    async def main() -> None:
        s = await WireStream.connect(address, 0)
        go.wait()
        pad = b"x" * 90
        for i in range(n):  # paced without catching up: time held back is lost
            s.send_nowait(NETWORK, b"%d:" % i + pad)
            if i % 100 == 99:
                await s.drain()
                await asyncio.sleep(100 / rate)
        await s.drain()
        await s.close()

    asyncio.run(main())


def _fanout(proxy: ProxyProcess, n: int, rate: float, stop_one: bool) -> dict[str, Any]:
    out: Any = MP.Queue()
    go = MP.Event()
    readies = [MP.Event() for _ in range(3)]
    subs = [
        MP.Process(target=_subscriber, args=(proxy.address, n, readies[i], out)) for i in (0, 1)
    ]
    stopped = MP.Process(target=_subscriber, args=(proxy.address, n, readies[2], MP.Queue()))
    procs = [*subs, *([stopped] if stop_one else [])]
    for p in procs:
        p.start()
    for ready in readies[: len(procs)]:
        if not ready.wait(30):
            raise RuntimeError("a subscriber did not connect")
    if stop_one:
        assert stopped.pid is not None
        os.kill(stopped.pid, signal.SIGSTOP)
    rss = proxy.rss_kib()
    pub = MP.Process(target=_publisher, args=(proxy.address, n, rate, go))
    pub.start()
    go.set()
    results = [out.get(timeout=120) for _ in subs]
    growth = proxy.rss_kib() - rss
    pub.join(30)
    if stop_one:
        assert stopped.pid is not None
        os.kill(stopped.pid, signal.SIGCONT)
        stopped.kill()
    for p in subs:
        p.join(10)
    return {
        "rate": statistics.mean(r["rate"] for r in results),
        "max_gap_ms": max(r["max_gap_ms"] for r in results),
        "rss_growth_kib": growth,
    }


def stopped(args: argparse.Namespace) -> dict[str, Any]:
    proxy = ProxyProcess(*STRICT)
    proxy.start()
    try:
        alone = _fanout(proxy, args.messages, args.rate, stop_one=False)
        beside = _fanout(proxy, args.messages, args.rate, stop_one=True)
    finally:
        proxy.kill()
    return {"alone": alone, "beside_stopped": beside, "ratio": beside["rate"] / alone["rate"]}


# -- reconnect: the proxy killed and started again ---------------------------------


async def _reconnect_once(proxy: ProxyProcess) -> float:
    from smdbus.client import ClientState, connect

    c = await connect(proxy.address, NETWORK)  # the default reconnect delay
    proxy.kill()
    while c.state is ClientState.READY:
        await asyncio.sleep(0.001)
    proxy.start()
    restarted = time.monotonic()
    while not c.connected:
        await asyncio.sleep(0.001)
    took = time.monotonic() - restarted
    await c.close()
    return took


def reconnect(args: argparse.Namespace) -> dict[str, Any]:
    proxy = ProxyProcess()
    proxy.start()
    try:
        rounds = [asyncio.run(_reconnect_once(proxy)) for _ in range(args.rounds)]
    finally:
        proxy.kill()
    return {"rounds_s": [round(r, 3) for r in rounds], "median_s": statistics.median(rounds)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=("stopped", "reconnect"))
    ap.add_argument("--messages", type=int, default=30_000, help="stopped: messages per run")
    ap.add_argument("--rate", type=float, default=20_000.0, help="stopped: paced msgs/s")
    ap.add_argument("--rounds", type=int, default=5, help="reconnect: kill/start rounds")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    result = stopped(args) if args.scenario == "stopped" else reconnect(args)
    if args.json:
        print(json.dumps(result))
    elif args.scenario == "stopped":
        a, b = result["alone"], result["beside_stopped"]
        print(f"healthy subscribers alone:           {a['rate']:8.0f} msg/s (anchor)")
        print(
            f"beside a SIGSTOPped subscriber:      {b['rate']:8.0f} msg/s = "
            f"{result['ratio']:.2f}x (goal >= 0.9x), longest gap {b['max_gap_ms']:.0f} ms, "
            f"proxy RSS +{b['rss_growth_kib']} KiB"
        )
    else:
        print(
            f"reconnect after SIGKILL and restart: median {result['median_s']:.3f} s "
            f"(rounds {result['rounds_s']}; the client's delay is 1 s, goal < 1.5 s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
