"""The MQTT side: a paho-mqtt 2.x client per connection, its events delivered on our loop.

Theory of operation. Each connection attempt builds a fresh paho client,
connects it on a worker thread (paho's connect and TLS handshake block),
waits for CONNACK, and runs paho's network loop on paho's own thread with
paho's reconnecting turned off. When the connection ends the client is
thrown away: reconnecting, backoff and resending belong to the bridge, so
nothing unacknowledged hides in a library's memory (a fresh client has no
in-flight state to replay a second time).

Rules
-----
- Every paho callback is handed to the asyncio loop with
  ``call_soon_threadsafe``; a callback of a link that was already replaced
  is ignored by the bridge (it checks the link it belongs to).
- ``publish`` and ``subscribe`` are called from the loop; paho's threaded
  mode is made for that.
- Errors a person acts on are :class:`LinkError` with the broker's address
  and, for TLS, which CA the certificate failed against.
- Secrets: the password is read when connecting and given to paho only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from smdbus.fleet._config import BrokerConfig

log = logging.getLogger("smdbus.fleet")

MAX_PACKET = 64 * 1024
"""MQTT 5 Maximum Packet Size we announce: the broker sends nothing larger (a command is
at most 383 bytes, an envelope under 1 KiB). MQTT 3.1.1 has no such bound: the broker's
``message_size_limit`` is the one there."""


class LinkError(ConnectionError):
    """The broker could not be reached or refused us; the message says why."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass
class LinkEvents:
    """Called on the loop: ``published(mid)``, ``message(topic, payload, origin)``, ``lost``."""

    published: Callable[[int], None]
    message: Callable[[str, bytes, str | None], None]
    lost: Callable[[str], None]


def tls_context(broker: BrokerConfig) -> ssl.SSLContext:
    """Server verification always (the broker's name is checked); a client cert when set."""
    ctx = ssl.create_default_context(cafile=str(broker.ca) if broker.ca else None)
    if broker.cert is not None:
        ctx.load_cert_chain(str(broker.cert), str(broker.key) if broker.key else None)
    return ctx


def explain(broker: BrokerConfig, exc: BaseException) -> str:
    """A sentence for an operator: where, and what to check."""
    where = broker.url
    if isinstance(exc, ssl.SSLCertVerificationError):
        ca = broker.ca if broker.ca else "the system's CA store"
        return (
            f"{where}: the broker's TLS certificate was refused "
            f"(certificate verify failed: {exc.verify_message}) "
            f"(checked against {ca}; is tls.ca the CA that signed the broker's certificate, "
            f"and is {broker.host!r} in it?)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"{where}: TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused (is the broker running and listening there?)"
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"{where}: no answer within {broker.connect_timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"{where}: cannot resolve {broker.host!r}: {exc.strerror}"
    return f"{where}: {exc}"


class MqttLink:
    """One connection to the broker (build a new one to reconnect)."""

    def __init__(
        self,
        broker: BrokerConfig,
        client_id: str,
        events: LinkEvents,
        *,
        will: Will | None = None,
        inflight: int = 100,
        origin: str | None = None,
    ) -> None:
        self.broker = broker
        self.v5 = broker.protocol == "5"
        self._events = events
        self._loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self.receive_maximum = 65535
        """The most unacknowledged QoS 1/2 publishes the broker takes (MQTT 5 CONNACK)."""
        self._closed = False
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if self.v5 else paho.MQTTv311,
            clean_session=None if self.v5 else True,
            reconnect_on_failure=False,
        )
        c.connect_timeout = broker.connect_timeout
        c.max_inflight_messages_set(inflight)
        c.max_queued_messages_set(0)
        if will is not None:
            c.will_set(will.topic, will.payload, will.qos, will.retain)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self._client = c
        self._props: Properties | None = None
        if self.v5 and origin is not None:
            self._props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            self._props.UserProperty = [("smd-origin", origin)]

    # -- paho's thread -------------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, props: Any) -> None:
        # MQTT 5: the broker's Receive Maximum bounds our unacknowledged publishes (paho
        # does not apply it; the bridge does). Set before CONNACK is posted to the loop.
        receive_max = getattr(props, "ReceiveMaximum", None)
        if isinstance(receive_max, int) and receive_max > 0:
            self.receive_maximum = receive_max
        self._post(self._connected, None if not rc.is_failure else str(rc))

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._post(self._disconnected, str(rc))

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        self._post(self._events.published, mid)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        origin = None
        props = getattr(msg, "properties", None)
        for key, value in getattr(props, "UserProperty", None) or ():
            if key == "smd-origin":
                origin = value
        self._post(self._events.message, msg.topic, bytes(msg.payload), origin)

    # -- the loop ------------------------------------------------------------

    def _connected(self, refused: str | None) -> None:
        if self._connack.done():
            return
        if refused is None:
            self._connack.set_result(None)
        else:
            self._connack.set_exception(LinkError(f"{self.broker.url}: broker refused: {refused}"))

    def _disconnected(self, why: str) -> None:
        if not self._connack.done():
            self._connack.set_exception(
                LinkError(f"{self.broker.url}: closed before CONNACK: {why}")
            )
            return
        if not self._closed:
            self._closed = True
            self._events.lost(why)

    async def connect(self) -> None:
        """Connect and wait for CONNACK; :class:`LinkError` saying why not."""
        c = self._client
        b = self.broker
        try:  # read at each connect: a rotated certificate or password is picked up
            if b.tls:
                c.tls_set_context(tls_context(b))
            if b.username is not None:
                c.username_pw_set(b.username, b.password())
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise LinkError(f"{b.url}: cannot use the TLS files or the password: {exc}") from None
        v5: dict[str, Any] = {}
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.MaximumPacketSize = MAX_PACKET
            v5 = {"clean_start": True, "properties": props}
        try:
            await asyncio.to_thread(
                c.connect, self.broker.host, self.broker.port, self.broker.keepalive, **v5
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise LinkError(explain(self.broker, exc)) from None
        c.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._connack), self.broker.connect_timeout)
        except TimeoutError:
            await self.close()
            raise LinkError(
                f"{self.broker.url}: no CONNACK within {self.broker.connect_timeout:g} s"
            ) from None
        except LinkError:
            await self.close()
            raise

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        info = self._client.publish(topic, payload, qos, retain, self._props)
        return int(info.mid)

    def subscribe(self, topic: str, qos: int = 1, *, no_local: bool = True) -> None:
        """Subscribe; on MQTT 5 without our own publishes (No Local) unless told otherwise."""
        if self.v5:
            options = SubscribeOptions(qos=qos, noLocal=no_local)
            self._client.subscribe(topic, options=options)
        else:
            self._client.subscribe(topic, qos)

    async def close(self, *, clean: bool = True) -> None:
        """Hang up (a clean DISCONNECT unless ``clean`` is False: then the will fires)."""
        self._closed = True
        c = self._client
        if clean:
            c.disconnect()
        else:
            sock = c.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        await asyncio.to_thread(c.loop_stop)
