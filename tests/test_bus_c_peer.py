"""The four steps of libwebsockets' own SMD peer test, on our bus (docs/bus.md)."""

from __future__ import annotations

import threading
import time

from smdbus import Bus, Class, QueueFull, user_class

N = 20_000


def test_c_peer_test_four_steps() -> None:
    bus = Bus()
    seen: dict[str, list[bytes]] = {"ui": [], "state": [], "user": []}
    flood: dict[str, int] = {}

    def on_state(cls: int, ts: int, payload: bytes) -> None:
        seen["state"].append(payload)
        if payload == b'{"state":"OPERATIONAL"}':
            # step 3: a tight loop of sends without returning to the loop must overflow
            for i in range(N):
                try:
                    bus.printf(Class.SYSTEM_STATE, '{"flood":%d}', i)
                except QueueFull:
                    flood["stopped_at"] = i
                    break

    # step 1
    bus.register(Class.INTERACTION, lambda c, t, p: seen["ui"].append(p), name="ui")
    bus.register(Class.SYSTEM_STATE, on_state, name="state")
    user = bus.register(user_class(0), lambda c, t, p: seen["user"].append(p), name="user")

    # step 2: before the loop runs
    assert bus.send(Class.INTERACTION, b"ui-1")
    assert bus.send(Class.SYSTEM_STATE, b"state-1")
    assert bus.send(Class.NETWORK, b"nobody") is False  # skipped, no error
    assert bus.send(user_class(0), b"user-1")
    bus.unregister(user)

    with bus.running():
        bus.drain_sync(timeout=10)
        assert seen["user"] == []
        assert seen["ui"] == [b"ui-1"] and seen["state"] == [b"state-1"]

        # step 3
        bus.send_json(Class.SYSTEM_STATE, {"state": "OPERATIONAL"})
        bus.drain_sync(timeout=10)
        stopped = flood["stopped_at"]
        assert 0 < stopped < N  # overflowed before N sends
        floods = [p for p in seen["state"] if p.startswith(b'{"flood"')]
        assert len(floods) == stopped  # and every accepted one was delivered
        assert bus.send(Class.SYSTEM_STATE, b"recovered")
        bus.drain_sync(timeout=10)
        assert seen["state"][-1] == b"recovered"

        # step 4: two threads, N each, retrying when full
        received: list[bytes] = []
        bus.register(user_class(1), lambda c, t, p: received.append(p), name="counter")
        retries = [0, 0]

        def sender(k: int) -> None:
            for i in range(N):
                while True:
                    try:
                        bus.printf(user_class(1), "%d:%d", k, i)
                        break
                    except QueueFull:
                        retries[k] += 1
                        time.sleep(0)  # yield to the loop thread

        threads = [threading.Thread(target=sender, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bus.drain_sync(timeout=30)
    assert len(received) == 2 * N == len(set(received))
