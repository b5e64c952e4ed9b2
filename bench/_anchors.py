"""The anchors measured beside smdbus: a ZeroMQ XSUB/XPUB proxy, mosquitto, and a floor.

ZeroMQ and mosquitto are set up to be lossless, as smdbus is: ZeroMQ with every
high-water mark at 0 (unbounded), mosquitto with ``max_queued_messages 0``.
Clients are Python (pyzmq, paho-mqtt 2.x) like ours.

The floor (issue 17, goal 5) is what two process hops cost on this machine in
Python with nothing else: an asyncio relay that copies each read of the
publisher to every subscriber (no parsing, no bus, no bounds), and blocking
clients (a length-prefixed frame per ``send``; a ``recv`` loop that splits
them). A broker cannot be faster than this in Python on the same loop.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from typing import Any

from _anchors_harness import MP, Plan, Tally, publish_sync

MOSQUITTO = "/usr/sbin/mosquitto"


def _unique(tag: str) -> str:
    return f"{tag}-{os.getpid()}-{time.monotonic_ns()}"


class ZeroMQ:
    """``zmq.proxy(XSUB, XPUB)`` in its own process, ``ipc://`` endpoints."""

    name = "zeromq"

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="smdbench-zmq-")
        self.front = f"ipc://{self._dir}/in"
        self.back = f"ipc://{self._dir}/out"
        self._proc: Any = None

    def start(self) -> None:
        self._proc = MP.Process(target=_zmq_proxy, args=(self.front, self.back), daemon=True)
        self._proc.start()
        for _ in range(200):
            if os.path.exists(f"{self._dir}/in") and os.path.exists(f"{self._dir}/out"):
                return
            time.sleep(0.01)
        raise RuntimeError("ZeroMQ proxy did not bind its endpoints")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
        shutil.rmtree(self._dir, ignore_errors=True)

    def broker_pid(self) -> int:
        return int(self._proc.pid)

    def run_publisher(self, plan: Plan) -> None:
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.connect(self.front)

        class Pub:
            def send(self, payload: bytes) -> None:
                sock.send(payload, copy=True)

            def flush(self) -> None:
                pass

            def close(self) -> None:
                sock.close(linger=-1)  # wait until everything queued is written
                ctx.term()

        publish_sync(plan, Pub())

    def run_subscriber(self, index: int, plan: Plan) -> None:
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(self.back)
        tally = Tally(index, plan)
        recv = sock.recv
        feed = tally.feed
        while feed(recv(copy=True)):
            pass
        sock.close(linger=0)
        ctx.term()


def _zmq_proxy(front: str, back: str) -> None:
    import zmq

    ctx = zmq.Context()
    xsub = ctx.socket(zmq.XSUB)
    xpub = ctx.socket(zmq.XPUB)
    for s in (xsub, xpub):
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
    xsub.bind(front)
    xpub.bind(back)
    zmq.proxy(xsub, xpub)


class Mosquitto:
    """mosquitto 2.0 on a Unix socket (``listener 0 PATH``), paho-mqtt QoS 0."""

    name = "mosquitto"
    topic = "bench/smd"

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="smdbench-mqtt-")
        self.path = f"{self._dir}/mqtt.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """None when mosquitto can run here, else why not."""
        if not os.access(MOSQUITTO, os.X_OK):
            return f"{MOSQUITTO} not installed (Debian package mosquitto)"
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            return "paho-mqtt not installed"
        return None

    def start(self) -> None:
        conf = f"{self._dir}/mosquitto.conf"
        with open(conf, "w") as f:
            f.write(
                f"listener 0 {self.path}\n"
                "allow_anonymous true\n"
                "max_queued_messages 0\n"
                "persistence false\n"
                "log_dest none\n"
            )
            if os.geteuid() == 0:
                f.write("user root\n")
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(300):
            if os.path.exists(self.path):
                return
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}")
            time.sleep(0.01)
        raise RuntimeError("mosquitto did not open its Unix socket")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def broker_pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _client(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        c = mqtt.Client(CallbackAPIVersion.VERSION2, transport="unix")
        c.max_queued_messages_set(0)
        c.max_inflight_messages_set(0)
        return c

    def run_publisher(self, plan: Plan) -> None:
        c = self._client()
        c.connect(self.path)
        c.loop_start()
        topic = self.topic
        last: list[Any] = []

        class Pub:
            def send(self, payload: bytes) -> None:
                last[:] = [c.publish(topic, payload, qos=0)]

            def flush(self) -> None:
                pass

            def close(self) -> None:
                if last:
                    last[0].wait_for_publish(timeout=60)
                c.disconnect()
                c.loop_stop()

        publish_sync(plan, Pub())

    def run_subscriber(self, index: int, plan: Plan) -> None:
        c = self._client()
        tally = Tally(index, plan)

        def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            client.subscribe(self.topic, qos=0)

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            if not tally.feed(msg.payload):
                client.disconnect()

        c.on_connect = on_connect
        c.on_message = on_message
        c.connect(self.path)
        c.loop_forever()


class Floor:
    """A minimal asyncio relay in its own process; blocking Python clients."""

    name = "floor"

    def __init__(self) -> None:
        self.address = "\0" + _unique("smdbench-floor")
        self._proc: Any = None

    def start(self) -> None:
        self._proc = MP.Process(target=_floor_relay, args=(self.address,), daemon=True)
        self._proc.start()
        for _ in range(500):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.address)
                s.sendall(b"X")  # neither role: the relay forgets it
                return
            except OSError:
                time.sleep(0.01)
            finally:
                s.close()
        raise RuntimeError("the floor relay did not listen")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()

    def broker_pid(self) -> int:
        return int(self._proc.pid)

    def _connect(self, role: bytes) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.address)
        s.sendall(role)
        return s

    def run_publisher(self, plan: Plan) -> None:
        sock = self._connect(b"P")
        head = _FLOOR_HEAD.pack

        class Pub:
            def send(self, payload: bytes) -> None:
                sock.sendall(head(len(payload)) + payload)

            def flush(self) -> None:
                pass

            def close(self) -> None:
                sock.close()

        publish_sync(plan, Pub())

    def run_subscriber(self, index: int, plan: Plan) -> None:
        sock = self._connect(b"S")
        feed = Tally(index, plan).feed
        unpack = _FLOOR_HEAD.unpack_from
        buf = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return
            buf = buf + data if buf else data
            pos, size = 0, len(buf)
            while size - pos >= 2:
                (n,) = unpack(buf, pos)
                if size - pos - 2 < n:
                    break
                if not feed(buf[pos + 2 : pos + 2 + n]):
                    sock.close()
                    return
                pos += 2 + n
            buf = buf[pos:]


_FLOOR_HEAD = struct.Struct(">H")


def _floor_relay(address: str) -> None:
    """The relay: a connection says ``P`` (publisher) or ``S`` (subscriber) first."""
    import asyncio

    subscribers: list[asyncio.Transport] = []

    class Peer(asyncio.Protocol):
        def __init__(self) -> None:
            self.role = b""
            self.transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if not self.role:
                self.role, data = data[:1], data[1:]
                if self.role == b"S":
                    subscribers.append(self.transport)
            if self.role == b"P":
                for t in subscribers:
                    t.write(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport in subscribers:
                subscribers.remove(self.transport)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_unix_server(Peer, address)
        await loop.create_future()

    asyncio.run(main())
