"""Benchmark: a paced publisher's longest gap through the proxy beside floods, on this machine.

    .venv/bin/python bench/proxy_faults.py fair [--flooders 16] [--seconds 10] [--rate 1000]
    .venv/bin/python bench/proxy_faults.py control [--idle 1000] [--queries 50] [--seconds 10]

Both scenarios run our proxy in its own process and one *paced* publisher
(a raw socket, 1 000 msgs/s of USER1 on an absolute schedule, its send time
in each payload) whose messages a raw subscriber takes; reported are how
many got through, the longest gap between two consecutive arrivals and the
p50/p99 of (arrival - send), all CLOCK_MONOTONIC. To tell the machine's
stalls from the proxy's, also: the longest gap between two consecutive
sends, between their admissions (the proxy's timestamp: when it put each
on its bus), the most the proxy added to a gap (admission gap minus send
gap), how late the publisher woke against its schedule (this machine, or a
send that blocked before) and its longest blocked send (the proxy not
reading it). Goal (issue 10): gaps under 100 ms.

- ``fair``: beside ``--flooders`` processes that write USER0 as fast as the
  proxy takes it (raw sockets, blocking ``sendall``), and one subscriber
  that counts their messages: the paced publisher competes with them for
  the bus queue. Also reported: the flooders' total rate and each one's
  share (min/max), which admission in turn should keep even.
- ``control``: beside ``--idle`` idle connections, one tool sends
  ``--queries`` ``{"op":"peers"}`` queries in one write on the control
  stream, ``--rounds`` times; with ``--asker-leaves`` it hangs up at once
  without reading. Also reported: the replies it got and the proxy's
  ``control_*`` counters.

To compare with another tree, put its ``src`` first: ``PYTHONPATH=/other/src``
(the proxy process imports smdbus from there).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import struct
import sys
import time
from typing import Any

from _anchors_harness import MP, percentile
from proxy import SmdBus
from smdbus.classes import user_class
from smdbus.proxy import CONTROL_STREAMTYPE
from smdbus.wire import Decoder, Role, RxPayload, parse_address, stream_type_frame
from smdbus.wire import tx_payload_frame as tx
from smdbus.wire._control import GREETING

FLOOD = int(user_class(0))
PACED = int(user_class(1))
_SEQ = struct.Struct(">IQ")  # paced payload: seq, send time (ns)
_CONTROL_MAX_PAYLOAD = 0xFFFF - 32  # control replies are JSON, larger than SMD bodies


def _open(address: str, mask: int, streamtype: str = "_lws_smd") -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(parse_address(address))
    sock.sendall(stream_type_frame(streamtype, mask, os.getpid()))
    got = b""
    while len(got) < len(GREETING):  # CREATE_RESULT and three CONNSTATEs
        chunk = sock.recv(len(GREETING) - len(got))
        if not chunk:
            raise ConnectionError("proxy hung up")
        got += chunk
    return sock


# -- the paced publisher and its subscriber --------------------------------------


def _paced_publisher(address: str, count: int, rate: float, go: Any, out: Any) -> None:
    sock = _open(address, 0)
    go.wait()
    start = time.monotonic_ns()
    step = int(1e9 / rate)
    late = blocked = 0
    for seq in range(count):
        due = start + seq * step
        while (now := time.monotonic_ns()) < due:
            time.sleep(min(0.0005, (due - now) / 1e9))
        before = time.monotonic_ns()
        late = max(late, before - due)  # this machine, or a send that blocked before it
        sock.sendall(tx(PACED, 0, _SEQ.pack(seq, before) + bytes(88)))
        blocked = max(blocked, time.monotonic_ns() - before)  # the proxy not reading it
    sock.close()
    out.put(("publisher", {"late_ms": late / 1e6, "blocked_ms": blocked / 1e6}))


def _paced_subscriber(address: str, count: int, seconds: float, ready: Any, out: Any) -> None:
    sock = _open(address, PACED)
    sock.settimeout(0.5)
    decoder = Decoder(Role.CLIENT)
    arrivals: list[int] = []
    latencies: list[int] = []
    sends: list[int] = []
    admitted: list[int] = []  # the proxy's timestamp: when it put the message on its bus (µs)
    ready.set()
    deadline = time.monotonic() + seconds + 10
    while len(arrivals) < count and time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            continue
        if not data:
            break
        now = time.monotonic_ns()
        for event in decoder.feed(data):
            if isinstance(event, RxPayload):
                _, sent = _SEQ.unpack_from(event.payload)
                arrivals.append(now)
                latencies.append(now - sent)
                sends.append(sent)
                admitted.append(event.timestamp_us * 1000)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    send_gaps = [b - a for a, b in itertools.pairwise(sends)]
    admit_gaps = [b - a for a, b in itertools.pairwise(admitted)]
    added = [a - s for a, s in zip(admit_gaps, send_gaps, strict=True)]
    out.put(
        (
            "paced",
            {
                "received": len(arrivals),
                "longest_gap_ms": max(gaps, default=0) / 1e6,
                "send_gap_ms": max(send_gaps, default=0) / 1e6,
                "admission_gap_ms": max(admit_gaps, default=0) / 1e6,
                "proxy_added_ms": max(added, default=0) / 1e6,
                "p50_ms": percentile(latencies, 50) / 1e6 if latencies else 0.0,
                "p99_ms": percentile(latencies, 99) / 1e6 if latencies else 0.0,
            },
        )
    )


# -- fair: flooders ----------------------------------------------------------------


def _flooder(address: str, index: int, go: Any, stop: Any) -> None:
    sock = _open(address, 0)
    sock.settimeout(0.2)
    burst = b"".join(tx(FLOOD, 0, bytes([index]) + bytes(99)) for _ in range(500))
    go.wait()
    while not stop.is_set():
        try:
            sock.sendall(burst)
        except TimeoutError:  # held by the proxy: look at the stop flag now and then
            continue
    sock.close()


def _flood_sink(address: str, flooders: int, ready: Any, stop: Any, out: Any) -> None:
    sock = _open(address, FLOOD)
    sock.settimeout(0.2)
    decoder = Decoder(Role.CLIENT)
    counts = [0] * flooders
    ready.set()
    first = last = 0
    while not stop.is_set():
        try:
            data = sock.recv(1 << 18)
        except TimeoutError:
            continue
        if not data:
            break
        last = time.monotonic_ns()
        first = first or last
        for event in decoder.feed(data):
            if isinstance(event, RxPayload):
                counts[event.payload[0]] += 1
    out.put(("flood", {"counts": counts, "seconds": (last - first) / 1e9}))


# -- control: idle connections and a querying tool ------------------------------


def _idle(address: str, n: int, ready: Any, stop: Any) -> None:
    socks = [_open(address, 0) for _ in range(n)]
    ready.set()
    stop.wait()
    for s in socks:
        s.close()


def _asker(address: str, queries: int, rounds: int, leaves: bool, go: Any, out: Any) -> None:
    go.wait()
    replies = errors = 0
    query = tx(0, 0, b'{"op":"peers"}') * queries
    for _ in range(rounds):
        sock = _open(address, 0, CONTROL_STREAMTYPE)
        sock.sendall(query)
        if leaves:
            sock.close()
            time.sleep(0.5)
            continue
        sock.settimeout(5)
        decoder = Decoder(Role.CLIENT, max_payload=_CONTROL_MAX_PAYLOAD)
        ends = 0
        while ends < queries:
            try:
                data = sock.recv(1 << 18)
            except TimeoutError:
                break
            if not data:
                break
            for event in decoder.feed(data):
                if isinstance(event, RxPayload):
                    reply = json.loads(event.payload)
                    replies += 1
                    errors += "error" in reply
                    ends += bool(reply.get("end"))
        sock.close()
    out.put(("asker", {"replies": replies, "errors": errors}))


def _stats(address: str) -> dict[str, Any]:
    sock = _open(address, 0, CONTROL_STREAMTYPE)
    sock.sendall(tx(0, 0, b'{"op":"stats"}'))
    sock.settimeout(5)
    decoder = Decoder(Role.CLIENT, max_payload=_CONTROL_MAX_PAYLOAD)
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return {}
        for event in decoder.feed(data):
            if isinstance(event, RxPayload):
                sock.close()
                stats: dict[str, Any] = json.loads(event.payload).get("stats", {})
                return stats


# -- driver ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    system = SmdBus()
    system.start()
    procs: list[Any] = []
    out: Any = MP.Queue()
    go, stop, ready = MP.Event(), MP.Event(), MP.Event()
    count = int(args.rate * args.seconds)
    try:
        sub_ready = MP.Event()
        procs.append(
            MP.Process(
                target=_paced_subscriber, args=(system.address, count, args.seconds, sub_ready, out)
            )
        )
        if args.scenario == "fair":
            sink_args = (system.address, args.flooders, ready, stop, out)
            procs.append(MP.Process(target=_flood_sink, args=sink_args))
            procs += [
                MP.Process(target=_flooder, args=(system.address, i, go, stop))
                for i in range(args.flooders)
            ]
        else:
            procs.append(MP.Process(target=_idle, args=(system.address, args.idle, ready, stop)))
            procs.append(
                MP.Process(
                    target=_asker,
                    args=(system.address, args.queries, args.rounds, args.asker_leaves, go, out),
                )
            )
        procs.append(
            MP.Process(target=_paced_publisher, args=(system.address, count, args.rate, go, out))
        )
        for p in procs:
            p.start()
        if not (sub_ready.wait(30) and ready.wait(60)):
            raise RuntimeError("the clients did not connect")
        go.set()
        results: dict[str, Any] = {}
        results.update([out.get(timeout=args.seconds + 30)])  # the paced subscriber's
        stop.set()
        expected = 3  # the paced subscriber's and publisher's, and the sink's or the asker's
        while len(results) < expected:
            results.update([out.get(timeout=30)])
        results["proxy"] = {
            k: v
            for k, v in _stats(system.address).items()
            if k.startswith(("control", "held", "published", "waiting"))
        }
        results["sent"] = count
        return results
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        system.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=("fair", "control"))
    ap.add_argument("--seconds", type=float, default=10.0, help="paced run length")
    ap.add_argument("--rate", type=float, default=1000.0, help="paced rate, msgs/s")
    ap.add_argument("--flooders", type=int, default=16, help="fair: flooding publishers")
    ap.add_argument("--idle", type=int, default=1000, help="control: idle connections")
    ap.add_argument("--queries", type=int, default=50, help="control: queries per write")
    ap.add_argument("--rounds", type=int, default=5, help="control: writes of queries")
    ap.add_argument("--asker-leaves", action="store_true", help="control: hang up without reading")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    results = run(args)
    if args.json:
        print(json.dumps(results))
        return 0
    paced = results["paced"]
    print(
        f"paced {args.rate:g} msgs/s for {args.seconds:g} s: {paced['received']} of "
        f"{results['sent']} through, longest gap {paced['longest_gap_ms']:.1f} ms, "
        f"p50 {paced['p50_ms']:.2f} ms, p99 {paced['p99_ms']:.2f} ms\n"
        f"  longest gap between its sends {paced['send_gap_ms']:.1f} ms, "
        f"between its admissions {paced['admission_gap_ms']:.1f} ms, "
        f"added by the proxy {paced['proxy_added_ms']:.1f} ms; the publisher woke up to "
        f"{results['publisher']['late_ms']:.1f} ms late and was blocked in a send up to "
        f"{results['publisher']['blocked_ms']:.1f} ms"
    )
    if "flood" in results:
        counts = results["flood"]["counts"]
        secs = results["flood"]["seconds"] or 1.0
        print(
            f"{len(counts)} flooders: {sum(counts) / secs:,.0f} msgs/s in all; "
            f"each {min(counts) / secs:,.0f}-{max(counts) / secs:,.0f} msgs/s"
        )
    if "asker" in results:
        print(f"asker: {results['asker']['replies']} replies, {results['asker']['errors']} errors")
    print("proxy:", json.dumps(results["proxy"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
