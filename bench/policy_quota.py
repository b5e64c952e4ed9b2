"""Benchmark: a uid flooding the bus is held to its publish quota; another uid keeps its rate.

    sudo .venv/bin/python bench/policy_quota.py [--quota 2000] [--rate 1000] [--seconds 3]

Runs (as root) a proxy whose policy gives every uid but root ``--quota``
messages a second, a subscriber of both classes (root, here), and, each as
its own uid through ``setpriv``:

- a *paced* publisher (uid 65533) sending USER0 at ``--rate`` a second for
  ``--seconds``, alone first (the anchor), then beside
- a *flooder* (uid 65534) writing USER1 frames as fast as the socket takes
  them, for as long as the paced publisher runs.

Printed: the paced publisher's achieved rate (messages over the time its
sends took) alone and with the flooder, the ratio (goal >= 0.9, issue 12),
and the flooder's delivered rate against its quota. Every message sent is
checked to arrive (held, never dropped). Clients are raw C-style writers
(stdlib only), as a C program would be.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import time

from smdbus.classes import user_class
from smdbus.policy import load_access_policy, parse_access
from smdbus.proxy import Proxy, ProxySettings
from smdbus.wire import SMD_STREAMTYPE, WireStream, stream_type_frame, tx_payload_frame

PACED, FLOOD = user_class(0), user_class(1)
CHILD = r"""
import socket, sys, time
address, mode = sys.argv[1], sys.argv[4]
hello, frame = bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_UNIX)
s.connect("\0" + address)
s.sendall(hello)
s.recv(64)  # CREATE_RESULT and CONNSTATEs: the stream exists
if mode == "paced":
    rate, n = float(sys.argv[5]), int(sys.argv[6])
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        s.sendall(frame)
    print(n, time.monotonic() - start, flush=True)
else:
    batch, sent = frame * 64, 0
    stop = time.monotonic() + float(sys.argv[5])
    while time.monotonic() < stop:
        s.sendall(batch)
        sent += 64
    print(sent, flush=True)
sys.stdin.read()  # stay connected until told (what was sent is still being read)
"""


async def child(address: str, uid: int, mode: str, *args: str) -> asyncio.subprocess.Process:
    hello = stream_type_frame(SMD_STREAMTYPE, 0, 0).hex()
    frame = tx_payload_frame(PACED if mode == "paced" else FLOOD, 0, b"x" * 100).hex()
    return await asyncio.create_subprocess_exec(
        *("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"),
        *(sys.executable, "-c", CHILD, address[1:], hello, frame, mode, *args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


async def scenario(args: argparse.Namespace, flood: bool) -> dict[str, float]:
    address = f"\0smdbench-quota-{os.getpid()}-{time.monotonic_ns()}"
    top = {"publish_rate": args.quota, "publish_burst": max(1, int(args.quota // 10))}
    policy = load_access_policy(parse_access({"dir": "", "quota": {"user": top}}, "bench"), {0})
    got = {PACED: 0, FLOOD: 0}
    async with Proxy(ProxySettings(address=address), access=policy):
        sub = await WireStream.connect(address, PACED | FLOOD)
        n = int(args.rate * args.seconds)

        async def count() -> None:
            async for msg in sub:
                got[msg.cls] += 1

        counter = asyncio.create_task(count())
        flooder = await child(address, 65534, "flood", str(args.seconds)) if flood else None
        paced = await child(address, 65533, "paced", str(args.rate), str(n))
        assert paced.stdout is not None
        sent, took = (await paced.stdout.readline()).split()
        flooded = during = 0
        if flooder is not None:
            assert flooder.stdout is not None
            flooded = int(await flooder.stdout.readline())
            during = got[FLOOD]  # delivered while it flooded
        async with asyncio.timeout(120):  # everything sent arrives: held, never dropped
            while got[PACED] < n or got[FLOOD] < flooded:
                await asyncio.sleep(0.05)
        for proc in (paced, flooder):
            if proc is not None:
                proc.kill()
                await proc.wait()
        counter.cancel()
        await sub.close()
    return {
        "paced_rate": int(sent) / float(took),
        "flooded": float(flooded),
        "flood_rate": during / args.seconds,
    }


async def main_async(args: argparse.Namespace) -> None:
    alone = await scenario(args, flood=False)
    beside = await scenario(args, flood=True)
    ratio = beside["paced_rate"] / alone["paced_rate"]
    print(f"quota {args.quota:g} msgs/s per uid; paced publisher at {args.rate:g} msgs/s")
    print(f"paced alone:        {alone['paced_rate']:8.0f} msgs/s")
    print(f"paced with flooder: {beside['paced_rate']:8.0f} msgs/s  ({ratio:.2f} of alone)")
    print(
        f"flooder: delivered at {beside['flood_rate']:.0f} msgs/s while flooding (quota "
        f"{args.quota:g}); {beside['flooded']:.0f} written, all delivered (held, none dropped)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quota", type=float, default=2000.0, help="publish_rate of every user")
    ap.add_argument("--rate", type=float, default=1000.0, help="the paced publisher's rate")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    if os.getuid() != 0:
        print("needs root (the publishers run as other uids through setpriv)", file=sys.stderr)
        return 2
    logging.getLogger("smdbus.proxy").setLevel(logging.ERROR)  # the quota trips, expected
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
