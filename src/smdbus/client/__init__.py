"""Connect to an smd proxy from Python: asyncio, threaded, or as a bus bridge.

    client = await smdbus.client.connect("@proxy.ss.lws", Class.NETWORK | Class.SYSTEM_STATE)
    client.send_json(Class.NETWORK, {"up": True})
    async for msg in client:
        print(msg.cls, msg.timestamp_us, msg.payload)

See docs/client.md for the bridge, reconnecting and the outage buffer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smdbus.classes import ALL_CLASSES
from smdbus.client._bridge import Bridge
from smdbus.client._connection import (
    DEFAULT_CONFIRM_TIMEOUT,
    DEFAULT_CREATE_TIMEOUT,
    DEFAULT_LISTEN_GRACE,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_MAX_BUFFERED_BYTES,
    DEFAULT_MAX_INBOX,
    DEFAULT_RECONNECT_DELAY,
    Client,
    ClientStats,
    Message,
    OnMessage,
    State,
)
from smdbus.client._errors import (
    BufferFull,
    ClientClosed,
    ClientError,
    ProxyUnavailable,
    SendRefused,
)
from smdbus.client._threaded import ThreadedClient, connect_threaded
from smdbus.wire import DEFAULT_ADDRESS

if TYPE_CHECKING:
    from smdbus.bus import Bus


async def connect(
    address: str = DEFAULT_ADDRESS,
    mask: int = ALL_CLASSES,
    *,
    wait: bool = True,
    on_message: OnMessage | None = None,
    bus: Bus | None = None,
    export_mask: int | None = None,
    **settings: Any,
) -> Client:
    """Open a ``_lws_smd`` stream to the proxy at ``address`` receiving classes ``mask``.

    ``address``: ``@name`` (abstract, default ``@proxy.ss.lws``), ``+@name``
    (the C client's spelling) or a filesystem path. With ``wait`` (default)
    the call returns once the proxy created the stream, or raises
    :class:`ProxyUnavailable`; without, it returns at once and sends are
    buffered until the stream exists. ``bus`` bridges a local bus (see
    :class:`Bridge`). Settings: ``reconnect_delay`` (1.0 s),
    ``create_timeout`` (3.0 s), ``max_buffered`` (1000 messages),
    ``max_buffered_bytes`` (512 KiB), ``max_inbox`` (10 000), ``listen_grace``
    (2.0 s), ``echo_ttl``, ``clock``, ``scheduler`` (every timer; tests inject
    a ``ManualScheduler``).
    """
    client = Client(address, mask, on_message=on_message, **settings)
    if bus is not None:
        client.bridge(bus, export_mask)
    await client.start(wait)
    return client


__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_CONFIRM_TIMEOUT",
    "DEFAULT_CREATE_TIMEOUT",
    "DEFAULT_LISTEN_GRACE",
    "DEFAULT_MAX_BUFFERED",
    "DEFAULT_MAX_BUFFERED_BYTES",
    "DEFAULT_MAX_INBOX",
    "DEFAULT_RECONNECT_DELAY",
    "Bridge",
    "BufferFull",
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientStats",
    "Message",
    "OnMessage",
    "ProxyUnavailable",
    "SendRefused",
    "State",
    "ThreadedClient",
    "connect",
    "connect_threaded",
]
