"""One-shot tools: ``smd send``, ``smd state``, ``smd peers`` against a bare Python, in one run.

Goal 2 of issue 17, printed as ratios with "met" or "not met": each tool's
wall time <= 1.5x that of ``python3 -c 'import socket, struct'`` (the same
interpreter, the same virtual environment) and its max RSS <= 12 MiB.

The tools run as a user types them (the ``smd`` console script) against a
running ``smd daemon`` with the default configuration (only its socket name
made unique): the daemon is the real proxy, and it answers ``smd state``'s
query. ``send`` waits for its message to come back from the proxy, ``peers``
and ``state`` for the proxy's answer, so their wall time includes the
proxy's part of the exchange. The bare Python and the three tools run in
turn, ``--runs`` rounds, so load from elsewhere on the machine falls on all
four alike; medians. Wall time is our clock around the run; max RSS and
CPU time (user + system) come from GNU time (bench/footprint.py says why
not from our own ``wait4``). The CPU time is printed beside the wall time
because it moves less with the machine's load; the goal is wall time.

``--detail`` also prints what the start-up costs, each figure a median in
the same rounds: the interpreter alone (``-c pass``; ``-S``, without site
and the virtual environment's ``.pth`` files; ``-I``), ``smd send`` started
from ``python -c`` instead of the console script, ``import smdbus.cli`` with
argparse, and each tool's modules and parser (``build_parser``) without
running the tool.

    .venv/bin/python bench/cli.py [--runs 9] [--detail]

bench/footprint.py measures goal 1 (``smd daemon`` and ``smd proxy`` RSS).
"""

from __future__ import annotations

import argparse
import statistics

from footprint import GOALS, MIB, PY, SMD, daemon, timed, verdict

TOOLS = ("send", "state", "peers")
BARE = [PY, "-c", "import socket, struct"]


def tool_command(name: str, address: str) -> list[str]:
    args = {"send": ["user0", '{"cli":1}'], "state": [], "peers": []}[name]
    return [SMD, name, "--socket", address, *args]


def detail_commands(address: str) -> dict[str, list[str]]:
    """What start-up costs, piece by piece (see the module docstring)."""
    send = tool_command("send", address)
    via_c = f"import sys; sys.argv = {['smd', *send[1:]]!r}; from smdbus.cli import main; main()"
    pieces = {
        "python -c pass": [PY, "-c", "pass"],
        "python -S -c pass": [PY, "-S", "-c", "pass"],
        "python -I -c 'import socket, struct'": [PY, "-I", *BARE[1:]],
        "smd send, from python -c": [PY, "-c", via_c],
        "import smdbus.cli, argparse": [PY, "-c", "import smdbus.cli, argparse"],
    }
    for tool in TOOLS:
        load = f"from smdbus.cli import build_parser; build_parser({tool!r}, alone=True)"
        pieces[f"smd {tool}'s modules and parser, no run"] = [PY, "-c", load]
    return pieces


def rounds(commands: dict[str, list[str]], runs: int) -> dict[str, list[tuple[float, int, float]]]:
    """Each command once per round, in turn, ``runs`` rounds."""
    samples: dict[str, list[tuple[float, int, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            samples[name].append(timed(cmd))
    return samples


def medians(samples: list[tuple[float, int, float]]) -> tuple[float, float, float]:
    wall, peak, cpu = zip(*samples, strict=True)
    return statistics.median(wall), statistics.median(peak), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=9, help="rounds, median (>= 3)")
    ap.add_argument("--detail", action="store_true", help="what start-up costs, piece by piece")
    args = ap.parse_args()
    runs = max(3, args.runs)
    with daemon() as (_, address):
        commands = {"bare": BARE, **{t: tool_command(t, address) for t in TOOLS}}
        if args.detail:
            commands.update(detail_commands(address))
        samples = rounds(commands, runs)
    bare_wall, bare_rss, bare_cpu = medians(samples["bare"])
    print(
        f"goal 2, one-shot tools ({runs} rounds, medians; bare python3 -c 'import socket, "
        f"struct': {bare_wall * 1000:.1f} ms, CPU {bare_cpu * 1000:.1f} ms, "
        f"{bare_rss / MIB:.1f} MiB)"
    )
    for name in TOOLS:
        wall, peak, cpu = medians(samples[name])
        w_ratio, r_ratio = wall / bare_wall, peak / GOALS["tool_rss"]
        print(
            f"  smd {name:<6} {wall * 1000:5.1f} ms = {w_ratio:.2f}x bare (goal <= 1.5x: "
            f"{verdict(w_ratio, GOALS['tool_wall'])}; CPU {cpu * 1000:.1f} ms = "
            f"{cpu / bare_cpu:.2f}x); max RSS {peak / MIB:5.1f} MiB = {r_ratio:.2f} of 12 MiB "
            f"({verdict(r_ratio)})"
        )
    if args.detail:
        print("start-up, piece by piece (same rounds, medians):")
        for name in detail_commands(""):
            wall, peak, cpu = medians(samples[name])
            print(
                f"  {name:<44} {wall * 1000:5.1f} ms ({wall / bare_wall:.2f}x bare), "
                f"CPU {cpu * 1000:5.1f} ms, {peak / MIB:5.1f} MiB"
            )


if __name__ == "__main__":
    main()
