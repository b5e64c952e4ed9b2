"""How long a starting ``smd daemon`` can be killed by SIGHUP, against a bare interpreter.

SIGHUP's default action terminates a process (exit 129). The daemon catches
SIGHUP/SIGTERM/SIGINT first thing in ``smd daemon`` (smdbus.daemon._signals),
so until then a SIGHUP kills it. This measures that window: the time from
spawning the daemon to the moment /proc/PID/status shows SIGHUP caught
(bit 0 of SigCgt), polled every 0.5 ms. The anchor, in the same run, is the
same measurement for ``python -c`` that catches SIGHUP as its first
statement: what no Python program can go below. The ratio is daemon/anchor.

The daemon runs the given config (default: an abstract socket of its own,
CPD off, everything else as shipped) and is stopped with SIGTERM each time.

    .venv/bin/python bench/daemon_signals.py                # 15 runs each
    .venv/bin/python bench/daemon_signals.py --runs 30 --smd path/to/smd
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANCHOR = "import signal, time; signal.signal(signal.SIGHUP, lambda *a: None); time.sleep(60)"


def caught_after(argv: list[str]) -> float | None:
    """Seconds from spawn until SIGHUP is caught (None: the process ended first)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except FileNotFoundError:
                return None
            line = next(x for x in status.splitlines() if x.startswith("SigCgt:"))
            if int(line.split()[1], 16) & 1 << (signal.SIGHUP - 1):
                return time.monotonic() - started
            if proc.poll() is not None:
                return None
            time.sleep(0.0005)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--smd", default=str(Path(sys.executable).with_name("smd")))
    ap.add_argument("--config", help="daemon config (default: abstract socket, CPD off)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = args.config
        if config is None:
            config = os.path.join(tmp, "daemon.toml")
            Path(config).write_text(
                f'[bus]\nsocket = "@smd-bench-{os.getpid()}"\n[cpd]\nenabled = false\n'
            )
        daemon: list[float] = []
        anchor: list[float] = []
        for _ in range(args.runs):  # interleaved, so both see the same machine
            d = caught_after([args.smd, "daemon", "--config", config])
            a = caught_after([sys.executable, "-c", ANCHOR])
            if d is None or a is None:
                print("a process ended before catching SIGHUP", file=sys.stderr)
                return 1
            daemon.append(d)
            anchor.append(a)
    md, ma = statistics.median(daemon), statistics.median(anchor)
    print(f"python -c (anchor)  median {ma * 1000:6.1f} ms  (min {min(anchor) * 1000:.1f})")
    print(f"smd daemon          median {md * 1000:6.1f} ms  (min {min(daemon) * 1000:.1f})")
    print(f"ratio daemon/anchor {md / ma:.2f}x over {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
