"""A stand-in for libwebsockets' C proxy under load, for the client's tests.

It reproduces the facts measured on the C proxy (docs/client.md, "On a C proxy"):

- each readable socket is read once per loop pass, at most 2048 bytes;
- a TX_PAYLOAD that continues past the end of a read is stored as two
  entries, the bytes of this read and the rest, and each entry is later
  taken as a whole SMD message (``class u64 | timestamp u64 | body``), so the
  head has a truncated body and the tail is garbage or "undersize";
- at most 32 768 bytes of a client's unprocessed entries: past that it logs
  ``unable to alloc in dsh`` and disconnects the client;
- one entry per connection is passed on per loop pass, to every connection
  whose mask matches (the sender included), one frame per write;
- entries not yet passed on when a client hangs up are discarded;
- its CREATE_RESULT is the C proxy's (``,(null)`` rideshare), and it knows no
  other streamtype than ``_lws_smd``.

Run as ``python fake_c_proxy.py ADDRESS [--echo-limit N]``; it prints one
JSON object per line: ``{"listening": true}`` once, ``{"disconnect": ...}``
when it drops a client for the 32 KiB bound, ``{"discarded": n}`` when a
client hangs up with entries unprocessed, and, whenever it processes a
message whose body is ``END``, ``{"end": summary}`` for the messages that
client sent before it (count, digest of the bodies in order, classes seen,
undersize entries). ``--echo-limit N`` passes on only the first N messages
(as the C proxy's full queue drops the rest silently).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import selectors
import socket
import struct
import sys
import time
from collections import deque

READ_SIZE = 2048
DSH_LIMIT = 32 * 1024
CREATE_RESULT = bytes.fromhex("56000c00 00000000 2c286e756c6c29")
CONNSTATES = bytes.fromhex("5700050100000000 5700050600000000 5700050500000000")
REFUSED = bytes.fromhex("5600050100000000")
SMD_HEAD = struct.Struct(">QQ")


def say(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.mask: int | None = None  # None until STREAMTYPE
        self.entries: deque[bytes] = deque()
        self.unprocessed = 0
        self.head = b""  # frame header bytes collected (3)
        self.ftype = 0
        self.skip = 0  # Secure Streams header bytes still to skip
        self.left = 0  # payload (or other body) bytes still to come
        self.cur = bytearray()
        self.bodies: list[bytes] = []
        self.classes: set[int] = set()
        self.undersize = 0

    def feed(self, data: bytes) -> bytes | None:
        """Parse one read; returns a STREAMTYPE body when one completed."""
        streamtype = None
        i = 0
        n = len(data)
        while i < n:
            if self.left == 0 and self.skip == 0:
                take = min(3 - len(self.head), n - i)
                self.head += data[i : i + take]
                i += take
                if len(self.head) < 3:
                    break
                self.ftype, length = self.head[0], (self.head[1] << 8) | self.head[2]
                self.head = b""
                if self.ftype == 0xAD:
                    self.skip, self.left = 16, max(0, length - 16)
                else:
                    self.left = length
                if self.left == 0 and self.skip == 0:
                    self._complete()
                continue
            if self.skip:
                take = min(self.skip, n - i)
                self.skip -= take
                i += take
                continue
            take = min(self.left, n - i)
            self.cur += data[i : i + take]
            self.left -= take
            i += take
            if self.left == 0:
                body = self._complete()
                if body is not None:
                    streamtype = body
        if self.ftype == 0xAD and self.left and self.cur:
            # the frame goes on in the next read: what we have is one entry (C's split)
            self._entry(bytes(self.cur))
            self.cur.clear()
        return streamtype

    def _complete(self) -> bytes | None:
        body = bytes(self.cur)
        self.cur.clear()
        if self.ftype == 0xAD:
            self._entry(body)
            return None
        if self.ftype == 0xAA:
            return body
        return None

    def _entry(self, payload: bytes) -> None:
        self.entries.append(payload)
        self.unprocessed += len(payload)


class FakeCProxy:
    def __init__(self, address: str, echo_limit: int | None) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind("\0" + address[1:] if address.startswith("@") else address)
        self.listener.listen(64)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.conns: dict[socket.socket, Conn] = {}
        self.echo_limit = echo_limit
        self.passed_on = 0

    def run(self) -> None:
        say({"listening": True})
        while True:
            busy = any(c.entries for c in self.conns.values())
            for key, _ in self.sel.select(0 if busy else None):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    s, _ = self.listener.accept()
                    self.conns[s] = Conn(s)
                    self.sel.register(s, selectors.EVENT_READ)
                else:
                    self.read_once(self.conns[sock])
            for c in list(self.conns.values()):
                if c.entries:
                    self.process_one(c)

    def drop(self, c: Conn) -> None:
        if c.sock in self.conns:
            del self.conns[c.sock]
            self.sel.unregister(c.sock)
            c.sock.close()

    def read_once(self, c: Conn) -> None:
        try:
            data = c.sock.recv(READ_SIZE)
        except OSError:
            data = b""
        if not data:
            if c.entries:
                say({"discarded": len(c.entries)})
            self.drop(c)
            return
        st = c.feed(data)
        if st is not None:
            name = st[9:].decode(errors="replace")
            if name != "_lws_smd":
                c.sock.sendall(REFUSED)
                self.drop(c)
                return
            c.mask = int.from_bytes(st[5:9], "big")
            c.sock.sendall(CREATE_RESULT)
            c.sock.sendall(CONNSTATES)
        if c.unprocessed > DSH_LIMIT:
            say({"disconnect": f"unable to alloc in dsh ({c.unprocessed} bytes unprocessed)"})
            self.drop(c)

    def process_one(self, c: Conn) -> None:
        payload = c.entries.popleft()
        c.unprocessed -= len(payload)
        if len(payload) < 16:
            c.undersize += 1
            return
        cls, _ = SMD_HEAD.unpack_from(payload)
        body = payload[16:]
        if body == b"END":
            digest = hashlib.sha256(b"\n".join(c.bodies)).hexdigest()
            say(
                {
                    "end": {
                        "n": len(c.bodies),
                        "sha256": digest,
                        "classes": sorted(c.classes),
                        "undersize": c.undersize,
                    }
                }
            )
            c.bodies.clear()
            c.classes.clear()
        else:
            c.bodies.append(body)
            c.classes.add(cls)
        if self.echo_limit is not None and self.passed_on >= self.echo_limit:
            return
        self.passed_on += 1
        now = time.monotonic_ns() // 1000
        frame_head = struct.pack(">BHIIQQQ", 0x55, 32 + len(body), 3, 0, now, cls, now)
        for other in list(self.conns.values()):
            if other.mask is not None and other.mask & cls:
                try:
                    other.sock.sendall(frame_head + body)
                except OSError:
                    self.drop(other)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("address")
    ap.add_argument("--echo-limit", type=int, default=None)
    args = ap.parse_args()
    FakeCProxy(args.address, args.echo_limit).run()


if __name__ == "__main__":
    main()
