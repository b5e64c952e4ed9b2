"""In-process throughput of smdbus against libwebsockets' own lws_smd, in one run.

The workload (issue 2, item 6), identical on both sides: N participants
registered for INTERACTION count their deliveries; a sender runs once per event
loop turn and formats ~100 bytes of JSON with printf, ``--per-turn`` (40)
times, returning to the loop in between; after ``--messages`` (1 000 000)
accepted sends the loop runs until every participant had every message.

- C: ``bench/c/inproc.c`` against Debian's libwebsockets-dev, compiled here
  with ``gcc -O2`` into ``bench/build/`` and run as a subprocess. The sender
  is a zero-delay lws_sul timer. Debian's 4.1.6 has a fixed queue depth of
  12, so the library refuses the 13th send of a turn and that sender resumes
  on the next turn: C runs 12 per turn whatever ``--per-turn`` says.
- smdbus: ``Bus(queue_depth=per_turn)`` bound to an asyncio loop in this
  process; the sender is a callback rescheduled with ``loop.call_soon``.
  ``--matched-depth`` adds a run with C's observed depth (12 per turn), to
  separate the per-message cost from the per-turn cost.

Where the time goes differs: 4.1.6's lws_smd_msg_send() calls
lws_cancel_service(), one write() to the loop's pipe per message (strace
shows 1 000 002 writes for 1e6 messages), so C's send path is ~0.6 us per
message and its delivery ~10 ns per participant; smdbus wakes its loop once
per batch, and pays a Python call (~50 ns) per delivery. ``--split`` prints
that breakdown for both sides.

Each figure is the median of ``--repeat`` runs, C and smdbus interleaved. The ratio is smdbus/C on
messages per second (equal to the ratio on deliveries per second, since both
deliver every message to every participant). The goals: >= 1.0x C at 1 peer,
>= 0.5x C at 16 peers.

    .venv/bin/python bench/inproc.py                 # 1, 4, 16 peers, 1e6 msgs, 3 runs
    .venv/bin/python bench/inproc.py --messages 100000 --repeat 1 --json
    .venv/bin/python bench/inproc.py --matched-depth --split
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from smdbus import Bus, Class, QueueFull

HERE = Path(__file__).resolve().parent
C_SOURCE = HERE / "c" / "inproc.c"
BUILD_DIR = HERE / "build"

BENCH_FORMAT = (
    '{"type":"bench","src":"bench/inproc","seq":%d,'
    '"pad":"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ"}'
)
"""The payload; bench/c/inproc.c formats the same bytes (105 at a 6-digit seq)."""

GOALS = {1: 1.0, 16: 0.5}
"""smdbus/C ratio the issue asks for, by peer count."""


@dataclass(frozen=True)
class Run:
    """One measured run of one implementation."""

    impl: str
    peers: int
    msgs: int
    deliveries: int
    seconds: float
    queue_full: int
    turns: int
    depth: int
    send_seconds: float
    """Time inside the sender (formatting and queueing); the rest is delivery and the loop."""

    @property
    def msgs_per_s(self) -> float:
        return self.msgs / self.seconds

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.seconds


class BenchError(RuntimeError):
    """The benchmark cannot run or a run did not deliver what it should."""


# -- C -----------------------------------------------------------------------


def build_c(source: Path = C_SOURCE, build_dir: Path = BUILD_DIR) -> Path:
    """Compile the C side with gcc -O2 against libwebsockets (rebuilt when the source changes)."""
    gcc, pkg_config = shutil.which("gcc"), shutil.which("pkg-config")
    if gcc is None or pkg_config is None:
        raise BenchError("the C side needs gcc and pkg-config (apt-get install gcc pkg-config)")
    flags = subprocess.run(
        [pkg_config, "--cflags", "--libs", "libwebsockets"],
        capture_output=True,
        text=True,
    )
    if flags.returncode != 0:
        raise BenchError(
            "pkg-config does not know libwebsockets (apt-get install libwebsockets-dev): "
            + flags.stderr.strip()
        )
    build_dir.mkdir(parents=True, exist_ok=True)
    exe = build_dir / source.stem
    if exe.exists() and exe.stat().st_mtime >= source.stat().st_mtime:
        return exe
    cmd = [gcc, "-O2", "-Wall", "-Wextra", "-o", str(exe), str(source), *shlex.split(flags.stdout)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"compiling {source} failed:\n{shlex.join(cmd)}\n{done.stderr}")
    return exe


def lws_version() -> str:
    """The libwebsockets version pkg-config reports (for the report's labels)."""
    done = subprocess.run(
        ["pkg-config", "--modversion", "libwebsockets"], capture_output=True, text=True
    )
    return done.stdout.strip().rstrip("-") or "?"


def run_c(exe: Path, peers: int, messages: int, per_turn: int) -> Run:
    """One run of the C program; it prints one JSON object."""
    done = subprocess.run(
        [str(exe), str(peers), str(messages), str(per_turn)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise BenchError(f"{exe} {peers} {messages} failed ({done.returncode}): {done.stderr}")
    r = json.loads(done.stdout)
    return Run(
        impl="c",
        peers=int(r["peers"]),
        msgs=int(r["msgs"]),
        deliveries=int(r["deliveries"]),
        seconds=float(r["seconds"]),
        queue_full=int(r["queue_full"]),
        turns=int(r["turns"]),
        depth=int(r["depth"]),
        send_seconds=float(r["send_seconds"]),
    )


# -- smdbus ------------------------------------------------------------------


def _counter() -> tuple[Callable[[int, int, bytes], None], Callable[[], int]]:
    """A counting callback (as the C peer's ``count++``) and a reader for its count."""
    n = 0

    def cb(cls: int, timestamp_us: int, payload: bytes) -> None:
        nonlocal n
        n += 1

    def count() -> int:
        return n

    return cb, count


class _Workload:
    """The smdbus side of the workload, whichever loop drives the bus: the participants,
    and the sender, whose :meth:`turn` sends up to ``per_turn`` messages."""

    def __init__(self, peers: int, messages: int, per_turn: int, depth: int) -> None:
        self.bus = Bus(queue_depth=depth)
        self.counters = []
        for i in range(peers):
            cb, count = _counter()
            self.bus.register(Class.INTERACTION, cb, name=f"peer{i}")
            self.counters.append(count)
        self.peers, self.messages, self.per_turn = peers, messages, per_turn
        self.sent = self.queue_full = self.turns = self.most = 0
        self.send_seconds = 0.0
        self._printf = self.bus.printf

    def turn(self) -> bool:
        """One turn of the sender; True while there is more to send."""
        t = time.perf_counter()
        self.turns += 1
        n = 0
        sent = self.sent
        stop = min(self.per_turn, self.messages - sent)
        printf = self._printf
        cls = _CLS
        try:
            while n < stop:
                printf(cls, BENCH_FORMAT, sent + n)
                n += 1
        except QueueFull:
            self.queue_full += 1
        self.sent = sent = sent + n
        self.most = max(self.most, n)
        self.send_seconds += time.perf_counter() - t
        return sent < self.messages

    def result(self, impl: str, seconds: float) -> Run:
        deliveries = sum(c() for c in self.counters)
        if deliveries != self.sent * self.peers:
            raise BenchError(f"{impl} delivered {deliveries}, expected {self.sent} x {self.peers}")
        return Run(
            impl,
            self.peers,
            self.sent,
            deliveries,
            seconds,
            self.queue_full,
            self.turns,
            self.most,
            self.send_seconds,
        )


_CLS = int(Class.INTERACTION)


async def _smdbus_workload(peers: int, messages: int, per_turn: int, depth: int) -> Run:
    loop = asyncio.get_running_loop()
    work = _Workload(peers, messages, per_turn, depth)
    finished: asyncio.Future[None] = loop.create_future()
    turn = work.turn

    def sender() -> None:
        if turn():
            loop.call_soon(sender)
        else:
            finished.set_result(None)

    async with work.bus:
        t0 = time.perf_counter()
        loop.call_soon(sender)
        await finished
        await work.bus.drain()
        seconds = time.perf_counter() - t0
    return work.result("smdbus", seconds)


def run_smdbus(peers: int, messages: int, per_turn: int, depth: int) -> Run:
    """One run of the same workload on smdbus, on a fresh asyncio loop."""
    return asyncio.run(_smdbus_workload(peers, messages, per_turn, depth))


def run_selectors(peers: int, messages: int, per_turn: int, depth: int) -> Run:
    """The same workload with the bus driven by a ``selectors`` loop (docs/loops.md).

    A turn: the sender, then ``select`` on the bus's descriptor, then ``bus.service()``
    when it is readable. The turn's first send writes the eventfd and ``service`` reads
    it: two syscalls per turn that asyncio does not need on its own thread.
    """
    work = _Workload(peers, messages, per_turn, depth)
    bus = work.bus
    sel = selectors.DefaultSelector()
    sel.register(bus.fileno(), selectors.EVENT_READ)
    turn = work.turn
    select = sel.select
    service = bus.service
    more = True
    t0 = time.perf_counter()
    while more or bus.queue_length:
        if more:
            more = turn()
        if select(0 if more else 1.0):
            service()
    seconds = time.perf_counter() - t0
    sel.close()
    bus.unbind()
    return work.result("smdbus-selectors", seconds)


async def _empty_turns(turns: int) -> float:
    """Seconds per loop turn of the same shape without a bus: the sender rescheduling
    itself and one extra callback scheduled per turn (as the bus's delivery wake-up)."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    left = turns

    def wake() -> None:
        pass

    def sender() -> None:
        nonlocal left
        left -= 1
        loop.call_soon(wake)
        if left:
            loop.call_soon(sender)
        else:
            finished.set_result(None)

    t0 = time.perf_counter()
    loop.call_soon(sender)
    await finished
    return (time.perf_counter() - t0) / turns


def loop_turn_seconds(turns: int) -> float:
    """The asyncio cost of one turn, to separate it from the bus's own per-message work."""
    return asyncio.run(_empty_turns(turns))


def build_compiled(dest: Path = BUILD_DIR / "speedups") -> Path:
    """The optional mypyc build of the hot path (scripts/build-speedups.sh), in ``dest``."""
    script = HERE.parent / "scripts" / "build-speedups.sh"
    done = subprocess.run([str(script), str(dest)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"building the compiled bus failed:\n{done.stdout}{done.stderr}")
    return dest


def _compiled_here() -> bool:
    import smdbus.bus

    return smdbus.bus.COMPILED


def run_compiled(build: Path, peers: int, messages: int, per_turn: int) -> Run:
    """One run of the smdbus workload in a child process importing the compiled bus."""
    env = {k: v for k, v in os.environ.items() if k != "SMDBUS_PURE"}
    env["PYTHONPATH"] = str(build)
    cmd = [sys.executable, __file__, "--worker", str(peers), "--messages", str(messages)]
    cmd += ["--per-turn", str(per_turn)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise BenchError(f"compiled run failed ({done.returncode}): {done.stderr}")
    r = json.loads(done.stdout)
    if not r.pop("compiled"):
        raise BenchError(f"the child did not import the compiled bus from {build}")
    return Run(**r)


# -- report ------------------------------------------------------------------


def median_run(runs: Sequence[Run]) -> Run:
    """The run with the median time (an actual run, so its counters stay consistent)."""
    ordered = sorted(runs, key=lambda r: r.seconds)
    return ordered[(len(ordered) - 1) // 2]


def _fmt_rate(x: float) -> str:
    return f"{x / 1e6:7.3f} M/s" if x >= 1e6 else f"{x / 1e3:7.1f} k/s"


def _verdict(r: Run, c: Run) -> str:
    """``0.85x C, goal >= 1.0x: not met`` (empty for a peer count without a goal)."""
    goal = GOALS.get(r.peers)
    if goal is None:
        return ""
    ratio = r.msgs_per_s / c.msgs_per_s
    return f"{ratio:.2f}x C, goal >= {goal:.1f}x: {'met' if ratio >= goal else 'not met'}"


def _row(label: str, r: Run, c: Run | None) -> str:
    ratio = "" if c is None else f"{r.msgs_per_s / c.msgs_per_s:6.2f}x"
    verdict = ""
    if c is not None and r.peers in GOALS:
        met = r.msgs_per_s / c.msgs_per_s >= GOALS[r.peers]
        verdict = f"  (goal >= {GOALS[r.peers]:.1f}x: {'met' if met else 'NOT met'})"
    return (
        f"{r.peers:5d}  {label:<26} {_fmt_rate(r.msgs_per_s)} {_fmt_rate(r.deliveries_per_s)}"
        f"  {r.seconds:7.3f} s  {r.depth:5d}  {ratio}{verdict}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--peers", default="1,4,16", help="comma-separated peer counts (1,4,16)")
    ap.add_argument("--messages", type=int, default=1_000_000, help="messages per run (1e6)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; medians (3)")
    ap.add_argument("--per-turn", type=int, default=40, help="sends per loop turn (40)")
    ap.add_argument(
        "--matched-depth",
        action="store_true",
        help="also run smdbus with C's observed queue depth and sends per turn",
    )
    ap.add_argument(
        "--split",
        action="store_true",
        help="also print where the time goes: sender vs delivery and loop, per message",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON document instead")
    ap.add_argument(
        "--no-compiled",
        action="store_true",
        help="skip the optional mypyc build of the hot path (scripts/build-speedups.sh)",
    )
    ap.add_argument("--worker", type=int, metavar="PEERS", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:  # a child run of run_compiled()
        import smdbus.bus

        run = run_smdbus(args.worker, args.messages, args.per_turn, args.per_turn)
        print(json.dumps(asdict(run) | {"compiled": smdbus.bus.COMPILED}))
        return 0
    try:
        peer_counts = [int(p) for p in args.peers.split(",")]
    except ValueError:
        ap.error(f"--peers wants comma-separated integers, got {args.peers!r}")
    if args.messages < 1 or args.repeat < 1 or args.per_turn < 1 or min(peer_counts) < 1:
        ap.error("--messages, --repeat, --per-turn and every peer count must be at least 1")

    try:
        exe = build_c()
    except BenchError as e:
        print(f"inproc: {e}", file=sys.stderr)
        return 2

    compiled_build: Path | None = None
    if not args.no_compiled:
        try:
            compiled_build = build_compiled()
        except BenchError as e:
            print(f"inproc: no compiled row: {e}", file=sys.stderr)

    version = lws_version()
    results = []
    for peers in peer_counts:
        # Interleaved (C, smdbus, C, smdbus, ...) so a change in machine load
        # during the run weighs on both sides alike.
        c_runs: list[Run] = []
        py_runs: list[Run] = []
        matched_runs: list[Run] = []
        compiled_runs: list[Run] = []
        sel_runs: list[Run] = []
        for _ in range(args.repeat):
            c_runs.append(run_c(exe, peers, args.messages, args.per_turn))
            py_runs.append(run_smdbus(peers, args.messages, args.per_turn, args.per_turn))
            sel_runs.append(run_selectors(peers, args.messages, args.per_turn, args.per_turn))
            if compiled_build is not None:
                compiled_runs.append(
                    run_compiled(compiled_build, peers, args.messages, args.per_turn)
                )
            if args.matched_depth:
                depth = c_runs[-1].depth
                matched_runs.append(run_smdbus(peers, args.messages, depth, depth))
        c, py = median_run(c_runs), median_run(py_runs)
        matched = median_run(matched_runs) if matched_runs else None
        compiled = median_run(compiled_runs) if compiled_runs else None
        results.append((peers, c, py, matched, compiled, median_run(sel_runs)))

    if args.json:
        doc = {
            "workload": {
                "messages": args.messages,
                "repeat": args.repeat,
                "per_turn": args.per_turn,
                "payload_bytes": len(BENCH_FORMAT % (args.messages - 1)),
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "libwebsockets": version,
            },
            "results": [
                {
                    "peers": peers,
                    "c": asdict(c)
                    | {"msgs_per_s": c.msgs_per_s, "deliveries_per_s": c.deliveries_per_s},
                    "smdbus": asdict(py)
                    | {"msgs_per_s": py.msgs_per_s, "deliveries_per_s": py.deliveries_per_s},
                    "ratio": py.msgs_per_s / c.msgs_per_s,
                    "goal": GOALS.get(peers),
                    "goal_met": None
                    if peers not in GOALS
                    else py.msgs_per_s / c.msgs_per_s >= GOALS[peers],
                    "smdbus_selectors": asdict(sel)
                    | {"msgs_per_s": sel.msgs_per_s, "ratio": sel.msgs_per_s / c.msgs_per_s},
                    "smdbus_compiled": None
                    if compiled is None
                    else asdict(compiled)
                    | {
                        "msgs_per_s": compiled.msgs_per_s,
                        "deliveries_per_s": compiled.deliveries_per_s,
                        "ratio": compiled.msgs_per_s / c.msgs_per_s,
                        "goal_met": None
                        if peers not in GOALS
                        else compiled.msgs_per_s / c.msgs_per_s >= GOALS[peers],
                    },
                    "smdbus_matched_depth": None
                    if matched is None
                    else asdict(matched)
                    | {
                        "msgs_per_s": matched.msgs_per_s,
                        "ratio": matched.msgs_per_s / c.msgs_per_s,
                    },
                }
                for peers, c, py, matched, compiled, sel in results
            ],
        }
        print(json.dumps(doc, indent=2))
        return 0

    print(
        f"inproc: {args.messages} msgs, {args.per_turn} sends per turn, "
        f"median of {args.repeat}; Python {sys.version.split()[0]}"
    )
    print(
        f"{'peers':>5}  {'impl':<26} {'msgs':>11} {'deliveries':>11}  {'time':>9}  depth  smdbus/C"
    )
    # the in-process rows run whatever this interpreter imports: pure from the
    # development venv (an editable install), or an installed compiled wheel
    pure_label = "mypyc" if _compiled_here() else "pure"
    for _peers, c, py, matched, compiled, sel in results:
        print(_row(f"C lws_smd {version}", c, None))
        print(_row(f"smdbus {pure_label} ({args.per_turn}/turn)", py, c))
        print(_row(f"smdbus selectors ({args.per_turn}/turn)", sel, c))
        if compiled is not None:
            print(_row(f"smdbus mypyc ({args.per_turn}/turn)", compiled, c))
        if matched is not None:
            print(_row(f"smdbus ({c.depth}/turn, as C)", matched, c))
    print()
    print(f"goals (smdbus/C msgs/s, medians of {args.repeat}):")
    for peers, c, py, _matched, compiled, _sel in results:
        if peers not in GOALS:
            continue
        line = f"  {peers:2d} peer{'s' if peers > 1 else ' '}  {pure_label:<9} {_verdict(py, c)}"
        if compiled is not None:
            line += f";  mypyc {_verdict(compiled, c)}"
        print(line)
    if args.split:
        print()
        print("where the time goes (ns; send = inside the sender: format + queue;")
        print("rest = delivery + event loop; loop = an empty asyncio turn of the same shape)")
        print(f"{'peers':>5}  {'impl':<26} {'send/msg':>9} {'rest/msg':>9} {'rest/delivery':>14}")
        for _peers, c, py, _matched, _compiled, _sel in results:
            for label, r in ((f"C lws_smd {version}", c), ("smdbus", py)):
                rest = r.seconds - r.send_seconds
                print(
                    f"{r.peers:5d}  {label:<26} {r.send_seconds / r.msgs * 1e9:9.0f}"
                    f" {rest / r.msgs * 1e9:9.0f} {rest / r.deliveries * 1e9:14.1f}"
                )
        turn = loop_turn_seconds(max(1, args.messages // args.per_turn))
        print(
            f"asyncio turn: {turn * 1e9:.0f} ns = {turn / args.per_turn * 1e9:.0f} ns/msg "
            f"at {args.per_turn} per turn"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
