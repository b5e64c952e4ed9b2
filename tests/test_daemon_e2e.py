"""``smd daemon`` as a real process, in a network namespace made by the test.

The namespace starts with ``lo`` and a dummy link ``d0`` up but no address,
so the daemon must hold the boot at DHCP until the test gives ``d0`` an
address. Inside the namespace the test runs (on sockets it makes there) an
HTTP server answering 204 for captive portal detection and an SNTP
responder; the daemon's config makes its clock "invalid" (valid_after in
2096) so TIME_VALID really goes through SNTP. A client on the proxy wire
(smdbus.client) watches SYSTEM_STATE, NETWORK and INTERACTION; systemd's
notify socket is a datagram socket of the test. Every wait is for a real
event (a message, a datagram, the process exit), bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import itertools
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
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeNetns
from smdbus.classes import Class
from smdbus.client import Client
from smdbus.daemon._sntp import build_response

SMD = str(Path(sys.executable).with_name("smd"))
ROOT = Path(__file__).resolve().parents[1]
CLONE_NEWNET = 0x40000000
FUTURE = 4_100_000_000  # 2099: what the test's SNTP server says
VALID_AFTER = 4_000_000_000  # 2096: the daemon's clock is "invalid" until SNTP answers
BOOT = [
    "PRE_PRIV_DROP",
    "INITIALIZED",
    "COLLECTING_STDIN",
    "IFACE_COLDPLUG",
    "DHCP",
    "CPD_PRE_TIME",
    "TIME_VALID",
    "CPD_POST_TIME",
    "POLICY_VALID",
    "REGISTERED",
    "AUTH1",
    "AUTH2",
    "ONE_TIME_UPDATES",
    "OPERATIONAL",
]
WAIT = 10.0  # bound for any single awaited event

_names = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def netns(make_netns: MakeNetns) -> str:
    """A fresh namespace: lo up, dummy d0 up with no address, IPv6 off."""
    return make_netns("smdd", "d0")


def sockets_in(netns: str, *factories: Callable[[], socket.socket]) -> list[socket.socket]:
    """Make sockets inside ``netns`` (a short-lived thread joins it; the sockets stay there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    out: list[socket.socket] = []
    errors: list[BaseException] = []

    def worker() -> None:
        fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
            out.extend(f() for f in factories)
        except BaseException as e:
            errors.append(e)
        finally:
            os.close(fd)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return out


def _tcp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    s.setblocking(False)
    return s


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


class Servers:
    """An HTTP 204 server and an SNTP responder, counting what they served."""

    def __init__(self) -> None:
        self.http_requests = 0
        self.sntp_requests = 0
        self.http_port = 0
        self.sntp_port = 0
        self._server: asyncio.AbstractServer | None = None
        self._udp: asyncio.DatagramTransport | None = None

    async def start(self, tcp: socket.socket, udp: socket.socket) -> None:
        self.http_port = tcp.getsockname()[1]
        self.sntp_port = udp.getsockname()[1]
        self._server = await asyncio.start_server(self._http, sock=tcp)
        loop = asyncio.get_running_loop()
        servers = self
        started = time.monotonic()

        class Sntp(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                servers.sntp_requests += 1
                now = FUTURE + (time.monotonic() - started)
                reply = build_response(data, receive_unix=now, transmit_unix=now + 0.0001)
                self.transport.sendto(reply, addr)

        transport, _ = await loop.create_datagram_endpoint(Sntp, sock=udp)
        self._udp = transport

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            self.http_requests += 1
            writer.write(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._udp is not None:
            self._udp.close()


class Watcher:
    """What a client of the daemon's bus saw, with bounded waits for more."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    def __call__(self, cls: int, timestamp_us: int, payload: bytes) -> None:
        self.messages.append((cls, json.loads(payload)))
        self._changed.set()

    def states(self) -> list[str]:
        return [m["state"] for c, m in self.messages if c == Class.SYSTEM_STATE and "state" in m]

    async def until(self, what: str, pred: Callable[[], bool], timeout: float = WAIT) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not pred():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"waited {timeout} s for {what}; saw {self.messages}") from None


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket, read all the time, as systemd does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            self.messages.append(data.decode())
            self._changed.set()

    async def until(self, field: str, start: int = 0, timeout: float = WAIT) -> list[str]:
        """Wait for a message with ``field`` among those from index ``start`` on."""
        try:
            async with asyncio.timeout(timeout):
                while not any(field in m.split("\n") for m in self.messages[start:]):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {field} from the daemon; got {self.messages}") from None
        return self.messages[start:]

    def close(self) -> None:
        self._task.cancel()
        self.sock.close()


def _policy(path: Path, release: str) -> None:
    doc = {
        "release": release,
        "product": "smdbus-test",
        "schema-version": 1,
        "retry": [{"cpd": {"backoff": [100], "conceal": 1, "jitterpc": 0}}],
        "certs": [],
        "trust_stores": [],
        "s": [
            {
                "captive_portal_detect": {
                    "endpoint": "connectivitycheck.invalid",
                    "http_url": "generate_204",
                    "port": 80,
                    "protocol": "h1",
                    "http_method": "GET",
                    "http_expect": 204,
                    "http_fail_redirect": True,
                    "retry": "cpd",
                }
            }
        ],
    }
    path.write_text(json.dumps(doc))


@contextlib.contextmanager
def _output_on_failure(*files: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for f in files:
            if f.exists():
                print(f"--- {f.name} ---\n{f.read_text(errors='replace')}")
        raise


async def _exit(proc: subprocess.Popen[bytes], timeout: float = WAIT) -> int:
    async with asyncio.timeout(timeout):
        while proc.poll() is None:
            await asyncio.sleep(0.02)
    return proc.returncode


@pytest.fixture
async def servers(netns: str) -> AsyncIterator[Servers]:
    tcp, udp = sockets_in(netns, _tcp, _udp)
    s = Servers()
    await s.start(tcp, udp)
    yield s
    await s.close()


async def test_daemon_boot_network_buttons_reload_and_stop(
    netns: str, servers: Servers, tmp_path: Path
) -> None:
    sock_path = tmp_path / "smd.sock"
    policy = tmp_path / "policy.json"
    _policy(policy, "test-1")
    config = tmp_path / "daemon.toml"
    config.write_text(
        f"""
[bus]
socket = "{sock_path}"
[policy]
file = "policy.json"
[boot]
wait_for_peers = 1
[cpd]
url = "http://127.0.0.1:{servers.http_port}/generate_204"
[time]
valid_after = {VALID_AFTER}
ntp_server = "127.0.0.1"
ntp_port = {servers.sntp_port}
set_clock = "process"
[[buttons.scripted]]
controller = "bc"
pattern = "0-102"
"""
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), NO_COLOR="1")
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, SMD, "daemon", "--live", "--config", str(config)],
            stdout=o,
            stderr=e,
            env=env,
        )
    watcher = Watcher()
    client: Client | None = None
    try:
        with _output_on_failure(out, err):
            await notify.until(f"STATUS=serving the bus on {sock_path}")
            client = Client(
                str(sock_path),
                Class.SYSTEM_STATE | Class.NETWORK | Class.INTERACTION,
                on_message=watcher,
            )
            await client.start(wait=True)

            # The boot runs to IFACE_COLDPLUG and holds: d0 has no address yet.
            await watcher.until("IFACE_COLDPLUG", lambda: "IFACE_COLDPLUG" in watcher.states())
            client.send_json(Class.SYSTEM_STATE, {"query": "state"})
            await watcher.until(
                "the answer to the state query",
                lambda: any("current" in m for _, m in watcher.messages),
            )
            answer = next(m for _, m in watcher.messages if "current" in m)
            assert answer["current"] == "IFACE_COLDPLUG"
            assert watcher.states() == BOOT[:4]

            # An address: DHCP passes, CPD asks our HTTP server, SNTP sets the clock.
            _ip("-n", netns, "addr", "add", "10.9.0.2/24", "dev", "d0")
            await watcher.until("OPERATIONAL", lambda: "OPERATIONAL" in watcher.states())
            assert watcher.states() == BOOT
            seq = [
                m.get("state") or m.get("result") or m.get("rt")
                for c, m in watcher.messages
                if c != Class.INTERACTION
            ]
            assert "OK" in seq and seq.index("DHCP") < seq.index("OK") < seq.index("CPD_PRE_TIME")
            assert {"rt": "add"} in [m for c, m in watcher.messages if c == Class.NETWORK]
            assert servers.http_requests >= 1 and servers.sntp_requests >= 1
            sent = await notify.until("READY=1")
            assert any("STATUS=OPERATIONAL" in m for m in sent)

            # The scripted button plays once OPERATIONAL is reached.
            def button_events() -> list[str]:
                return [
                    m["event"]
                    for c, m in watcher.messages
                    if c == Class.INTERACTION and m.get("src") == "bc/btn"
                ]

            await watcher.until("a click", lambda: "click" in button_events())
            assert button_events() == ["down", "up", "click"]

            # A route via a gateway: rt add, a cpdcheck trigger, and a fresh CPD result.
            before = len(watcher.messages)
            checks = servers.http_requests
            _ip("-n", netns, "route", "add", "10.20.0.0/16", "via", "10.9.0.1")
            await watcher.until(
                "a CPD result after the gateway change",
                lambda: (
                    {"type": "cpd", "result": "OK"} in [m for _, m in watcher.messages[before:]]
                ),
            )
            after = [m for c, m in watcher.messages[before:] if c == Class.NETWORK]
            assert after[:2] == [{"rt": "add"}, {"trigger": "cpdcheck", "src": "gw-change"}]
            assert servers.http_requests == checks + 1
            before = len(watcher.messages)
            _ip("-n", netns, "route", "del", "10.20.0.0/16")
            await watcher.until(
                "rt del",
                lambda: {"rt": "del"} in [m for _, m in watcher.messages[before:]],
            )

            # SIGHUP: the POLICY_INVALID cycle with the policy file re-read.
            _policy(policy, "test-2")
            mark = len(watcher.states())
            notified = len(notify.messages)
            proc.send_signal(signal.SIGHUP)
            await watcher.until(
                "OPERATIONAL after SIGHUP",
                lambda: watcher.states()[mark:][-1:] == ["OPERATIONAL"],
            )
            assert watcher.states()[mark:] == ["POLICY_INVALID", *BOOT[1:]]
            cycle = await notify.until("READY=1", notified)
            assert cycle[0].startswith("RELOADING=1\nMONOTONIC_USEC=")

            # SIGTERM: DESTROYING reaches the client, the connection closes, exit 0.
            mark = len(watcher.states())
            proc.send_signal(signal.SIGTERM)
            await watcher.until("DESTROYING", lambda: "DESTROYING" in watcher.states()[mark:])
            assert watcher.states()[mark:] == ["POLICY_INVALID", "DESTROYING"]
            assert await _exit(proc) == 0
            await notify.until("STOPPING=1")
            assert client.stats().disconnects >= 1
            assert not sock_path.exists()
            text = out.read_text()
            assert "policy reloaded (release 'test-2')" in text
            assert "clock set from 127.0.0.1" in text
    finally:
        if client is not None:
            await client.close()
        notify.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ('[gates]\ncpd = "maybe"\n', "gates.cpd"),
        ("[gates]\ndchp = true\n", "gates.dchp"),
        ("[time]\nntp_port = 70000\n", "time.ntp_port"),
        ('[[buttons.controller]]\nname = "a"\nsource = "evdev"\n', "buttons.controller[0]"),
        ("[bus\n", ""),
        ('[bus]\nsocket = "SOCK"\ngroup = "no-such-group-x"\n', "bus.group"),
        ('[bus]\nsocket = "SOCK"\ngroup = 99999999999999999999\n', "bus.group"),
        (f'[bus]\nsocket = "SOCK"\nmode = {"[" * 2000}{"]" * 2000}\n', "bus.mode"),
        ('[bus]\nsocket = "LONG"\n', "bus.socket"),
        ('[bus]\nsocket = "SOCK"\nqueue_depth = 9223372036854775807\n', "bus.queue_depth"),
        ('[bus]\nsocket = "SOCK"\nmax_buffer = 9223372036854775807\n', "bus.max_buffer"),
        ('[bus]\nsocket = "SOCK"\nstall_timeout = 1e308\n', "bus.stall_timeout"),
    ],
)
def test_broken_config_fails_fast_naming_file_and_field(
    tmp_path: Path, toml: str, field: str
) -> None:
    """Refused by ``--check`` and at start alike: exit 2, one line, no socket left behind."""
    config = tmp_path / "bad.toml"
    sock = tmp_path / "never.sock"
    long = tmp_path / f"{'x' * 110}.sock"
    text = f'[log]\nlevel = "info"\n[routes]\nenabled = false\n[cpd]\nenabled = false\n{toml}'
    text = text.replace("[bus\n", f'[bus\nsocket="{sock}"\n')
    config.write_text(text.replace("SOCK", str(sock)).replace("LONG", str(long)))
    for check in (["--check"], []):
        started = time.monotonic()
        r = subprocess.run(
            [SMD, "daemon", *check, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 2, (check, r.stderr)
        assert str(config) in r.stderr
        assert f": {field}: " in r.stderr if field else "not valid TOML" in r.stderr
        assert r.stderr.count("\n") == 1, "one clear line, no traceback"
        assert not sock.exists() and not long.exists()
        assert time.monotonic() - started < 10


def _as_nobody() -> list[str]:
    """The command prefix that runs a program as nobody: a second, unprivileged user."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running a program as nobody needs root and setpriv (util-linux)")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_a_socket_group_the_daemon_may_not_use_fails_before_binding() -> None:
    """As nobody (no CAP_CHOWN, not in group root): refused at start, exit 2, no socket file."""
    shared = Path(tempfile.mkdtemp(prefix="smd-group-"))
    try:
        shared.chmod(0o777)
        sock = shared / "bus.sock"
        config = shared / "daemon.toml"
        config.write_text(
            f'[bus]\nsocket = "{sock}"\ngroup = "root"\n'
            "[routes]\nenabled = false\n[cpd]\nenabled = false\n"
        )
        config.chmod(0o644)
        as_nobody = _as_nobody()
        r = subprocess.run(
            [*as_nobody, SMD, "daemon", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 2, r.stderr
        assert f"{config}: bus.group: " in r.stderr and "CAP_CHOWN" in r.stderr
        assert r.stderr.count("\n") == 1, "one clear line, no traceback"
        assert not sock.exists()
    finally:
        shutil.rmtree(shared)


QUIET = """
[routes]
enabled = false
[cpd]
enabled = false
[gates]
dhcp = false
time = false
"""


def _spawn_daemon(
    config: Path, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], NotifySocket, Path]:
    """``smd daemon --config``, telling a notify socket of the test; output in stderr.txt."""
    notify = NotifySocket(tmp_path / "notify.sock")
    err = tmp_path / "stderr.txt"
    with err.open("wb") as e:
        proc = subprocess.Popen(
            [SMD, "daemon", "--config", str(config)],
            stdout=e,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, NOTIFY_SOCKET=str(notify.path)),
        )
    return proc, notify, err


@dataclass
class Starting:
    """A daemon caught while it reads its config (from a FIFO the test writes)."""

    proc: subprocess.Popen[bytes]
    notify: NotifySocket
    err: Path
    sock: Path
    fd: int

    def write_config(self) -> None:
        """Hand over the config (a filesystem socket, nothing slow) and let it go on."""
        os.write(self.fd, f'[bus]\nsocket = "{self.sock}"\n{QUIET}'.encode())
        os.close(self.fd)
        self.fd = -1


@contextlib.asynccontextmanager
async def _daemon_reading_its_config(tmp_path: Path) -> AsyncIterator[Starting]:
    """Start the daemon with its config in a FIFO; yield once it has opened it.

    The sentinel is the FIFO's reader: opening the write end succeeds only
    once the daemon has opened its config, so a signal sent then arrives
    while it is still loading (in the first ~0.2 s of its life).
    """
    fifo = tmp_path / "daemon.toml"
    os.mkfifo(fifo)
    proc, notify, err = _spawn_daemon(fifo, tmp_path)
    starting: Starting | None = None
    try:
        async with asyncio.timeout(WAIT):
            while starting is None:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:  # ENXIO: nobody has it open for reading yet
                    if exc.errno != errno.ENXIO or proc.poll() is not None:
                        raise
                    await asyncio.sleep(0.005)
                else:
                    starting = Starting(proc, notify, err, tmp_path / "smd.sock", fd)
        with _output_on_failure(err):
            yield starting
    finally:
        if starting is not None and starting.fd >= 0:
            os.close(starting.fd)
        notify.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_sighup_while_starting_neither_kills_nor_is_lost(tmp_path: Path) -> None:
    """SIGHUP's default action would kill it (exit 129): caught from the first moment, the
    daemon boots, re-reading the policy before the boot, and stops cleanly."""
    async with _daemon_reading_its_config(tmp_path) as d:
        d.proc.send_signal(signal.SIGHUP)
        d.write_config()
        await d.notify.until("READY=1")
        text = d.err.read_text()
        assert "SIGHUP while starting: the policy is re-read before the boot" in text
        assert text.index("policy reloaded") < text.index("booting toward OPERATIONAL")
        d.proc.send_signal(signal.SIGTERM)
        assert await _exit(d.proc) == 0
        assert not d.sock.exists()


async def test_sigterm_while_starting_stops_before_serving(tmp_path: Path) -> None:
    """SIGTERM before the loop runs: exit 0 without ever serving (no socket file, no READY)."""
    async with _daemon_reading_its_config(tmp_path) as d:
        d.proc.send_signal(signal.SIGTERM)
        d.write_config()
        assert await _exit(d.proc) == 0
        assert "SIGTERM while starting: stopping before serving" in d.err.read_text()
        assert not d.sock.exists()
        with contextlib.suppress(BlockingIOError):
            while True:  # what is still queued on the notify socket
                d.notify.messages.append(d.notify.sock.recv(4096).decode())
        assert not any("READY=1" in m or "serving" in m for m in d.notify.messages)


FLOOD = """
import socket, sys
from smdbus.classes import Class
from smdbus.wire import SMD_STREAMTYPE, Decoder, Role, RxPayload, StreamType, TxPayload
from smdbus.wire import encode_all, parse_address
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(parse_address(sys.argv[1]))
burst = encode_all([TxPayload(Class.NETWORK, 0, b'{"trigger":"cpdcheck","src":"flood"}')] * 100)
s.sendall(encode_all([StreamType(SMD_STREAMTYPE, Class.NETWORK)]) + burst)
decoder = Decoder(Role.CLIENT)
while data := s.recv(65536):  # each CPD result: ask again at once, 100 times
    for ev in decoder.feed(data):
        if isinstance(ev, RxPayload) and b'"type":"cpd"' in ev.payload:
            s.sendall(burst)
"""


async def test_a_local_users_cpdcheck_flood_is_rate_limited(tmp_path: Path) -> None:
    """nobody answers every CPD result with 100 cpdcheck triggers (on main: a probe loop,
    one user made 3 001 HTTP probes in 10 s). Every trigger is delivered; the checks they
    ask for start at most one per cpd.min_interval."""
    as_nobody = _as_nobody()
    servers = Servers()
    await servers.start(_tcp(), _udp())
    address = f"@smd-{os.getpid()}-{next(_names)}"
    interval = 0.5
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'[bus]\nsocket = "{address}"\n[cpd]\nmin_interval = {interval}\n'
        f'url = "http://127.0.0.1:{servers.http_port}/generate_204"\n'
        "[routes]\nenabled = false\n[gates]\ndhcp = false\ntime = false\n"
        # NETWORK open to every user (by default only root and the daemon may send it)
        "[access]\ndefaults = false\n"
    )
    proc, notify, err = _spawn_daemon(config, tmp_path)
    flooder: subprocess.Popen[bytes] | None = None
    watcher = Watcher()
    client = Client(address, Class.NETWORK, on_message=watcher)
    try:
        with _output_on_failure(err):
            await notify.until("READY=1")  # the boot's own check is done: CPD_PRE_TIME passed
            await client.start(wait=True)
            before = servers.http_requests
            started = time.monotonic()
            flooder = subprocess.Popen([*as_nobody, sys.executable, "-c", FLOOD, address])

            def results() -> int:
                return sum(1 for _, m in watcher.messages if m.get("type") == "cpd")

            await watcher.until("4 CPD results", lambda: results() >= 4, timeout=30)
            elapsed = time.monotonic() - started
            probes = servers.http_requests - before
            triggers = sum(1 for _, m in watcher.messages if m.get("src") == "flood")
            assert triggers >= 100  # delivered to everyone: the limit is on probes only
            assert probes <= 1 + elapsed / interval, (probes, elapsed)
            flooder.kill()
            proc.send_signal(signal.SIGTERM)
            assert await _exit(proc) == 0
            logged = err.read_text().count("cpdcheck:flood")
            # two lines per check (owed, started), not one per trigger; the last may be owed only
            assert logged <= 2 * (servers.http_requests - before) + 1, logged
    finally:
        await client.close()
        notify.close()
        await servers.close()
        for p in (flooder, proc):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


async def test_a_peers_forged_state_does_not_change_the_live_view(tmp_path: Path) -> None:
    """Issue 12 point 5: with the policy's defaults off, nobody may send SYSTEM_STATE and
    forges DESTROYING; the live view's ``▸`` lines are the daemon's state manager's, so it
    shows a warning naming the sender instead, and DESTROYING only when the daemon stops."""
    as_nobody = _as_nobody()
    servers = Servers()
    await servers.start(_tcp(), _udp())
    address = f"@smd-{os.getpid()}-{next(_names)}"
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'[bus]\nsocket = "{address}"\n'
        f'[cpd]\nurl = "http://127.0.0.1:{servers.http_port}/generate_204"\n'
        "[routes]\nenabled = false\n[gates]\ndhcp = false\ntime = false\n"
        "[access]\ndefaults = false\n"  # SYSTEM_STATE open to every user
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    out = tmp_path / "live.txt"
    with out.open("wb") as o:
        proc = subprocess.Popen(
            [SMD, "daemon", "--live", "--config", str(config)],
            stdout=o,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, NOTIFY_SOCKET=str(notify.path), NO_COLOR="1"),
        )
    try:
        with _output_on_failure(out):
            await notify.until("READY=1")
            for cls, body in (("SYSTEM_STATE", '{"state":"DESTROYING"}'), ("METRICS", "sentinel")):
                send = subprocess.run(
                    [*as_nobody, SMD, "send", cls, body, "--socket", address],
                    capture_output=True, text=True, timeout=WAIT,
                )  # fmt: skip
                assert send.returncode == 0, send.stderr
            async with asyncio.timeout(WAIT):
                while "sentinel" not in out.read_text():
                    await asyncio.sleep(0.02)
            text = out.read_text()
            assert "▸ DESTROYING" not in text
            assert text.count("▸ OPERATIONAL") == 1
            (warning,) = [line for line in text.splitlines() if "published state" in line]
            assert "uid 65534" in warning and "not the daemon's state (ignored)" in warning
            proc.send_signal(signal.SIGTERM)
            assert await _exit(proc) == 0
            assert "▸ DESTROYING" in out.read_text()  # its own, when it stops
    finally:
        notify.close()
        await servers.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


CONNECT_MANY = """
import socket, sys
from smdbus.wire import SMD_STREAMTYPE, StreamType, encode_all, parse_address
frame = encode_all([StreamType(SMD_STREAMTYPE, 0, 1)])
socks, results = [], []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(parse_address(sys.argv[1]))
    s.sendall(frame)
    head = s.recv(4)  # CREATE_RESULT: 0x56, len (2 bytes), result
    results.append(head[3] if len(head) == 4 and head[0] == 0x56 else -1)
    socks.append(s)
print(results.count(0), results.count(1), flush=True)
"""


async def test_the_access_quota_is_the_one_per_uid_connection_limit(tmp_path: Path) -> None:
    """``[access.quota.user] connections = 130``: nobody holds 130 connections, the 131st is
    refused (before, ``[bus] max_connections_per_uid``, 128, refused the 129th as well)."""
    as_nobody = _as_nobody()
    address = f"@smd-{os.getpid()}-{next(_names)}"
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'[bus]\nsocket = "{address}"\n[cpd]\nenabled = false\n[routes]\nenabled = false\n'
        '[gates]\ndhcp = false\ntime = false\ncpd = "off"\n'
        "[access.quota.user]\nconnections = 130\n"
    )
    proc, notify, err = _spawn_daemon(config, tmp_path)
    try:
        with _output_on_failure(err):
            await notify.until("READY=1")
            many = subprocess.run(
                [*as_nobody, sys.executable, "-c", CONNECT_MANY, address, "131"],
                capture_output=True, text=True, timeout=WAIT,
            )  # fmt: skip
            assert many.returncode == 0, many.stderr
            assert many.stdout.split() == ["130", "1"]
            assert "uid 65534 holds 130 connections (quota 130)" in err.read_text()
            proc.send_signal(signal.SIGTERM)
            assert await _exit(proc) == 0
    finally:
        notify.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_broken_policy_fails_fast_naming_file_and_path(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    _policy(policy, "bad")
    doc = json.loads(policy.read_text())
    doc["s"][0]["captive_portal_detect"]["port"] = "eighty"
    policy.write_text(json.dumps(doc))
    sock = tmp_path / "never.sock"
    config = tmp_path / "daemon.toml"
    config.write_text(f'[bus]\nsocket = "{sock}"\n[policy]\nfile = "policy.json"\n')
    r = subprocess.run(
        [SMD, "daemon", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2
    assert str(policy) in r.stderr and "captive_portal_detect.port" in r.stderr
    assert not sock.exists()


async def test_socket_activation_serves_the_passed_socket_and_leaves_it(tmp_path: Path) -> None:
    """LISTEN_FDS/LISTEN_PID as systemd sets them; a client connected before the daemon ran."""
    path = tmp_path / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'[bus]\nsocket = "{tmp_path / "unused.sock"}"\n[boot]\nwait_for_peers = 1\n{QUIET}'
    )
    watcher = Watcher()
    client = Client(str(path), Class.SYSTEM_STATE, on_message=watcher)
    await client.start(wait=False)  # connects into the backlog; nobody has accepted yet
    fd = listener.fileno()
    # As systemd does: the socket at fd 3, LISTEN_PID = the daemon's own pid (we exec it).
    activate = (
        "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); fd != 3 and os.close(fd); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
        "os.execv(sys.argv[2], sys.argv[2:])"
    )
    err = tmp_path / "stderr.txt"
    with err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-c", activate, str(fd), SMD, "daemon", "--config", str(config)],
            pass_fds=[fd],
            stdout=subprocess.DEVNULL,
            stderr=e,
        )
    listener.close()
    try:
        with _output_on_failure(err):
            await watcher.until("OPERATIONAL", lambda: "OPERATIONAL" in watcher.states())
        assert watcher.states() == BOOT
        proc.send_signal(signal.SIGTERM)
        assert await _exit(proc) == 0
        assert path.exists(), "the socket file belongs to systemd and stays"
        assert not (tmp_path / "unused.sock").exists()
    finally:
        await client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


FORGE = """
import socket, sys
from smdbus.classes import Class
from smdbus.wire import SMD_STREAMTYPE, StreamType, TxPayload, encode_all, parse_address
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(parse_address(sys.argv[1]))
s.sendall(encode_all([StreamType(SMD_STREAMTYPE, 0, 1),
                      TxPayload(Class.SYSTEM_STATE, 0, b'{"state":"FORGED"}'),
                      TxPayload(Class.METRICS, 0, b'{"sentinel":1}')]))
s.shutdown(socket.SHUT_WR)
while s.recv(4096):
    pass
"""


async def test_socket_activation_serves_a_file_and_the_abstract_name_under_one_policy(
    tmp_path: Path,
) -> None:
    """Issue 12 point 4: systemd passes two sockets (a file, and ``@proxy.ss.lws`` for C
    programs built with lws' default); one proxy serves both: a message sent on one reaches
    a client of the other, and nobody's forged SYSTEM_STATE is refused on either."""
    as_nobody = _as_nobody()
    path = tmp_path / "bus.sock"
    abstract = f"@smd-{os.getpid()}-{next(_names)}"
    listeners = []
    for address in (str(path), "\0" + abstract[1:]):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
        listener.listen(8)
        listeners.append(listener)
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'[bus]\nsocket = "{tmp_path / "unused.sock"}"\n[boot]\nwait_for_peers = 1\n{QUIET}'
    )
    watcher = Watcher()
    client = Client(str(path), Class.SYSTEM_STATE | Class.METRICS, on_message=watcher)
    await client.start(wait=False)
    fds = [sock.fileno() for sock in listeners]
    activate = (
        "import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); "
        "os.dup2(a, 100); os.dup2(b, 101); os.dup2(100, 3); os.dup2(101, 4); "
        "os.close(100); os.close(101); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='2'); "
        "os.execv(sys.argv[3], sys.argv[3:])"
    )
    err = tmp_path / "stderr.txt"
    with err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-c", activate, *map(str, fds), SMD, "daemon", "--config",
             str(config)],
            pass_fds=fds, stdout=subprocess.DEVNULL, stderr=e,
        )  # fmt: skip
    for listener in listeners:
        listener.close()
    try:
        with _output_on_failure(err):
            await watcher.until("OPERATIONAL", lambda: "OPERATIONAL" in watcher.states())
            forge = subprocess.run(
                [*as_nobody, sys.executable, "-c", FORGE, abstract],
                capture_output=True, text=True, timeout=WAIT,
            )  # fmt: skip
            assert forge.returncode == 0, forge.stderr
            await watcher.until("the sentinel", lambda: any("sentinel" in m for _, m in
                                                              watcher.messages))  # fmt: skip
            assert "FORGED" not in watcher.states()
            assert "refused: pid" in err.read_text() and "uid 65534" in err.read_text()
        proc.send_signal(signal.SIGTERM)
        assert await _exit(proc) == 0
    finally:
        await client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_make_run_demo_reaches_operational_without_a_network(
    netns: str, tmp_path: Path
) -> None:
    """What ``make run`` shows, on a machine with no address and no internet (only lo).

    The demo's configuration as shipped, with its two waits shortened (the DHCP
    give-up, 5 s, and the scripted button's delay, 2 s): a process's clock cannot
    be moved from outside, and waiting them out is what a test must not do. That
    the gate gives up after exactly its timeout is tested on a manual scheduler
    (tests/test_daemon_gates.py).
    """
    demo = (ROOT / "deploy" / "demo.toml").read_text()
    for shipped, short in (
        ("dhcp_timeout = 5.0", "dhcp_timeout = 0.3"),
        ("delay = 2.0", "delay = 0.1"),
    ):
        assert shipped in demo, f"deploy/demo.toml no longer has {shipped!r}"
        demo = demo.replace(shipped, short)
    config = tmp_path / "demo.toml"
    config.write_text(demo)
    _ip("-n", netns, "link", "set", "d0", "down")
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            SMD,
            "daemon",
            "--live",
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, NO_COLOR="1"),
    )
    assert proc.stdout is not None
    lines: list[str] = []
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(30):
            while not any("demo/user click" in line for line in lines):
                raw = await loop.run_in_executor(None, proc.stdout.readline)
                if not raw:
                    break
                lines.append(raw.decode())
        text = "".join(lines)
        assert "▸ OPERATIONAL" in text, text
        assert "no usable address after 0.3 s" in text
        assert "captive portal detection: No internet" in text
        assert "stepping on" in text
        assert "send INTERACTION '{\"hello\":1}'" in text
        assert "demo/user click" in text
        proc.send_signal(signal.SIGINT)
        rest = await loop.run_in_executor(None, proc.stdout.read)
        assert await _exit(proc) == 0
        assert "DESTROYING" in rest.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
