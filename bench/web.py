"""What the web view costs the daemon: its CPU at a steady message rate, view off and on.

    .venv/bin/python bench/web.py                 # 5 000 msgs/s, 5 s a run, 3 runs a case
    .venv/bin/python bench/web.py --rate 1000 --seconds 3 --repeat 1

Every case is a real ``smd daemon`` process (gates off, so it is OPERATIONAL at once), a
publisher process sending JSON payloads on USER_0 at ``--rate`` (paced in 10 ms batches)
and a subscriber process receiving them (so each message really flows through the bus and
the proxy in every case). Measured: the daemon's CPU time (``/proc/<pid>/task/*/schedstat``,
every thread) over the publishing window, as a share of one core, and its resident memory at
the end. Cases:

- ``off``: no ``--web`` (the anchor, measured in the same run);
- ``on``: ``--web``, nobody watching;
- ``on+1`` / ``on+4``: ``--web`` and 1 or 4 event-stream readers (what a browser tab asks
  for: ``/api/events``, read as fast as it comes);
- ``page``: ``--web`` and the page itself in Debian's chromium (Playwright, headless): the
  daemon's CPU as above, and whether the page keeps up: the longest and the 95th-percentile
  gap between animation frames while the messages pour in (60 Hz is 16.7 ms; a gap of
  100 ms or more is a stutter a person sees), and how many messages it shows.

Printed: the median CPU share of each case, the view's cost (the difference against
``off``) and the ratio. Figures go in docs/web.md; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
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
    want = int(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
    for _ in range(1000):  # what is still in flight arrives (10 s at most)
        if got >= want:
            break
        await asyncio.sleep(0.01)
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
    """CPU time of every thread of ``pid`` so far, in ns resolution (``schedstat``; the
    ``stat`` ticks are 10 ms, too coarse for a 1 % difference over a few seconds)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):  # a thread that ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


FRAMES = """
window.__frames = [];
(function tick(t) { window.__frames.push(t); requestAnimationFrame(tick); })(performance.now());
"""
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def run_case(
    web: bool, viewers: int, rate: int, seconds: float, page: bool = False
) -> dict[str, Any]:
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
    pw: Any = None
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
        tab: Any = None
        if page:
            from playwright.sync_api import sync_playwright

            pw = sync_playwright().start()
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.goto(info["url"])
            tab.wait_for_function("document.getElementById('link').textContent === 'live'")
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
        if tab is not None:
            tab.evaluate(FRAMES)
        done = _line(pub)
        c1, t1 = cpu_seconds(daemon.pid), time.monotonic()
        frames: dict[str, float] = {}
        if tab is not None:
            stamps = tab.evaluate("window.__frames")
            gaps = sorted(b - a for a, b in itertools.pairwise(stamps))
            frames = {
                "gap_max": gaps[-1],
                "gap_p95": gaps[int(len(gaps) * 0.95)],
                "rows": tab.locator("#messages tbody tr").count(),
            }
        rss = rss_mib(daemon.pid)
        sent = int(done.split()[1])
        assert sub.stdin is not None
        sub.stdin.write(f"{sent}\n")
        sub.stdin.flush()
        got = int(_line(sub) or 0)
        cpu = (c1 - c0) / (t1 - t0)
        out = {"cpu": cpu, "sent": sent, "got": got, "rate": sent / (t1 - t0), "rss": rss}
        return {**out, **frames}
    finally:
        if pw is not None:
            pw.stop()
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
    ap.add_argument("--cases", default="off,on,on+1,on+4,page", help="which cases, in order")
    args = ap.parse_args(argv)
    known = {"off": (False, 0), "on": (True, 0), "on+1": (True, 1), "on+4": (True, 4)}
    if os.path.exists("/usr/bin/chromium"):
        known["page"] = (True, 0)
    cases = [(n, *known[n]) for n in args.cases.split(",") if n in known]
    if not any(n == "off" for n, _, _ in cases):
        cases.insert(0, ("off", False, 0))  # the anchor
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in cases}
    for _ in range(args.repeat):
        for name, web, viewers in cases:  # interleaved, so drift hits every case alike
            results[name].append(
                run_case(web, viewers, args.rate, args.seconds, page=name == "page")
            )
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
    if "page" in results:
        rs = results["page"]
        print(
            "page: frame gap max {:.0f} ms, p95 {:.1f} ms (median of runs); {} rows shown".format(
                statistics.median(r["gap_max"] for r in rs),
                statistics.median(r["gap_p95"] for r in rs),
                rs[-1]["rows"],
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
