"""sd_notify and socket activation, with real Unix sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smdbus.daemon._systemd import (
    ActivationError,
    SystemdNotifier,
    activated_socket,
    listen_fds,
    socket_address,
)
from smdbus.scheduler import ManualScheduler


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_notify_to_a_path_socket(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    n = SystemdNotifier(path)
    assert n.enabled
    assert n.ready("OPERATIONAL, bus on @proxy.ss.lws")
    assert sock.recv(512) == b"READY=1\nSTATUS=OPERATIONAL, bus on @proxy.ss.lws"
    assert n.status("line one\nline two")
    assert sock.recv(512) == b"STATUS=line one line two"
    assert n.reloading(123456)
    assert sock.recv(512) == b"RELOADING=1\nMONOTONIC_USEC=123456"
    assert n.stopping()
    assert sock.recv(512) == b"STOPPING=1"
    assert len(n.sent) == 4
    n.close()


def test_notify_to_an_abstract_socket() -> None:
    name = f"smd-notify-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        n = SystemdNotifier("@" + name)
        assert n.address == "\0" + name
        assert n.ready()
        assert sock.recv(64) == b"READY=1"
        n.close()
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled and n.ready() is False and n.sent == []
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    assert SystemdNotifier(enabled=False).ready() is False


def test_a_receiver_that_does_not_read_never_blocks_the_daemon(
    receiver: tuple[socket.socket, str],
) -> None:
    _, path = receiver
    n = SystemdNotifier(path)
    for i in range(5000):
        if not n.status(f"state {i}"):
            break
    assert n.deferred == 1, "the queue filled up and the next message waits, not the daemon"
    assert 0 < len(n.sent) < 5000 and n.pending == [f"STATUS=state {len(n.sent)}"]
    n.close()


def test_a_burst_past_the_receivers_queue_loses_no_ready(
    receiver: tuple[socket.socket, str],
) -> None:
    """A boot sends more datagrams at once than a Unix datagram queue holds (10 by default)."""
    sock, path = receiver
    sock.setblocking(False)
    scheduler = ManualScheduler()
    n = SystemdNotifier(path, scheduler=scheduler)
    for i in range(40):
        n.status(f"state {i}")
    n.ready("OPERATIONAL")
    n.status("after")
    assert n.deferred > 0, "the burst did not fill the receiver's queue: the test proves nothing"
    got: list[bytes] = []
    for _ in range(100):  # the receiver reads what is queued, then the notifier retries
        with contextlib.suppress(BlockingIOError):
            while True:
                got.append(sock.recv(512))
        if got[-1] == b"STATUS=after":
            break
        assert scheduler.pending == 1, "what waits is retried"
        scheduler.advance(0.01)
    assert b"READY=1\nSTATUS=OPERATIONAL" in got
    assert got[-1] == b"STATUS=after" and n.pending == []
    statuses = [g for g in got if g.startswith(b"STATUS=state")]
    assert statuses == sorted(statuses, key=lambda g: int(g.split()[-1])), "order kept"
    n.close()


def test_closing_with_the_receiver_full_sets_no_retry_and_sends_nothing_after(
    receiver: tuple[socket.socket, str],
) -> None:
    """close() is the end: what the receiver did not take is logged as never read, not retried.

    Its last flush met the full queue and set a retry: once the loop (or the daemon's
    scheduler) ran it, the notifier opened a socket again after close() and sent
    what close() had just reported as never read (the socket was never closed).
    """
    sock, path = receiver
    sock.setblocking(False)
    scheduler = ManualScheduler()
    n = SystemdNotifier(path, scheduler=scheduler)
    for i in range(40):
        n.ready(f"state {i}")  # READY: never folded, so the queue's overflow waits
    assert n.pending, "the burst did not fill the receiver's queue: the test proves nothing"
    n.close()
    assert scheduler.pending == 0
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(512)  # the receiver makes room
    scheduler.advance(1.0)
    with pytest.raises(BlockingIOError):
        sock.recv(512)  # nothing sent after close()


def test_notify_to_a_missing_socket_is_counted_not_raised(tmp_path: Path) -> None:
    n = SystemdNotifier(str(tmp_path / "nobody"))
    assert n.ready() is False and n.errors == 1


def test_listen_fds_reads_and_unsets_the_environment() -> None:
    env = {"LISTEN_PID": "4242", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b", "OTHER": "x"}
    assert listen_fds(env, pid=4242) == [3, 4]
    assert env == {"OTHER": "x"}
    assert listen_fds({"LISTEN_PID": "1", "LISTEN_FDS": "1"}, pid=4242) == []
    assert listen_fds({"LISTEN_PID": "4242", "LISTEN_FDS": "0"}, pid=4242) == []
    assert listen_fds({}, pid=4242) == []
    with pytest.raises(ActivationError, match="not numbers"):
        listen_fds({"LISTEN_PID": "me", "LISTEN_FDS": "1"}, pid=4242)


def test_activated_socket_accepts_a_listening_unix_stream_socket(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "s"))
    listener.listen(4)
    fd = os.dup(listener.fileno())
    listener.close()
    sock = activated_socket(fd)
    try:
        assert socket_address(sock) == str(tmp_path / "s")
        assert sock.getblocking() is False
        assert not os.get_inheritable(fd)
    finally:
        sock.close()


def test_activated_socket_refuses_what_the_proxy_cannot_serve(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    fd = os.open(f, os.O_RDONLY)
    try:
        with pytest.raises(ActivationError, match="not a socket"):
            activated_socket(fd)
    finally:
        os.close(fd)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(ActivationError, match="AF_INET/SOCK_DGRAM"):
        activated_socket(udp.fileno())
    udp.close()
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.bind("\0smd-idle-" + str(os.getpid()))
    with pytest.raises(ActivationError, match="not listening"):
        activated_socket(idle.fileno())
    assert socket_address(idle).startswith("\0smd-idle-")
    idle.close()
    with pytest.raises(ActivationError, match="not open"):
        activated_socket(999)


ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_units_say_what_the_daemon_does(tmp_path: Path) -> None:
    service = (ROOT / "deploy" / "systemd" / "smd.service").read_text()
    sock = (ROOT / "deploy" / "systemd" / "smd.socket").read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RestartPreventExitStatus=2",
        "Requires=smd.socket",
        "AmbientCapabilities=CAP_SYS_TIME",
    ):
        assert f"\n{line}\n" in service
    assert "\nListenStream=@proxy.ss.lws\n" in sock
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed: the units were checked by reading only")
    for name in ("smd.socket", "smd.service"):
        text = (ROOT / "deploy" / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/opt/smdbus/bin/smd", sys.executable))
    r = subprocess.run(
        [verify, "verify", str(tmp_path / "smd.socket"), str(tmp_path / "smd.service")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MANPATH": str(ROOT / "src/smdbus/data/man")},  # Documentation=
    )
    assert r.returncode == 0, r.stderr
    assert "smd.service" not in r.stderr, r.stderr


async def test_ready_names_the_socket_systemd_passed(
    tmp_path: Path, receiver: tuple[socket.socket, str]
) -> None:
    """Socket activation: READY's STATUS says where the bus really is, not the configured path."""
    from smdbus.daemon import Daemon, parse_config, prepare

    sock, notify_path = receiver
    passed = tmp_path / "from-systemd.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(passed))
    listener.listen(8)
    config = parse_config(
        f'[bus]\nsocket = "{tmp_path / "configured.sock"}"\n'
        "[routes]\nenabled = false\n[cpd]\nenabled = false\n"
        "[gates]\ndhcp = false\ntime = false\n"
    )
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}
    prepared = prepare(config, env)
    assert prepared.activated_fd == 3
    prepared.activated_fd = listener.detach()  # where our test process holds it; the proxy's now
    daemon = Daemon(prepared, notifier=SystemdNotifier(notify_path))
    run = asyncio.create_task(daemon.run())
    try:
        loop = asyncio.get_running_loop()
        while True:
            got = (await loop.run_in_executor(None, sock.recv, 512)).decode()
            if got.startswith("READY=1"):
                break
        assert got == f"READY=1\nSTATUS=OPERATIONAL, bus on {passed}"
    finally:
        daemon.stop()
        await asyncio.wait_for(run, 10)


def test_ready_at_an_earlier_state_on_a_boot_without_network(
    tmp_path: Path, receiver: tuple[socket.socket, str], make_netns: Callable[..., str]
) -> None:
    """No address anywhere: the boot holds before DHCP for ever, yet systemd hears READY.

    The shipped unit passes ``--ready-at IFACE_COLDPLUG`` so that ``systemctl
    start`` returns on a first boot without a network.
    """
    sock, notify_path = receiver
    ns = make_netns("smdrdy", "d0")
    config = tmp_path / "daemon.toml"
    config.write_text(f'[bus]\nsocket = "{tmp_path / "bus.sock"}"\n[cpd]\nenabled = false\n')
    proc = subprocess.Popen(
        [
            *("ip", "netns", "exec", ns),
            *(sys.executable, "-m", "smdbus", "daemon", "--config", str(config)),
            *("--ready-at", "IFACE_COLDPLUG"),
        ],
        env={**os.environ, "NOTIFY_SOCKET": notify_path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        sock.settimeout(30)
        got = [sock.recv(512).decode()]
        while not got[-1].startswith("READY=1"):
            got.append(sock.recv(512).decode())
        assert got[-1] == f"READY=1\nSTATUS=IFACE_COLDPLUG, bus on {tmp_path / 'bus.sock'}"
        assert "STATUS=DHCP" not in got  # held: no network, no address
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
