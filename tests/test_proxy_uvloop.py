"""The proxy's end-to-end tests again, on uvloop (the ``fast`` extra).

``smd proxy`` and ``smd daemon`` run on uvloop when it is installed
(:mod:`smdbus.commands._loop`), so the proxy's behaviour is tested on both
loops: the tests of ``test_proxy`` are collected here a second time, with
uvloop's event loop policy (``test_proxy_flow_uvloop`` does the same for the
flow tests; one module each, as both name a fixture ``proxy``). Skipped,
saying so, where uvloop is not installed.
"""

from __future__ import annotations

import asyncio

import pytest

uvloop = pytest.importorskip(
    "uvloop", reason="uvloop is not installed (pip install 'smdbus[fast]')"
)

from test_proxy import *  # noqa: E402, F403


@pytest.fixture(scope="session")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    return uvloop.EventLoopPolicy()  # type: ignore[no-any-return]


async def test_runs_on_uvloop() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
