"""What the web view costs the daemon: its CPU at a steady message rate, view off and on.

    .venv/bin/python bench/web.py                 # 5 000 msgs/s, 5 s a run, 3 runs a case
    .venv/bin/python bench/web.py --rate 1000 --seconds 3 --repeat 1

Every case is a real ``smd daemon`` process (gates off, so it is OPERATIONAL at once), a
publisher process sending JSON payloads on USER_0 at ``--rate`` (paced in 10 ms batches)
and a subscriber process receiving them (so each message really flows through the bus and
the proxy in every case). Measured: the daemon's user+system CPU time (``/proc/<pid>/stat``)
over the publishing window, as a share of one core, and its resident memory at the end. Cases:

- ``off``: no ``--web`` (the anchor, measured in the same run);
- ``on``: ``--web``, nobody watching;
- ``on+1`` / ``on+4``: ``--web`` and 1 or 4 event-stream readers (what a browser tab asks
  for: ``/api/events``, read as fast as it comes).

Printed: the median CPU share of each case, the view's cost (the difference against
``off``) and the ratio. Figures go in docs/web.md; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

SMD = str(Path(sys.executable).with_name("smd"))
TICK = os.sysconf("SC_CLK_TCK")

PUBLISHER = """
import asyncio, sys, time
from smdbus.client import connect
from smdbus.classes import user_class
address, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
async def main():
    c = await connect(address, 0, max_buffered=1 << 16, max_buffered_bytes=1 << 24)
    per = max(1, rate // 100)
    start = time.monotonic()
    n = 0
    print("go", flush=True)
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) * rate) + per
        while n < due:
            c.send(user_class(0), b'{"type":"button","src":"bench/user","n":%d}' % n)
            n += 1
        await asyncio.sleep(0.01)
    await c.drain()
    print("done", n, flush=True)
    await c.close(timeout=10)
asyncio.run(main())
"""

SUBSCRIBER = """
import asyncio, sys
from smdbus.client import connect
from smdbus.classes import user_class
async def main():
    got = 0
    def on(cls, ts, payload):
        nonlocal got
        got += 1
    c = await connect(sys.argv[1], user_class(0), on_message=on)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(got, flush=True)
    await c.close(timeout=0)
asyncio.run(main())
"""

VIEWER = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /api/events HTTP/1.1\\r\\nhost: x\\r\\nauthorization: Bearer "
          + sys.argv[2].encode() + b"\\r\\n\\r\\n")
first = s.recv(65536)
assert first.startswith(b"HTTP/1.1 200"), first[:80]
print("ready", flush=True)
n = len(first)
while True:
    b = s.recv(65536)
    if not b:
        break
    n += len(b)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def run_case(web: bool, viewers: int, rate: int, seconds: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="smdbench-web-"))
    address = f"@smdbench-web-{uuid.uuid4().hex[:8]}"
    config = tmp / "d.toml"
    config.write_text(
        f'[bus]\nsocket = "{address}"\n[routes]\nenabled = false\n[cpd]\nenabled = false\n'
        '[gates]\ncoldplug = false\ndhcp = false\ntime = false\n[log]\nlevel = "warning"\n'
        "[systemd]\nnotify = false\nsocket_activation = false\n"
        f'[web]\nport = 0\nruntime_dir = "{tmp / "run"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS")}
    cmd = [SMD, "daemon", "--config", str(config)] + (["--web"] if web else [])
    daemon = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    procs: list[subprocess.Popen[str]] = []
    try:
        _wait_for_socket(address)
        info: dict[str, Any] = {}
        if web:
            deadline = time.monotonic() + 10
            while not (tmp / "run" / "web.json").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the web view did not come up")
                time.sleep(0.05)
            info = json.loads((tmp / "run" / "web.json").read_text())
        for _ in range(viewers):
            v = subprocess.Popen(
                [sys.executable, "-c", VIEWER, str(info["port"]), info["token"]],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(v)
            assert _line(v) == "ready"
        sub = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(sub)
        assert _line(sub) == "ready"
        pub = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, address, str(rate), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(pub)
        assert _line(pub) == "go"
        c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        done = _line(pub)
        c1, t1 = cpu_seconds(daemon.pid), time.monotonic()
        rss = rss_mib(daemon.pid)
        sent = int(done.split()[1])
        assert sub.stdin is not None
        sub.stdin.write("\n")
        sub.stdin.flush()
        got = int(_line(sub) or 0)
        cpu = (c1 - c0) / (t1 - t0)
        return {"cpu": cpu, "sent": sent, "got": got, "rate": sent / (t1 - t0), "rss": rss}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        daemon.terminate()
        daemon.wait(10)


def _wait_for_socket(address: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect("\0" + address[1:])
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            s.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=5000, help="messages a second")
    ap.add_argument("--seconds", type=float, default=5.0, help="publishing time per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (median shown)")
    args = ap.parse_args(argv)
    cases = [("off", False, 0), ("on", True, 0), ("on+1", True, 1), ("on+4", True, 4)]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in cases}
    for _ in range(args.repeat):
        for name, web, viewers in cases:  # interleaved, so drift hits every case alike
            results[name].append(run_case(web, viewers, args.rate, args.seconds))
    anchor = statistics.median(r["cpu"] for r in results["off"])
    print(f"daemon CPU at {args.rate} msgs/s ({args.seconds:g} s x {args.repeat} runs, median)")
    print(
        f"{'case':6} {'cpu %':>7} {'view %':>7} {'ratio':>6} {'achieved/s':>10} {'lost':>5} "
        f"{'RSS MiB':>8}"
    )
    for name, _, _ in cases:
        rs = results[name]
        cpu = statistics.median(r["cpu"] for r in rs)
        achieved = statistics.median(r["rate"] for r in rs)
        lost = sum(r["sent"] - r["got"] for r in rs)
        rss = statistics.median(r["rss"] for r in rs)
        print(
            f"{name:6} {cpu * 100:7.1f} {(cpu - anchor) * 100:7.1f} {cpu / anchor:6.2f} "
            f"{achieved:10.0f} {lost:5d} {rss:8.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
