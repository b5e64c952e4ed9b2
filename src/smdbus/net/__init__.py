"""Network events: the Secure Streams policy, captive portal detection, the routing table.

``policy`` loads and validates the policy document (stdlib only); ``cpd``
probes for a captive portal and publishes the result (h11, the ``net``
extra); ``routetable`` is the sans-IO routing cache, ``rtnetlink`` the
sans-IO parser of the kernel's messages and ``routes`` feeds the one from
the other over the stdlib's AF_NETLINK. The boot gates that wait for them
are the daemon's (:mod:`smdbus.daemon._gates`), and the daemon composes them
(:mod:`smdbus.daemon._app`).

The names below are imported on first use, so ``from smdbus.net import
load_policy`` does not pull in h11 or the sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smdbus._lazy import lazy_names
from smdbus.net._loggers import CPD_LOGGER, CPD_RESULT_LOGGER

if TYPE_CHECKING:
    from smdbus.net._cpd import (
        DEFAULT_MIN_INTERVAL,
        CaptivePortalDetector,
        CheckReport,
        CpdResult,
        CpdState,
        ProbeOutcome,
    )
    from smdbus.net._policy import (
        CaptivePortalDetect,
        Policy,
        PolicyError,
        RetryPolicy,
        default_policy,
        load_policy,
        parse_policy,
    )
    from smdbus.net._routes import RouteMonitor, dump_routes
    from smdbus.net._routetable import (
        Address,
        AddressAdded,
        Route,
        RouteAdded,
        RouteRemoved,
        RouteTable,
    )

_HOME = {
    "smdbus.net._cpd": (
        "DEFAULT_MIN_INTERVAL",
        "CaptivePortalDetector",
        "CheckReport",
        "CpdResult",
        "CpdState",
        "ProbeOutcome",
    ),
    "smdbus.net._policy": (
        "CaptivePortalDetect",
        "Policy",
        "PolicyError",
        "RetryPolicy",
        "default_policy",
        "load_policy",
        "parse_policy",
    ),
    "smdbus.net._routes": ("RouteMonitor", "dump_routes"),
    "smdbus.net._routetable": (
        "Address",
        "AddressAdded",
        "Route",
        "RouteAdded",
        "RouteRemoved",
        "RouteTable",
    ),
}

__all__ = [
    "CPD_LOGGER",
    "CPD_RESULT_LOGGER",
    "DEFAULT_MIN_INTERVAL",
    "Address",
    "AddressAdded",
    "CaptivePortalDetect",
    "CaptivePortalDetector",
    "CheckReport",
    "CpdResult",
    "CpdState",
    "Policy",
    "PolicyError",
    "ProbeOutcome",
    "RetryPolicy",
    "Route",
    "RouteAdded",
    "RouteMonitor",
    "RouteRemoved",
    "RouteTable",
    "default_policy",
    "dump_routes",
    "load_policy",
    "parse_policy",
]


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals())
