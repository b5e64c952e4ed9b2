"""The proxy's flow tests (admission, holds, control stream) again, on uvloop (``fast`` extra).

``smd proxy`` and ``smd daemon`` run on uvloop when it is installed
(:mod:`smdbus.commands._loop`), so the proxy's behaviour is tested on both
loops: the tests of ``test_proxy_flow`` are collected here a second time, with
uvloop's event loop policy (``test_proxy_uvloop`` does the same for the
end-to-end tests; one module each, as both name a fixture ``proxy``). Skipped,
saying so, where uvloop is not installed.
"""

from __future__ import annotations

import asyncio

import pytest

uvloop = pytest.importorskip(
    "uvloop", reason="uvloop is not installed (pip install 'smdbus[fast]')"
)

from test_proxy_flow import *  # noqa: E402, F403


@pytest.fixture(scope="session")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    return uvloop.EventLoopPolicy()  # type: ignore[no-any-return]


async def test_runs_on_uvloop() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
