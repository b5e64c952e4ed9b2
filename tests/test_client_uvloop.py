"""The client's tests against a proxy again, with uvloop as the client's loop (``fast`` extra).

``test_client_proxy`` (a real proxy process) and ``test_client_protocol`` (a
scripted proxy) are collected here a second time.

A client runs on whatever loop its program runs, and uvloop differs from
asyncio's loop where the client's receive path depends on it: a reader on a
socket that reports an error is called once more and dropped (libuv's poll
takes POLLERR as its end). The proxy process stays on asyncio's loop; the
proxy's own uvloop tests are ``test_proxy_uvloop`` and ``test_proxy_flow_uvloop``.
Skipped, saying so, where uvloop is not installed.
"""

from __future__ import annotations

import pytest

pytest.importorskip("uvloop", reason="uvloop is not installed (pip install 'smdbus[fast]')")

from test_client_protocol import *  # noqa: F403
from test_client_proxy import *  # noqa: F403
from test_proxy_uvloop import event_loop_policy, test_runs_on_uvloop  # noqa: F401
