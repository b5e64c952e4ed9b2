"""Benchmark: the proxy's memory with subscribers that never read (issue 10, point 7).

    .venv/bin/python bench/proxy_memory.py [--subscribers 300] [--seconds 10] [--src DIR]

A ``smd proxy`` process with its default limits; ``--subscribers`` connections
that subscribe to everything and never read; one publisher writing 200-byte
messages as fast as the proxy takes them, for ``--seconds``. Printed: the
proxy's peak RSS (VmHWM), its RSS at the end, and its counters (``smd peers``'s
summary). ``--src`` runs another checkout's proxy (its ``src`` directory), to
compare with the code before a change in the same run conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from smdbus.commands._peers import query_peers
from smdbus.wire import stream_type_frame, tx_payload_frame


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _publish(address: str, stop: threading.Event, sent: list[int]) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(address)
    s.sendall(stream_type_frame("_lws_smd", 0, os.getpid()))
    if len(s.recv(32, socket.MSG_WAITALL)) != 32:
        raise SystemExit("the proxy refused the publisher")
    pad = b"x" * 190
    batch = b"".join(tx_payload_frame(1 << 24, 0, b"%09d" % i + pad) for i in range(100))
    while not stop.is_set():
        s.sendall(batch)
        sent[0] += 100
    s.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--src", default=None, help="the src directory of the proxy to run")
    ap.add_argument("--max-outbound", type=int, default=None, help="passed to smd proxy")
    args = ap.parse_args()
    address = f"\0smdbus-bench-mem-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    cmd = [sys.executable, "-m", "smdbus", "proxy", "--socket", "@" + address[1:]]
    if args.max_outbound is not None:
        cmd += ["--max-outbound", str(args.max_outbound)]
    proxy = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proxy.stdout is not None
        proxy.stdout.readline()  # "listening on"
        base = _status(proxy.pid, "VmRSS")
        subs = []
        for _ in range(args.subscribers):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(address)
            s.sendall(stream_type_frame("_lws_smd", 0xFFFFFFFF, os.getpid()))
            subs.append(s)  # never read
        stop = threading.Event()
        sent = [0]
        pub = threading.Thread(target=_publish, args=(address, stop, sent), daemon=True)
        t0 = time.monotonic()
        pub.start()
        time.sleep(args.seconds)
        stop.set()
        elapsed = time.monotonic() - t0
        peak = _status(proxy.pid, "VmHWM")
        end = _status(proxy.pid, "VmRSS")
        try:
            _, summary = asyncio.run(query_peers(address, closed=False, timeout=30))
            stats = summary.get("stats", {})
        except ConnectionError as exc:  # a proxy too busy to answer its control stream
            stats = {"no answer": str(exc)}
        for s in subs:
            s.close()
        pub.join(5)
        print(
            f"{args.subscribers} subscribers never reading, {elapsed:.1f} s of publishing "
            f"({sent[0] / elapsed:,.0f} msgs/s taken by the proxy):"
        )
        print(
            f"  proxy RSS: at start {base / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, "
            f"at the end {end / 2**20:.1f} MiB"
        )
        keep = (
            "connections",
            "outbound",
            "outbound_peak",
            "published",
            "stall_disconnects",
            "slow_disconnects",
            "budget_disconnects",
            "dropped_messages",
            "log_suppressed",
        )
        print("  " + json.dumps({k: v for k, v in stats.items() if k in keep or k == "no answer"}))
    finally:
        proxy.terminate()
        try:
            proxy.wait(30)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
