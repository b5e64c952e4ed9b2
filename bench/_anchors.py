"""The anchors measured beside smdbus: a ZeroMQ XSUB/XPUB proxy and mosquitto.

Both are set up to be lossless, as smdbus is: ZeroMQ with every high-water
mark at 0 (unbounded), mosquitto with ``max_queued_messages 0``. Clients are
Python (pyzmq, paho-mqtt 2.x) like ours.
"""

from __future__ import annotations

import os
import shutil
import signal
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
