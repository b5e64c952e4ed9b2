"""The ``smd`` command as a whole: Ctrl-C, errors, --version, -v, --help, argument checks.

Real processes, the installed console script (``.venv/bin/smd``, as a user
types it), a real proxy, and a second uid where permissions matter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from smdbus.cli import COMMANDS, _alone, build_parser

SMD_SCRIPT = str(Path(sys.executable).with_name("smd"))
SMD = [sys.executable, "-m", "smdbus"]
ONE_SHOT = ("send", "peers", "state")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# A traceback through our code (installed or from a checkout); or Python complaining at exit.
OUR_TRACEBACK = re.compile(r'File "[^"]*/smdbus/|Exception ignored')


def _smd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SMD, *args], capture_output=True, text=True, timeout=20)


def _loaded(pid: int, library: str) -> bool:
    """True once the process has mapped ``library`` (a stage of its start-up), or has exited."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return True


def _interrupt(args: list[str], after: str | None = None) -> tuple[int, str]:
    """Start ``smd ARGS`` and send SIGINT again and again until it exits.

    The first signal goes at once, or once the process has loaded the
    library ``after`` (``_asyncio``: in the middle of the heavy imports).
    """
    proc = subprocess.Popen(
        [SMD_SCRIPT, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    # a process that exits before it loads ``after`` (a zombie's maps read empty) ends the wait
    while after is not None and proc.poll() is None and not _loaded(proc.pid, after):
        pass
    while proc.poll() is None:
        try:
            proc.send_signal(signal.SIGINT)
            proc.wait(0.0005)  # the sentinel is the exit; this only paces the signals
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
    assert proc.stderr is not None
    return proc.returncode, proc.stderr.read()


@pytest.mark.parametrize(
    "args",
    [
        ["monitor", "--socket", "{proxy}"],
        ["monitor", "--socket", "@smdbus-nobody-here"],
        ["send", "--socket", "{proxy}", "NETWORK", "x", "--count", "100000"],
        ["peers", "--socket", "{proxy}"],
        ["state", "--watch", "--socket", "{proxy}"],
        ["button-replay", "0-102,158-262"],
        ["demo"],
        ["--help"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_ctrl_c_right_after_start_never_prints_a_traceback(args: list[str], smd_proxy: str) -> None:
    """SIGINT from the first moment, or from the middle of the imports: status 130.

    (Or killed by SIGINT, -2, when it lands before Python ran a line.)

    Python's own start-up (before ``smd``'s first line) can be interrupted
    too; it then reports its own failure, which is not ours to change: such
    a run only has to be free of our frames.
    """
    args = [a.replace("{proxy}", smd_proxy) for a in args]
    # the one-shot tools load no asyncio: fcntl comes with their connection (wire.blocking)
    middle = "/fcntl." if args[0] in ONE_SHOT else "_asyncio"
    stages = [None, middle] if args[0] != "--help" else [None]
    for after in stages * 4:
        status, err = _interrupt(args, after)
        assert not OUR_TRACEBACK.search(err), err
        if "Fatal Python error: init_import_site" in err:
            continue  # the interpreter's start-up, before site-packages: not our code
        # a one-shot tool may have done its work (a few ms) before the signal landed, and a
        # monitor with no proxy to watch may have said so and left (status 1) before it
        ended = status == 0 if args[0] in ONE_SHOT else status == 1 and "no proxy at" in err
        done = after is not None and ended
        assert done or status in (130, -signal.SIGINT), (status, err)
        assert "Traceback" not in err, err


CTRL_C_HELD_DOWN = """
import asyncio, os, signal, sys
from smdbus._aiorun import run

steps = []

async def command() -> None:
    try:
        os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: cancels this task
        await asyncio.sleep(60)
    finally:
        os.kill(os.getpid(), signal.SIGINT)  # a second one, while the command cleans up
        await asyncio.sleep(0)
        steps.append("cleaned up")

try:
    run(command())
except KeyboardInterrupt:
    steps.append("KeyboardInterrupt")
os.kill(os.getpid(), signal.SIGINT)  # a third, once the loop is closed: we are leaving
print(steps)
"""


def test_ctrl_c_held_down_interrupts_once_and_never_the_clean_up() -> None:
    """The first SIGINT cancels the command's task; later ones, in its ``finally`` or after
    the loop closed, change nothing (``asyncio.run`` raises in the middle of the clean-up
    on the second, and Python's handler is back for the third)."""
    done = subprocess.run([sys.executable, "-c", CTRL_C_HELD_DOWN], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "['cleaned up', 'KeyboardInterrupt']\n"


def test_ctrl_c_while_waiting_exits_130_silently(smd_proxy: str) -> None:
    mon = subprocess.Popen(
        [SMD_SCRIPT, "monitor", "--socket", smd_proxy],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watch = subprocess.Popen(
        [SMD_SCRIPT, "state", "--watch", "--no-query", "--socket", smd_proxy],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_pids(smd_proxy, {mon.pid, watch.pid})
    for proc in (mon, watch):
        proc.send_signal(signal.SIGINT)
        assert proc.communicate(timeout=10) == ("", "")
        assert proc.returncode == 130


def _wait_for_pids(address: str, pids: set[int]) -> None:
    for _ in range(200):
        out = _smd("peers", "--socket", address, "--json")
        seen = {json.loads(line).get("pid") for line in out.stdout.splitlines()[:-1]}
        if pids <= seen:
            return
    raise AssertionError(f"{pids} never connected")


def test_version_and_help_with_examples() -> None:
    out = _smd("--version")
    assert out.returncode == 0 and re.fullmatch(r"smd \(smdbus\) \d+\.\d+\.\S+\n", out.stdout)
    top = _smd("--help").stdout
    assert "examples:" in top and "smd monitor --class NETWORK" in top
    for name in COMMANDS:
        text = _smd(name, "--help").stdout
        assert "examples:" in text and f"smd {name}" in text.split("examples:")[1], name


def test_a_one_shot_tool_freezes_its_start_up_and_collects_after(smd_proxy: str) -> None:
    """Run as the process's command: start-up loaded with gc off, frozen, gc on for the run."""
    code = (
        "import gc, sys\n"
        "seen = []\n"
        "freeze = gc.freeze\n"
        "gc.freeze = lambda: (seen.append(gc.isenabled()), freeze())\n"
        f"sys.argv = ['smd', 'peers', '--socket', '{smd_proxy}']\n"
        "from smdbus.cli import main\n"
        "status = main()\n"
        "print(seen, gc.isenabled(), gc.get_freeze_count() > 1000, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[-1] == "[False] True True"


def test_main_with_argv_leaves_the_collector_alone(smd_proxy: str) -> None:
    import gc

    from smdbus.cli import main

    frozen = gc.get_freeze_count()
    assert main(["peers", "--socket", smd_proxy]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_verbose_works_after_the_subcommand_too() -> None:
    args = build_parser("monitor").parse_args(["-v", "monitor", "-v", "-v"])
    assert (args.verbose, args.verbose_after) == (1, 2)  # main() adds them up
    address = f"@smdbus-cli-{uuid.uuid4().hex[:8]}"
    proxy = subprocess.Popen(
        [*SMD, "proxy", "--socket", address, "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None and "listening" in proxy.stdout.readline()
        assert _smd("send", "--socket", address, "NETWORK", "x").returncode == 0
        assert proxy.stderr is not None
        line = proxy.stderr.readline()  # INFO: shown only because of -v
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO smdbus\.proxy", line), line
    finally:
        proxy.terminate()
        proxy.wait(5)


@pytest.mark.parametrize(
    ("args", "alone"),
    [
        (["send", "NETWORK", "x"], True),
        (["-v", "-vv", "--verbose", "peers", "--all", "-v"], True),
        (["state", "--socket", "@x", "--timeout", "2"], True),
        (["send", "NETWORK", "x", "--count", "0"], True),  # a subcommand's error
        (["send", "NETWORK", "x", "--bogus"], True),  # unrecognized: the top level says it
        (["peers", "--help"], True),
        (["--help", "send"], False),  # the top level's help: every subcommand
        (["-h", "peers"], False),
        (["--verb", "state"], False),  # an abbreviation: the whole parser
        (["nosuch", "send"], False),  # the choices in the error: all of them
        (["--version", "peers"], False),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else str(a),
)
def test_a_command_line_reads_the_same_with_only_its_subcommands_parser(
    args: list[str], alone: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() builds only the named subcommand's parser when nothing else could be read."""
    chosen = next(a for a in args if a in COMMANDS)
    assert _alone(args, chosen) is alone
    seen = []
    for only_it in (False, alone):  # (otherwise main() uses the whole parser, as here)
        try:
            result: object = vars(build_parser(chosen, alone=only_it).parse_args(args))
        except SystemExit as exc:
            result = exc.code
        seen.append((result, capsys.readouterr()))
    assert seen[0] == seen[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send", "NETWORK", "x", "--count", "0"], "argument --count: must be 1 or more, got 0"),
        (["send", "NETWORK", "x", "--count", "-5"], "argument --count: must be 1 or more, got -5"),
        (["monitor", "--count", "-1"], "argument --count: must be 1 or more, got -1"),
        (["monitor", "--timeout", "0"], "argument --timeout: must be a number of seconds above 0"),
        (["proxy", "--group", "nosuchgroup"], "argument --group: no group 'nosuchgroup'"),
        (["state", "--timeout", "-1"], "argument --timeout: must be a number of seconds above 0"),
    ],
)
def test_bad_arguments_are_one_line(args: list[str], message: str) -> None:
    out = _smd(*args)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"smd {args[0]}: {message}")
    assert out.stderr.count("\n") == 1 and out.stderr.endswith(f"(see smd {args[0]} --help)\n")


def test_button_replay_refuses_a_pattern_out_of_range() -> None:
    out = _smd("button-replay", "0-99999999999")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (
        "smd button-replay: pattern ends at 99999999999 ms, out of range: "
        "at most 3600000 ms (an hour)\n"
    )


@pytest.fixture
def private_socket() -> Iterator[str]:
    """A proxy on a filesystem socket only root may use (0600, in a directory all may enter)."""
    where = tempfile.mkdtemp(prefix="smdbus-cli-")
    os.chmod(where, 0o755)
    path = os.path.join(where, "proxy.sock")
    proxy = subprocess.Popen(
        [*SMD, "proxy", "--socket", path, "--mode", "0600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proxy.stdout is not None and "listening" in proxy.stdout.readline()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        yield path
    finally:
        proxy.terminate()
        proxy.wait(5)
        shutil.rmtree(where, ignore_errors=True)


def test_permission_denied_is_not_no_proxy(private_socket: str) -> None:
    out = subprocess.run(
        [*NOBODY, *SMD, "send", "--socket", private_socket, "NETWORK", "x"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 1
    assert out.stderr == (
        f"smd send: permission denied on {private_socket}: a proxy is there, but its socket "
        f"does not let uid 65534 in (`ls -l {private_socket}`: join the socket's group, "
        "or run as its owner)\n"
    )


def test_no_errno_noise_when_the_socket_path_is_missing() -> None:
    out = _smd("peers", "--socket", "/nonexistent/proxy.sock")
    assert out.returncode == 1 and "[Errno" not in out.stderr
    assert out.stderr.startswith("smd peers: no proxy at /nonexistent/proxy.sock: start one")


async def test_state_until_waits_for_the_state_or_a_later_one() -> None:
    import io

    from smdbus.commands._state import report
    from smdbus.system import State

    async def states(*names: str) -> AsyncIterator[tuple[int, bytes]]:
        for i, name in enumerate(names):
            yield i, json.dumps({"state": name}).encode()

    out = io.StringIO()
    boot = states("IFACE_COLDPLUG", "DHCP", "TIME_VALID", "OPERATIONAL")
    assert await report(boot, watch=False, timeout=None, until=State.DHCP, out=out) == 0
    assert out.getvalue() == "IFACE_COLDPLUG\nDHCP\n"
    out = io.StringIO()
    already = states("OPERATIONAL")  # the answer to the query: past TIME_VALID already
    assert await report(already, watch=False, timeout=None, until=State.TIME_VALID, out=out) == 0
    held = states("IFACE_COLDPLUG", "POLICY_INVALID")  # not on the boot's way
    assert await report(held, watch=False, timeout=None, until=State.DHCP, out=out) == 1


def test_routes_in_a_missing_namespace_is_one_line() -> None:
    out = _smd("routes", "--netns", "smdbus-no-such-ns")
    assert out.returncode == 1 and out.stdout == ""
    assert (
        out.stderr == "smd routes: no network namespace 'smdbus-no-such-ns' (see ip netns list)\n"
    )


def test_daemon_on_a_taken_socket_says_so_without_errno(smd_proxy: str, tmp_path: Path) -> None:
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'[bus]\nsocket = "{smd_proxy}"\n[cpd]\nenabled = false\n[routes]\nenabled = false\n'
    )
    out = _smd("daemon", "--config", str(config))
    assert out.returncode == 1
    assert out.stderr == (
        f"smd daemon: cannot serve the bus: cannot listen on {smd_proxy}: Address already in use\n"
    )
