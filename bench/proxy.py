"""Benchmark: the smdbus proxy against ZeroMQ, mosquitto and a floor, in one run.

    .venv/bin/python bench/proxy.py [--messages 50000] [--repeat 3] [--receive iter]
                                    [--policy 20] [--monitor] [--loop uvloop] [--json]

What is measured (Python clients everywhere, every client its own process):

- throughput: 1 publisher -> 4 subscribers, 100-byte messages, lossless
  (every subscriber must get every message, in order); msgs/s and
  deliveries/s from the publisher's first send to the last subscriber's last
  message;
- latency: the same topology paced at 1 000 msgs/s; p50/p99 of
  (arrival - send), both CLOCK_MONOTONIC;
- fan-out (smdbus only): 1 000 connected subscribers, the proxy's RSS and the
  time for one message to reach all of them.

Our subscribers take messages with ``on_message`` (the client's documented
fast path, as the mosquitto anchor's paho callback); ``--receive iter`` uses
``async for`` instead (a ``Message`` and a coroutine step per message). The
row ``smdbus-lean`` is the same proxy with blocking clients on the lean
receive path (``BlockingStream.dispatch``: no asyncio, no object per message)
and ``BlockingStream.send``, as the floor's clients are blocking.

Anchors: ZeroMQ ``zmq.proxy(XSUB, XPUB)`` over ``ipc://`` with high-water
marks 0, mosquitto on a Unix socket with ``max_queued_messages 0``, and the
floor: a minimal asyncio relay with blocking Python clients (``_anchors.Floor``).
Figures are medians over ``--repeat`` runs; ratios are against the anchor in
the same run. The broker's CPU per message is its processes' on-CPU time
(``/proc/PID/task/*/schedstat``, nanoseconds, every thread: ZeroMQ's I/O
threads included) over the throughput runs and, separately, the paced runs.

Goals (issue 17), printed with "met" / "not met": the proxy's CPU per message
<= ZeroMQ's at full speed and at 1 000 msgs/s; throughput 1 -> 4 >= 1.0x
ZeroMQ, lossless; at 1 000 msgs/s p50 <= 1.3x and p99 <= 1.5x the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import socket
import subprocess
import sys
import time
from typing import Any

from _anchors import Floor, Mosquitto, ZeroMQ
from _anchors_harness import (
    MP,
    Plan,
    RunResult,
    System,
    Tally,
    median,
    percentile,
    publish_async,
    publish_sync,
    run_once,
)
from smdbus.classes import user_class

CLS = user_class(0)
PROXY_SCRIPT = """
import asyncio, sys
from smdbus.proxy import Proxy, ProxySettings
from smdbus.wire import parse_address
sys.path.insert(0, sys.argv[3])
from proxy import bench_access
if sys.argv[5] == "uvloop":
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
async def main():
    settings = ProxySettings(address=parse_address(sys.argv[1]), max_connections=4096)
    access = bench_access(int(sys.argv[2]))
    async with Proxy(settings, **({"access": access} if access is not None else {})) as p:
        if sys.argv[4] == "1":  # a tap on every class, as the web view's
            p.monitors.tap(0xFFFFFFFF, lambda *m: None)
        await p.serve_forever()
asyncio.run(main())
"""


def bench_access(rules: int) -> Any:
    """``--policy N``: N rules, and nobody privileged, so the bench's clients (root) are
    checked as any user is (their masks from the rules, their uid's quotas: set high, so
    the figure is the cost of checking, not of a limit). 0: the defaults."""
    if not rules:
        return None
    from smdbus.policy import load_access_policy, parse_access

    table: list[dict[str, Any]] = [
        {"classes": "USER0", "send": ["0", "@0"], "receive": ["0"]},
        {"classes": "SYSTEM_STATE|NETWORK", "send": ["@0"]},
    ]
    for i in range(rules - len(table)):
        bit = 4 + i % 20  # bits 4..23: not a class the bench sends
        table.append({"classes": hex(1 << bit), "send": [str(1000 + i)], "receive": ["*"]})
    top = {"publish_rate": 1_000_000, "publish_burst": 1_000_000, "control_rate": 1000}
    cfg = {"dir": "", "rule": table[:rules], "quota": {"user": top}}
    return load_access_policy(parse_access(cfg, "bench"), privileged=())


def _answers(address: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("\0" + address[1:])
        return True
    except OSError:
        return False
    finally:
        s.close()


class SmdBus:
    """Our proxy in its own process; asyncio clients (``smdbus.client``)."""

    name = "smdbus"

    def __init__(
        self,
        receive: str = "callback",
        policy: int = 0,
        monitor: bool = False,
        loop: str = "asyncio",
    ) -> None:
        self.address = f"@smdbench-{os.getpid()}-{time.monotonic_ns()}"
        self.receive = receive
        self.policy = policy
        self.monitor = monitor
        self.loop = loop
        if receive == "lean":
            self.name = "smdbus-lean"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                PROXY_SCRIPT,
                self.address,
                str(self.policy),
                here,
                str(int(self.monitor)),
                self.loop,
            ]
        )
        deadline = time.monotonic() + 10
        while not _answers(self.address):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("smdbus proxy did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    def broker_pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def run_publisher(self, plan: Plan) -> None:
        if self.receive == "lean":
            from smdbus.wire import BlockingStream

            stream = BlockingStream.connect(self.address, 0)

            class Pub:
                def send(self, payload: bytes) -> None:
                    stream.send(CLS, payload, 30.0)

                def flush(self) -> None:
                    pass

                def close(self) -> None:
                    stream.close()

            publish_sync(plan, Pub())
            return

        from smdbus.client import connect

        async def main() -> None:
            c = await connect(self.address, 0, max_buffered=4096, max_buffered_bytes=1 << 20)
            await publish_async(plan, functools.partial(c.send, CLS), c.drain)
            await c.close(timeout=30)

        asyncio.run(main())

    def run_subscriber(self, index: int, plan: Plan) -> None:
        if self.receive == "lean":  # blocking, BlockingStream.dispatch: the lean receive path
            from smdbus.wire import BlockingStream

            tally = Tally(index, plan)
            more = [True]

            def sink(cls: int, ts: int, payload: bytes) -> None:
                if not tally.feed(payload):
                    more[0] = False

            with BlockingStream.connect(self.address, CLS) as stream:
                while more[0]:
                    stream.dispatch(sink, None)
            return

        from smdbus.client import connect

        async def main() -> None:
            tally = Tally(index, plan)
            feed = tally.feed
            if self.receive == "iter":  # async for: a Message per message, a coroutine step
                c = await connect(self.address, CLS)
                async for m in c:
                    if not feed(m.payload):
                        break
            else:  # on_message, the documented fast path (as paho's callback for mosquitto)
                done = asyncio.get_running_loop().create_future()

                def on_message(cls: int, ts: int, payload: bytes) -> None:
                    if not feed(payload) and not done.done():
                        done.set_result(None)

                c = await connect(self.address, CLS, on_message=on_message)
                await done
            await c.close(timeout=0)

        asyncio.run(main())


# -- fan-out: 1 000 subscribers ------------------------------------------------


def _fanout_subscribers(address: str, n: int, probes: int, reports: Any) -> None:
    """``n`` connections in one process; report each probe's last arrival."""
    from smdbus.client import Client

    async def main() -> None:
        last: dict[int, int] = {}
        counts: dict[int, int] = {}

        def on_message(cls: int, ts: int, payload: bytes) -> None:
            seq = payload[0]
            now = time.monotonic_ns()
            counts[seq] = counts.get(seq, 0) + 1
            if now > last.get(seq, 0):
                last[seq] = now

        clients = [Client(address, CLS, on_message=on_message) for _ in range(n)]
        await asyncio.gather(*(c.start() for c in clients))
        reports.put(("ready", n))
        while len(counts) < probes or any(v < n for v in counts.values()):
            await asyncio.sleep(0.005)
        reports.put(("done", last, counts))
        await asyncio.gather(*(c.close(timeout=0) for c in clients))

    asyncio.run(main())


def _fanout_publisher(address: str, probes: int, go: Any, reports: Any) -> None:
    from smdbus.client import connect

    async def main() -> None:
        c = await connect(address, 0)
        go.wait()
        sent: dict[int, int] = {}
        for seq in range(probes):
            sent[seq] = time.monotonic_ns()
            c.send(CLS, bytes([seq]) + bytes(99))
            await asyncio.sleep(0.2)
        reports.put(("sent", sent))
        await c.close()

    asyncio.run(main())


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fanout(subscribers: int = 1000, processes: int = 4, probes: int = 5) -> dict[str, float]:
    """Proxy RSS with ``subscribers`` connections and the time for one message to reach all."""
    system = SmdBus()
    system.start()
    try:
        rss_idle = _rss_kib(system.broker_pid())
        reports: Any = MP.Queue()
        go = MP.Event()
        per = subscribers // processes
        subs = [
            MP.Process(
                target=_fanout_subscribers, args=(system.address, per, probes, reports), daemon=True
            )
            for _ in range(processes)
        ]
        for p in subs:
            p.start()
        ready = 0
        while ready < per * processes:
            kind, n, *_ = reports.get(timeout=60)
            assert kind == "ready"
            ready += n
        rss_connected = _rss_kib(system.broker_pid())
        pub = MP.Process(
            target=_fanout_publisher, args=(system.address, probes, go, reports), daemon=True
        )
        pub.start()
        go.set()
        sent: dict[int, int] = {}
        lasts: list[dict[int, int]] = []
        while not sent or len(lasts) < processes:
            msg = reports.get(timeout=60)
            if msg[0] == "sent":
                sent = msg[1]
            elif msg[0] == "done":
                lasts.append(msg[1])
        rss_after = _rss_kib(system.broker_pid())
        for p in [pub, *subs]:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        spans = [(max(d[seq] for d in lasts) - sent[seq]) / 1e6 for seq in range(probes)]
        return {
            "subscribers": per * processes,
            "proxy_rss_idle_mib": rss_idle / 1024,
            "proxy_rss_connected_mib": rss_connected / 1024,
            "proxy_rss_after_mib": rss_after / 1024,
            "reach_all_ms_median": median(spans),
            "reach_all_ms_max": max(spans),
        }
    finally:
        system.stop()


# -- driver --------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    """On-CPU seconds of a process's live threads so far (``schedstat``: nanoseconds).

    /proc/PID/stat counts in 10 ms ticks, coarse beside a paced run's ~0.2 s.
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total / 1e9


def measure(
    system: System, args: argparse.Namespace
) -> tuple[list[RunResult], list[RunResult], float, float]:
    system.start()
    try:
        cpu = _cpu_s(system.broker_pid())
        tput = [
            run_once(
                system,
                count=args.messages,
                size=args.size,
                subscribers=args.subscribers,
                rate=None,
                timeout=args.timeout,
            )
            for _ in range(args.repeat)
        ]
        # the broker's CPU per message of the throughput runs: less at the mercy of
        # other load on the machine than msgs/s (what the proxy does, not when)
        cpu_us = (_cpu_s(system.broker_pid()) - cpu) * 1e6 / (args.messages * len(tput))
        cpu = _cpu_s(system.broker_pid())
        lat = [
            run_once(
                system,
                count=args.latency_messages,
                size=args.size,
                subscribers=args.subscribers,
                rate=args.rate,
                timeout=args.timeout,
            )
            for _ in range(args.repeat)
        ]
        # at 1 000 msgs/s the CPU per message is mostly per-wake-up cost: system calls
        # and loop passes (what issue 17's "one loop pass per read" is about)
        cpu_paced_us = (
            (_cpu_s(system.broker_pid()) - cpu) * 1e6 / (args.latency_messages * len(lat))
        )
    finally:
        system.stop()
    return tput, lat, cpu_us, cpu_paced_us


def summarize(
    tput: list[RunResult], lat: list[RunResult], cpu_us: float, cpu_paced_us: float
) -> dict[str, Any]:
    errors = [r.error for r in tput + lat if r.error]
    ok_t = [r for r in tput if r.error is None]
    ok_l = [r for r in lat if r.error is None]
    return {
        "msgs_per_s": median([r.msgs_per_s for r in ok_t]),
        "deliveries_per_s": median([r.deliveries_per_s for r in ok_t]),
        "p50_us": median([percentile(r.latencies_ns, 50) / 1000 for r in ok_l]),
        "p99_us": median([percentile(r.latencies_ns, 99) / 1000 for r in ok_l]),
        "broker_cpu_us_per_msg": cpu_us,
        "broker_cpu_us_per_msg_paced": cpu_paced_us,
        "out_of_order": sum(r.disorder for r in ok_t + ok_l),
        "runs": {"throughput": [r.msgs_per_s for r in ok_t]},
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=50_000, help="throughput run size")
    ap.add_argument("--latency-messages", type=int, default=2000, help="paced run size")
    ap.add_argument("--rate", type=float, default=1000.0, help="paced rate, msgs/s")
    ap.add_argument("--size", type=int, default=100, help="payload bytes")
    ap.add_argument("--subscribers", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    ap.add_argument("--fanout", type=int, default=1000, help="subscribers for fan-out; 0 skips")
    ap.add_argument(
        "--only",
        default="smdbus,smdbus-lean,floor,zeromq,mosquitto",
        help="systems to run, comma-separated",
    )
    ap.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the smdbus proxy's event loop (uvloop: the `fast` extra)",
    )
    ap.add_argument(
        "--receive",
        choices=("callback", "iter"),
        default="callback",
        help="smdbus subscribers: on_message callback (default) or async for",
    )
    ap.add_argument(
        "--policy",
        type=int,
        default=0,
        metavar="N",
        help="smdbus: an access policy of N rules, nobody privileged (0: the defaults)",
    )
    ap.add_argument(
        "--monitor",
        action="store_true",
        help="smdbus: a tap on every class in the proxy (senders attributed, as the web view's)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, args.fanout * 2 + 256):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    wanted = args.only.split(",")
    systems: list[System] = []
    if "smdbus" in wanted:
        systems.append(SmdBus(args.receive, args.policy, args.monitor, args.loop))
    if "smdbus-lean" in wanted:
        systems.append(SmdBus("lean", args.policy, args.monitor, args.loop))
    if "floor" in wanted:
        systems.append(Floor())
    if "zeromq" in wanted:
        systems.append(ZeroMQ())
    if "mosquitto" in wanted:
        why = Mosquitto.available()
        if why is None:
            systems.append(Mosquitto())
        elif not args.json:
            print(f"mosquitto skipped: {why}")

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {
            "messages": args.messages,
            "latency_messages": args.latency_messages,
            "rate": args.rate,
            "size": args.size,
            "subscribers": args.subscribers,
            "repeat": args.repeat,
            "smdbus_receive": args.receive,
            "smdbus_policy_rules": args.policy,
            "smdbus_monitor": args.monitor,
            "smdbus_loop": args.loop,
        },
        "systems": {},
    }
    for system in systems:
        if not args.json:
            print(f"measuring {system.name} ...", flush=True)
        results["systems"][system.name] = summarize(*measure(system, args))
    zmq = results["systems"].get("zeromq")
    if zmq and zmq["msgs_per_s"] == zmq["msgs_per_s"]:
        for s in results["systems"].values():
            s["vs_zeromq"] = s["msgs_per_s"] / zmq["msgs_per_s"]
    if args.fanout and "smdbus" in wanted:
        if not args.json:
            print(f"fan-out to {args.fanout} subscribers ...", flush=True)
        results["fanout"] = fanout(args.fanout)
    results["goals"] = goals(results["systems"])

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print()
    print(f"{args.subscribers} subscribers, {args.size}-byte messages, medians of {args.repeat}")
    print(
        f"{'system':<12} {'msgs/s':>10} {'deliv/s':>10} {'vs zmq':>7} "
        f"{'p50 us':>8} {'p99 us':>8} {'cpu us':>7} {'cpu paced':>9}  (latency and cpu paced "
        f"at {args.rate:g} msgs/s; cpu: the broker's per message)"
    )
    for name, s in results["systems"].items():
        print(
            f"{name:<12} {s['msgs_per_s']:>10.0f} {s['deliveries_per_s']:>10.0f} "
            f"{s.get('vs_zeromq', float('nan')):>7.2f} {s['p50_us']:>8.0f} {s['p99_us']:>8.0f} "
            f"{s['broker_cpu_us_per_msg']:>7.2f} {s['broker_cpu_us_per_msg_paced']:>9.1f}"
        )
        for e in s["errors"]:
            print(f"   error: {e}")
    if "fanout" in results:
        f = results["fanout"]
        print(
            f"fan-out {f['subscribers']}: proxy RSS {f['proxy_rss_connected_mib']:.1f} MiB "
            f"connected ({f['proxy_rss_idle_mib']:.1f} idle, "
            f"{f['proxy_rss_after_mib']:.1f} after); "
            f"one message reaches all in {f['reach_all_ms_median']:.1f} ms "
            f"(median of 5, max {f['reach_all_ms_max']:.1f})"
        )
    if results["goals"]:
        print("\ngoals (issue 17), ratios in this run:")
        for g in results["goals"]:
            verdict = "met" if g["met"] else "not met"
            print(f"  {g['goal']:<58} {g['ratio']:>6.2f}  {verdict}")
    return 0


GOALS = (
    # (goal, system, figure, anchor, limit, at most?)
    (
        "proxy CPU/msg at full speed <= ZeroMQ",
        "smdbus",
        "broker_cpu_us_per_msg",
        "zeromq",
        1.0,
        True,
    ),
    (
        "proxy CPU/msg at 1 000 msgs/s <= ZeroMQ",
        "smdbus",
        "broker_cpu_us_per_msg_paced",
        "zeromq",
        1.0,
        True,
    ),
    ("throughput 1 -> 4 >= 1.0x ZeroMQ, lossless", "smdbus", "msgs_per_s", "zeromq", 1.0, False),
    ("p50 at 1 000 msgs/s <= 1.3x floor (asyncio clients)", "smdbus", "p50_us", "floor", 1.3, True),
    ("p99 at 1 000 msgs/s <= 1.5x floor (asyncio clients)", "smdbus", "p99_us", "floor", 1.5, True),
    (
        "p50 at 1 000 msgs/s <= 1.3x floor (lean clients)",
        "smdbus-lean",
        "p50_us",
        "floor",
        1.3,
        True,
    ),
    (
        "p99 at 1 000 msgs/s <= 1.5x floor (lean clients)",
        "smdbus-lean",
        "p99_us",
        "floor",
        1.5,
        True,
    ),
)


def goals(systems: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal whose systems ran: its ratio in this run and whether it is met."""
    out = []
    for goal, name, figure, anchor, limit, at_most in GOALS:
        if name not in systems or anchor not in systems:
            continue
        s = systems[name]
        ratio = s[figure] / systems[anchor][figure]
        met = ratio <= limit if at_most else ratio >= limit
        if figure == "msgs_per_s":  # lossless: every run complete and in order
            met = met and not s["errors"] and not s["out_of_order"]
        out.append({"goal": goal, "ratio": ratio, "limit": limit, "met": bool(met)})
    return out


if __name__ == "__main__":
    sys.exit(main())
