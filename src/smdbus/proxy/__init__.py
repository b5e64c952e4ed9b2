"""The cross-process bus: a proxy on a Unix socket speaking libwebsockets' ``_lws_smd`` wire.

    async with Proxy(ProxySettings(address="\\0proxy.ss.lws")) as proxy:
        await proxy.serve_forever()

See docs/proxy.md for the policy (lossless publishing, slow subscribers).

This ``__init__`` is the package's surface; the modules behind it are private
(``_name.py``). The names are imported on first use: the daemon's config
reads :class:`ProxySettings` and its ``MAXIMA`` without loading the server
(asyncio, sockets).
"""

from __future__ import annotations

from smdbus._lazy import lazy_names

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from smdbus.proxy._peerinfo import PeerInfo
    from smdbus.proxy._server import COUNTERS, Proxy
    from smdbus.proxy._settings import CONTROL_STREAMTYPE, MAXIMA, ProxySettings

_HOME = {
    "smdbus.proxy._peerinfo": ("PeerInfo",),
    "smdbus.proxy._server": ("COUNTERS", "Proxy"),
    "smdbus.proxy._settings": ("CONTROL_STREAMTYPE", "MAXIMA", "ProxySettings"),
}

__all__ = ["CONTROL_STREAMTYPE", "COUNTERS", "MAXIMA", "PeerInfo", "Proxy", "ProxySettings"]


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals())
