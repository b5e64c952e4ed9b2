"""The bus held against a small reference model of C's lws_smd, over random histories.

The model is C's algorithm written plainly: peers in registration order; a refcount per
message set at send, bumped by late registrants, dropped by leavers; delivery in
passes, one message per peer per pass.
The whole delivery log (global order included) must be identical.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from smdbus import Bus, QueueFull

MASKS = [0b001, 0b010, 0b011, 0b100, 0b111]
CLASSES = [0b001, 0b010, 0b100, 0b011]
DEPTH = 5


@dataclass
class ModelMessage:
    cls: int
    payload: bytes
    refcount: int = 0


@dataclass
class ModelPeer:
    name: str
    mask: int


@dataclass
class Model:
    queue: list[ModelMessage] = field(default_factory=list)
    peers: list[ModelPeer] = field(default_factory=list)
    log: list[tuple[str, bytes]] = field(default_factory=list)

    def union(self) -> int:
        u = 0
        for p in self.peers:
            u |= p.mask
        return u

    def register(self, name: str, mask: int) -> None:
        for m in self.queue:
            if m.cls & mask:
                m.refcount += 1
        self.peers.append(ModelPeer(name, mask))

    def unregister(self, name: str) -> None:
        peer = next(p for p in self.peers if p.name == name)
        self.peers.remove(peer)
        for m in self.queue:  # between drains nobody holds a partial delivery
            if m.cls & peer.mask:
                m.refcount -= 1
        self.queue = [m for m in self.queue if m.refcount > 0]

    def send(self, cls: int, payload: bytes) -> bool:
        if not cls & self.union():
            return False
        if len(self.queue) >= DEPTH:
            raise QueueFull(cls, DEPTH)
        self.queue.append(ModelMessage(cls, payload, sum(1 for p in self.peers if p.mask & cls)))
        return True

    def drain(self) -> None:
        pending = {p.name: [m for m in self.queue if m.cls & p.mask] for p in self.peers}
        step = 0
        more = True
        while more:
            more = False
            for p in self.peers:
                mine = pending[p.name]
                if step < len(mine):
                    self.log.append((p.name, mine[step].payload))
                    mine[step].refcount -= 1
                    more = more or step + 1 < len(mine)
            step += 1
        self.queue = [m for m in self.queue if m.refcount > 0]
        assert self.queue == []


op = st.one_of(
    st.tuples(st.just("register"), st.sampled_from(MASKS)),
    st.tuples(st.just("unregister"), st.integers(0, 7)),
    st.tuples(st.just("send"), st.sampled_from(CLASSES)),
    st.tuples(st.just("drain"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=40))
def test_bus_matches_the_c_model(ops: list[tuple[str, int]]) -> None:
    asyncio.run(_run(ops))


async def _run(ops: list[tuple[str, int]]) -> None:
    model = Model()
    bus = Bus(queue_depth=DEPTH, clock=lambda: 1_000_000)
    log: list[tuple[str, bytes]] = []
    handles: dict[str, object] = {}
    names: list[str] = []
    counter = 0
    async with bus:
        for kind, arg in ops:
            if kind == "register":
                name = f"p{len(names)}"
                names.append(name)

                def cb(c: int, t: int, p: bytes, name: str = name) -> None:
                    log.append((name, p))

                handles[name] = bus.register(arg, cb, name=name)
                model.register(name, arg)
            elif kind == "unregister":
                live = [n for n in names if n in handles]
                if not live:
                    continue
                name = live[arg % len(live)]
                bus.unregister(handles.pop(name))  # type: ignore[arg-type]
                model.unregister(name)
            elif kind == "send":
                counter += 1
                payload = b"m%d" % counter
                expected: object
                try:
                    expected = model.send(arg, payload)
                except QueueFull:
                    expected = QueueFull
                try:
                    got: object = bus.send(arg, payload)
                except QueueFull:
                    got = QueueFull
                assert got == expected, (kind, arg, payload)
                assert bus.queue_length == len(model.queue)
            else:
                await bus.drain()
                model.drain()
                assert log == model.log
        await bus.drain()
        model.drain()
    assert log == model.log
