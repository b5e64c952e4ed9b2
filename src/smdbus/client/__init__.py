"""Connect to an smd proxy from Python: asyncio, threaded, or as a bus bridge.

    client = await smdbus.client.connect("@proxy.ss.lws", Class.NETWORK | Class.SYSTEM_STATE)
    client.send_json(Class.NETWORK, {"up": True})
    async for msg in client:
        print(msg.cls, msg.timestamp_us, msg.payload)

See docs/client.md for the bridge, reconnecting and the outage buffer.

This ``__init__`` is the package's surface; the modules behind it are private
(``_name.py``). The errors are imported with the package, the rest (asyncio)
on first use: a one-shot tool that reports :class:`SendRefused` does not
load the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smdbus._lazy import lazy_names
from smdbus.client._errors import (
    BufferFull,
    ClientClosed,
    ClientError,
    ProxyUnavailable,
    SendRefused,
)
from smdbus.wire import DEFAULT_ADDRESS

if TYPE_CHECKING:
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
        ClientState,
        ClientStats,
        Message,
        OnMessage,
        connect,
    )
    from smdbus.client._polled import PolledClient
    from smdbus.client._threaded import ThreadedClient, connect_threaded

_HOME = {
    "smdbus.client._bridge": ("Bridge",),
    "smdbus.client._connection": (
        "DEFAULT_CONFIRM_TIMEOUT",
        "DEFAULT_CREATE_TIMEOUT",
        "DEFAULT_LISTEN_GRACE",
        "DEFAULT_MAX_BUFFERED",
        "DEFAULT_MAX_BUFFERED_BYTES",
        "DEFAULT_MAX_INBOX",
        "DEFAULT_RECONNECT_DELAY",
        "Client",
        "ClientStats",
        "Message",
        "OnMessage",
        "ClientState",
        "connect",
    ),
    "smdbus.client._polled": ("PolledClient",),
    "smdbus.client._threaded": ("ThreadedClient", "connect_threaded"),
}

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
    "ClientState",
    "ClientStats",
    "Message",
    "OnMessage",
    "PolledClient",
    "ProxyUnavailable",
    "SendRefused",
    "ThreadedClient",
    "connect",
    "connect_threaded",
]


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals())
