"""Threads hammering one bus: nothing accepted is lost or doubled, every refusal is explicit.

Callbacks take time (a little work, and every few deliveries they give up the GIL), so
other threads register, send and unregister while a delivery round is half done; a
churning participant brings a class of its own, so its leaving discards queued messages
(issue 10, 1: discards once fell on later messages that nobody then got).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from smdbus import Bus, Class, QueueFull, user_class

SENDERS = 8
PER_SENDER = 25_000
OWN = user_class(0)
"""The churning participant's own class: nobody else listens to it."""


def _appender(log: list[bytes]) -> Callable[[int, int, bytes], None]:
    return lambda cls, ts, payload: log.append(payload)


def _slow_appender(log: list[bytes]) -> Callable[[int, int, bytes], None]:
    """A callback that takes time: some work, and the GIL given up every 16th delivery."""

    def cb(cls: int, ts: int, payload: bytes) -> None:
        log.append(payload)
        total = 0
        for b in payload:
            total += b
        if len(log) % 16 == 0:
            time.sleep(0)  # lets the other threads in mid-round; not a wait for time

    return cb


def test_eight_threads_with_registration_churn_lose_nothing() -> None:
    bus = Bus()
    stable_all: list[bytes] = []
    stable_net: list[bytes] = []
    churned: list[list[bytes]] = []
    accepted = [0] * SENDERS
    refusals: list[BaseException] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def sender(i: int) -> None:
        # Even senders use NETWORK, odd ones INTERACTION: the queue mixes classes, so both
        # the one-class walk and C's passes are exercised.
        cls = Class.NETWORK if i % 2 == 0 else Class.INTERACTION
        try:
            for seq in range(PER_SENDER):
                payload = b"%d:%d" % (i, seq)
                while True:
                    try:
                        if not bus.send(cls, payload):
                            raise AssertionError("refused although stable participants listen")
                        accepted[i] += 1
                        break
                    except QueueFull as e:
                        if len(refusals) < 1000:
                            refusals.append(e)
                        time.sleep(0)  # let the loop thread drain; not a wait for time
        except BaseException as e:
            errors.append(e)

    def churn() -> None:
        n = 0
        while not done.is_set():
            mine: list[bytes] = []
            churned.append(mine)
            p = bus.register(Class.NETWORK | Class.INTERACTION | OWN, _appender(mine))
            with contextlib.suppress(QueueFull):  # counted as refused_queue_full
                own_sent[0] += bus.send(OWN, b"own:%d" % n)
            n += 1
            time.sleep(0)
            bus.unregister(p)  # what is left of its own class is discarded

    own_sent = [0]
    with bus.running():
        bus.register(Class.NETWORK | Class.INTERACTION, _slow_appender(stable_all))
        bus.register(Class.NETWORK, _slow_appender(stable_net))
        churner = threading.Thread(target=churn)
        churner.start()
        threads = [threading.Thread(target=sender, args=(i,)) for i in range(SENDERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        churner.join()
        bus.drain_sync(timeout=60)

    assert errors == []
    assert sum(accepted) == SENDERS * PER_SENDER
    assert all(isinstance(e, QueueFull) for e in refusals)

    expected_all = {b"%d:%d" % (i, s) for i in range(SENDERS) for s in range(PER_SENDER)}
    assert len(stable_all) == len(expected_all) and set(stable_all) == expected_all
    expected_net = {m for m in expected_all if int(m.split(b":")[0]) % 2 == 0}
    assert len(stable_net) == len(expected_net) and set(stable_net) == expected_net

    def in_sender_order(log: list[bytes]) -> bool:
        last = [-1] * SENDERS
        for m in log:
            i, s = map(int, m.split(b":"))
            if s <= last[i]:
                return False
            last[i] = s
        return True

    assert in_sender_order(stable_all) and in_sender_order(stable_net)
    # a participant that came and went saw each message at most once, in order
    assert len(churned) > 10
    for log in churned:
        own = [m for m in log if m.startswith(b"own:")]
        assert len(own) <= 1
        log = [m for m in log if not m.startswith(b"own:")]
        assert len(log) == len(set(log)) and in_sender_order(log)
    stats = bus.stats()
    own_stats = stats[OWN]
    assert own_stats.sent == own_sent[0] > 10
    assert own_stats.delivered + own_stats.discarded == own_sent[0]
    assert own_stats.discarded > 0  # the churn did discard
    delivered = sum(s.delivered for s in stats.values()) - own_stats.delivered
    assert delivered == len(stable_all) + len(stable_net) + sum(
        len([m for m in log if not m.startswith(b"own:")]) for log in churned
    )
    assert sum(s.queued for s in stats.values()) == 0
    assert bus.queue_length == 0
