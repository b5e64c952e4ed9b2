"""The cross-process bus: a proxy on a Unix socket speaking libwebsockets' ``_lws_smd`` wire.

    async with Proxy(ProxySettings(address="\\0proxy.ss.lws")) as proxy:
        await proxy.serve_forever()

See docs/proxy.md for the policy (lossless publishing, slow subscribers).
"""

from smdbus.proxy._server import COUNTERS, PeerInfo, Proxy
from smdbus.proxy._settings import CONTROL_STREAMTYPE, ProxySettings

__all__ = ["CONTROL_STREAMTYPE", "COUNTERS", "PeerInfo", "Proxy", "ProxySettings"]
