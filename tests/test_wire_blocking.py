"""The one-shot tools' blocking stream against peers that misbehave (real sockets, no proxy).

Each peer is a listening socket driven by this test: it answers STREAMTYPE
as the C proxy does (no mark) or as ours does, then does what the case
needs. The normal cases (our proxy, the fake C proxy) are in test_tools.py
and test_client_cproxy.py through ``smd send``.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from smdbus.wire import (
    BlockingStream,
    Decoder,
    Role,
    StreamType,
    TxPayload,
    create_result_frame,
    rx_payload_frame,
)
from smdbus.wire._control import GREETING

_names = itertools.count()


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    name = f"smdbus-test-blocking-{os.getpid()}-{next(_names)}"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind("\0" + name)
    srv.listen()
    try:
        yield srv, "@" + name
    finally:
        srv.close()


def _accept_stream(srv: socket.socket, answer: bytes) -> socket.socket:
    """Accept, read the STREAMTYPE (the sentinel that the client is there), answer."""
    peer, _ = srv.accept()
    decoder = Decoder(Role.PROXY)
    while not any(type(e) is StreamType for e in decoder.feed(peer.recv(4096))):
        pass
    peer.sendall(answer)
    return peer


def test_a_peer_that_stops_reading_ends_the_writing(listener: tuple[socket.socket, str]) -> None:
    """A C-like proxy that never reads: the writer gives up after ``timeout`` without
    progress and counts every copy as not confirmed; it does not hang."""
    srv, address = listener
    peers: list[socket.socket] = []
    t = threading.Thread(target=lambda: peers.append(_accept_stream(srv, create_result_frame(0))))
    t.start()
    with BlockingStream.connect(address, 1) as s:
        t.join()
        assert not s.ours  # no mark: paced
        body = b"x" * 300
        assert s.publish(1, body, 100_000, timeout=0.2) == 100_000
    peers[0].close()


def test_our_proxy_is_recognised_and_batched_copies_are_whole(
    listener: tuple[socket.socket, str],
) -> None:
    """With the mark, copies go in batches; the peer decodes every one whole."""
    srv, address = listener
    peers: list[socket.socket] = []
    t = threading.Thread(target=lambda: peers.append(_accept_stream(srv, GREETING)))
    t.start()
    got: list[TxPayload] = []
    with BlockingStream.connect(address, 1) as s:
        t.join()
        assert s.ours
        peer = peers[0]
        decoder = Decoder(Role.PROXY)
        done = threading.Event()

        def echo() -> None:  # read what comes and echo it, as a proxy does
            while len(got) < 50:
                data = peer.recv(65536)
                if not data:
                    break
                for e in decoder.feed(data):
                    if type(e) is TxPayload:
                        got.append(e)
                        peer.sendall(rx_payload_frame(e.cls, 0, e.payload))
            done.set()

        threading.Thread(target=echo, daemon=True).start()
        assert s.publish(1, b"hello", 50, timeout=5) == 0
        assert done.wait(5)
    assert [(e.cls, e.payload) for e in got] == [(1, b"hello")] * 50
    peers[0].close()
