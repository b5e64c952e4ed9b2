"""Benchmark: the fleet bridge against mosquitto's own bridge, in one run, on this machine.

    .venv/bin/python bench/bridge.py [--messages 20000] [--json]

What is measured (every broker, proxy and bridge its own process):

- **smd bridge**: a publisher on the device's bus (``smdbus.client``,
  100-byte messages, ``drain()`` every 100) -> ``smd proxy`` -> ``smd bridge``
  (QoS 1, the on-disk outbox, 100 in flight) -> broker A -> a paho
  subscriber (QoS 1). msgs/s from the first send to the last arrival.
- **mosquitto bridge** (the anchor): a paho publisher (QoS 1, 100 in
  flight) -> mosquitto B, bridged to A with ``topic bench/# out 1`` and
  ``cleansession false`` -> broker A -> the same subscriber.
- **across a broker restart**: each scenario again, broker A stopped
  (SIGTERM) and started when 30 % have arrived; messages lost (never
  arrived) and duplicates. Broker A keeps sessions on disk, the subscriber
  has a persistent session, so what A acknowledged survives its restart.
- **outbox cost**: µs per message for the outbox alone (insert, commit
  every 100, read back, acknowledge, commit), and with a commit per message.
- **bridge RSS** after the run.

Ratios are against mosquitto's bridge in the same run. Goal (issue 13): at
least mosquitto's bridge's rate, and zero loss. Waiting for the end of a
restart run is the one place where silence is the signal (no new message
for ``--quiet`` seconds): that is how "lost" is decided.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
BODY = 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """mosquitto on 127.0.0.1, sessions on disk; ``extra`` config lines (a bridge)."""

    def __init__(self, workdir: Path, extra: str = "") -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{user}"
            f"persistence true\npersistence_location {self.dir}/\n"
            "max_queued_messages 1000000\nmax_inflight_messages 100\nlog_dest none\n" + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port)).close()
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("mosquitto did not listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Subscriber:
    """paho, QoS 1, persistent session: keeps every payload and when the last came."""

    def __init__(self, port: int, topic: str, want: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.payloads: list[bytes] = []
        self.last = 0.0
        self.done = threading.Event()
        self.want = want
        ready = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{port}", clean_session=False
        )
        c.max_inflight_messages_set(1000)
        c.reconnect_delay_set(1, 1)
        c.on_connect = lambda cl, *_: cl.subscribe(topic, 1)
        c.on_subscribe = lambda *_: ready.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        if not ready.wait(10):
            raise RuntimeError("subscriber did not subscribe")
        self.client = c

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        self.payloads.append(msg.payload)
        self.last = time.monotonic()
        if len(self.payloads) >= self.want:
            self.done.set()

    def wait(self, n: int, quiet: float) -> None:
        """Until n arrived, or nothing new for ``quiet`` s (then the rest is lost)."""
        if len(self.payloads) >= n:
            return
        seen = -1
        while not self.done.wait(quiet):
            if len(self.payloads) == seen:
                return
            seen = len(self.payloads)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _body(i: int) -> bytes:
    return (b"%08d" % i).ljust(BODY, b".")


def _index_smd(payload: bytes) -> int:
    from smdbus.fleet import decode_envelope

    return int(decode_envelope(payload).body[:8])


def _index_raw(payload: bytes) -> int:
    return int(payload[:8])


def _tally(sub: Subscriber, n: int, index: Any) -> tuple[int, int]:
    seen = [index(p) for p in sub.payloads]
    distinct = set(seen)
    return n - len(distinct & set(range(n))), len(seen) - len(distinct)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_smd(tmp: Path, n: int, restart: bool, quiet: float) -> dict[str, Any]:
    a = Broker(tmp / "a")
    a.start()
    sub = Subscriber(a.port, "bench/dev1/USER0", n)
    address = f"@smdbench-bridge-{os.getpid()}-{time.monotonic_ns()}"
    smd = [sys.executable, "-m", "smdbus"]
    quiet_out = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proxy = subprocess.Popen([*smd, "proxy", "--socket", address], **quiet_out)  # type: ignore[call-overload]
    bridge_cfg = tmp / "bridge.toml"
    bridge_cfg.write_text(
        f'[bridge]\nbroker = "mqtt://127.0.0.1:{a.port}"\nsocket = "{address}"\n'
        f'device_id = "dev1"\nprefix = "bench"\nup = ["USER0"]\noutbox = "outbox.sqlite"\n'
        "retry = { backoff_ms = [50, 100, 200] }\n"
    )
    bridge = subprocess.Popen([*smd, "bridge", "--config", str(bridge_cfg)], **quiet_out)  # type: ignore[call-overload]
    try:
        from smdbus.fleet import read_status

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the bridge's own status is the sentinel
            try:
                st = read_status(tmp / "outbox.sqlite")
                if st.get("state") == "up" and st.get("bus") == "ready":
                    break
            except OSError:
                pass
            time.sleep(0.02)
        t0, restarted = asyncio.run(_publish_smd(address, n, sub, a if restart else None))
        sub.wait(n, quiet)
        elapsed = sub.last - t0
        lost, dups = _tally(sub, n, _index_smd)
        rss = _rss_kib(bridge.pid)
        return {
            "msgs_per_s": n / elapsed,
            "lost": lost,
            "duplicates": dups,
            "restarted": restarted,
            "bridge_rss_mib": rss / 1024,
        }
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(10)
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(10)
        sub.close()
        a.stop()


async def _publish_smd(
    address: str, n: int, sub: Subscriber, restart: Broker | None
) -> tuple[float, bool]:
    from smdbus.classes import user_class
    from smdbus.client import connect

    pub = await connect(address, 0)
    cls = user_class(0)
    restarted = False
    t0 = time.monotonic()
    for i in range(n):
        pub.send(cls, _body(i))
        if i % 100 == 99:
            await pub.drain()
            if restart is not None and not restarted and len(sub.payloads) >= n * 3 // 10:
                await asyncio.to_thread(restart.stop)
                await asyncio.to_thread(restart.start)
                restarted = True
    await pub.drain()
    if restart is not None and not restarted:  # the bridge was behind: restart while it drains
        while len(sub.payloads) < n * 3 // 10:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(restart.stop)
        await asyncio.to_thread(restart.start)
        restarted = True
    await pub.close()
    return t0, restarted


def run_mosquitto(tmp: Path, n: int, restart: bool, quiet: float) -> dict[str, Any]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    a = Broker(tmp / "a")
    a.start()
    b = Broker(
        tmp / "b",
        f"connection smdbench\naddress 127.0.0.1:{a.port}\ntopic bench/# out 1\n"
        "cleansession false\nclientid smdbench-bridge\nrestart_timeout 1\n",
    )
    b.start()
    sub = Subscriber(a.port, "bench/dev1/USER0", n)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub")
    pub.max_inflight_messages_set(100)
    pub.max_queued_messages_set(0)
    connected = threading.Event()
    pub.on_connect = lambda *_: connected.set()
    pub.connect("127.0.0.1", b.port)
    pub.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("publisher did not connect")
        # the bridge is up when a probe goes through it
        pub.publish("bench/dev1/USER0", b"probe", 1).wait_for_publish(10)
        while not sub.payloads:
            time.sleep(0.01)
        sub.payloads.clear()
        sub.done.clear()
        restarted = False
        t0 = time.monotonic()
        infos = []
        for i in range(n):
            infos.append(pub.publish("bench/dev1/USER0", _body(i), 1))
            if i % 100 == 99:
                infos[-1].wait_for_publish(30)
                if restart and not restarted and len(sub.payloads) >= n * 3 // 10:
                    a.stop()
                    a.start()
                    restarted = True
        for info in infos:
            info.wait_for_publish(30)
        if restart and not restarted:
            while len(sub.payloads) < n * 3 // 10:
                time.sleep(0.01)
            a.stop()
            a.start()
            restarted = True
        sub.wait(n, quiet)
        elapsed = sub.last - t0
        lost, dups = _tally(sub, n, _index_raw)
        assert b.proc is not None
        return {
            "msgs_per_s": n / elapsed,
            "lost": lost,
            "duplicates": dups,
            "restarted": restarted,
            "bridge_rss_mib": _rss_kib(b.proc.pid) / 1024,
        }
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.close()
        b.stop()
        a.stop()


def outbox_cost(tmp: Path, n: int) -> dict[str, float]:
    from smdbus.fleet import Outbox

    body = _body(0)
    out: dict[str, float] = {}
    for label, every in (("batched_us", 100), ("commit_each_us", 1)):
        path = tmp / f"cost-{every}.sqlite"
        box = Outbox(path, max_messages=n + 1, max_bytes=1 << 30, max_age=3600.0)
        t0 = time.perf_counter()
        for i in range(n):
            box.add("bench/dev1/USER0", 1, False, body)
            if i % every == every - 1:
                box.commit()
        box.commit()
        after = 0
        while rows := box.pending(after, 100):
            for row in rows:
                box.ack(row.seq)
            after = rows[-1].seq
            box.commit()
        out[label] = (time.perf_counter() - t0) / n * 1e6
        box.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--quiet", type=float, default=5.0, help="seconds of silence = the end")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not os.access(MOSQUITTO, os.X_OK):
        print(f"skipped: {MOSQUITTO} not installed")
        return 0
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="smdbench-bridge-") as d:
        tmp = Path(d)
        for name, fn in (("smd", run_smd), ("mosquitto", run_mosquitto)):
            for restart in (False, True):
                key = f"{name}{'_restart' if restart else ''}"
                results[key] = fn(tmp / key, args.messages, restart, args.quiet)
        results["outbox"] = outbox_cost(tmp, args.messages)
    if args.json:
        print(json.dumps(results))
        return 0
    anchor = results["mosquitto"]["msgs_per_s"]
    print(f"{args.messages} messages of {BODY} bytes, QoS 1, one run")
    for key in ("smd", "mosquitto", "smd_restart", "mosquitto_restart"):
        r = results[key]
        print(
            f"  {key:<18} {r['msgs_per_s']:>8.0f} msgs/s"
            f" ({r['msgs_per_s'] / anchor:.2f}x mosquitto's bridge)"
            f"  lost {r['lost']}  duplicates {r['duplicates']}"
            f"  bridge RSS {r['bridge_rss_mib']:.1f} MiB"
        )
    o = results["outbox"]
    print(
        f"  outbox alone: {o['batched_us']:.1f} us/msg (commit per 100), "
        f"{o['commit_each_us']:.1f} us/msg (commit per message)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
