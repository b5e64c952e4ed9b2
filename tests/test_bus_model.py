"""The bus held against a small reference model of C's lws_smd, over random histories.

The model is C's algorithm written plainly: peers in registration order; delivery in
passes, one message per peer per pass; a message nobody wants any more is discarded
and a later registrant never sees it. Callbacks act too: on its n-th delivery a
participant may send, register a new participant or unregister one (itself included),
so the histories cover what a callback can do to the queue it is being walked from.

What the model adds to C, as the bus documents it: delivery runs in rounds (the queue
as it stands when a round starts; what callbacks send waits for the next round), and a
participant registered during a round gets the messages of the round whose delivery has
not begun. A message holds its place in the queue until its round ends, except in a
round the bus walks message by message (one class queued), where each message frees its
place once delivered; the model follows the bus's choice (``slow``, ``queue_cls``).
The whole delivery log (global order included), every send's outcome, the queue length
and the per-class counters must be identical.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from smdbus import Bus, Participant, QueueFull

MASKS = [0b001, 0b010, 0b011, 0b100, 0b111]
CLASSES = [0b001, 0b010, 0b100, 0b011]
DEPTH = 5

Reaction = tuple[str, int]
LogEntry = tuple[str, bytes, object]


@dataclass
class ModelMessage:
    cls: int
    payload: bytes
    gone: bool = False
    done: bool = False


@dataclass(eq=False)
class ModelPeer:
    name: str
    mask: int
    reactions: list[Reaction]
    active: bool = True
    seen: int = 0


@dataclass
class Model:
    queue: list[ModelMessage] = field(default_factory=list)
    peers: list[ModelPeer] = field(default_factory=list)
    log: list[LogEntry] = field(default_factory=list)
    # per class: sent, nobody, full, delivered, discarded
    counts: dict[int, list[int]] = field(default_factory=dict)
    slow: bool = False
    queue_cls: int = 0

    def count(self, cls: int) -> list[int]:
        return self.counts.setdefault(cls, [0, 0, 0, 0, 0])

    def queue_length(self) -> int:
        return sum(1 for m in self.queue if not m.gone and not m.done)

    def register(self, name: str, mask: int, reactions: list[Reaction]) -> None:
        self.peers.append(ModelPeer(name, mask, reactions))

    def unregister(self, name: str) -> None:
        peer = next(p for p in self.peers if p.name == name)
        peer.active = False
        self.peers.remove(peer)
        for m in self.queue:
            if not m.gone and not any(p.mask & m.cls for p in self.peers):
                m.gone = True

    def send(self, cls: int, payload: bytes) -> bool:
        if not any(p.mask & cls for p in self.peers):
            self.count(cls)[1] += 1
            return False
        if self.queue_length() >= DEPTH:
            self.count(cls)[2] += 1
            raise QueueFull(cls, DEPTH)
        if cls != self.queue_cls:
            if self.queue:
                self.slow = True
            self.queue_cls = cls
        self.queue.append(ModelMessage(cls, payload))
        return True

    def drain(self) -> None:
        while self.queue:
            walk = not self.slow and not self.queue[0].gone
            self.slow = False
            self.round(walk)
        self.slow = False

    def round(self, walk: bool) -> None:
        batch = list(self.queue)
        got = [0] * len(batch)
        wanted: list[tuple[ModelPeer, list[int]]] = []
        self.want(wanted, self.peers, batch, got)
        cursor = [0] * len(wanted)
        peers = list(self.peers)
        more = True
        while more:
            more = False
            this_pass: list[int] = []
            for j, (p, mine) in enumerate(wanted):
                k = cursor[j]
                if k >= len(mine):
                    continue
                if not p.active:
                    cursor[j] = len(mine)
                    continue
                cursor[j] = k + 1
                more = more or k + 1 < len(mine)
                m = batch[mine[k]]
                this_pass.append(mine[k])
                got[mine[k]] += 1
                self.count(m.cls)[3] += 1
                self.log.append((p.name, m.payload, None))
                self.react(p)
            if walk:  # one class: the pass was one message, now delivered
                for i in this_pass:
                    batch[i].done = True
            if self.peers != peers:
                known = [p for p, _ in wanted]
                joined = [p for p in self.peers if all(p is not q for q in known)]
                peers = list(self.peers)
                before = len(wanted)
                self.want(wanted, joined, batch, got)
                cursor += [0] * (len(wanted) - before)
                more = more or len(wanted) > before
        del self.queue[: len(batch)]
        for m, n in zip(batch, got, strict=True):
            self.count(m.cls)[0] += 1
            if not n:
                self.count(m.cls)[4] += 1

    @staticmethod
    def want(
        wanted: list[tuple[ModelPeer, list[int]]],
        peers: list[ModelPeer],
        batch: list[ModelMessage],
        got: list[int],
    ) -> None:
        for p in peers:
            mine = [i for i, m in enumerate(batch) if m.cls & p.mask and not m.gone and not got[i]]
            if mine and p.active:
                wanted.append((p, mine))

    def react(self, p: ModelPeer) -> None:
        k = p.seen
        p.seen += 1
        if k >= len(p.reactions):
            return
        kind, arg = p.reactions[k]
        name = f"{p.name}.{k}"
        if kind == "send":
            result: object
            try:
                result = self.send(arg, name.encode())
            except QueueFull:
                result = QueueFull
            self.log.append(("send", name.encode(), result))
        elif kind == "register":
            self.register(name, arg, [])
        elif kind == "unregister":
            live = [q.name for q in self.peers]
            if live:
                self.unregister(live[arg % len(live)])


reaction: st.SearchStrategy[Reaction] = st.one_of(
    st.tuples(st.just("none"), st.just(0)),
    st.tuples(st.just("send"), st.sampled_from(CLASSES)),
    st.tuples(st.just("register"), st.sampled_from(MASKS)),
    st.tuples(st.just("unregister"), st.integers(0, 7)),
)
op: st.SearchStrategy[tuple[str, int, list[Reaction]]] = st.one_of(
    st.tuples(st.just("register"), st.sampled_from(MASKS), st.lists(reaction, max_size=4)),
    st.tuples(st.just("unregister"), st.integers(0, 7), st.just([])),
    st.tuples(st.just("send"), st.sampled_from(CLASSES), st.just([])),
    st.tuples(st.just("drain"), st.just(0), st.just([])),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(op, max_size=40))
def test_bus_matches_the_c_model(ops: list[tuple[str, int, list[Reaction]]]) -> None:
    asyncio.run(_run(ops))


class _World:
    """The bus side: participants whose callbacks act as their reactions say."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.log: list[LogEntry] = []
        self.handles: dict[str, Participant] = {}  # registration order

    def register(self, name: str, mask: int, reactions: list[Reaction]) -> None:
        seen = [0]

        def cb(cls: int, ts: int, payload: bytes) -> None:
            self.log.append((name, payload, None))
            k = seen[0]
            seen[0] += 1
            if k < len(reactions):
                self.react(f"{name}.{k}", *reactions[k])

        self.handles[name] = self.bus.register(mask, cb, name=name)

    def unregister(self, name: str) -> None:
        self.bus.unregister(self.handles.pop(name))

    def react(self, name: str, kind: str, arg: int) -> None:
        if kind == "send":
            result: object
            try:
                result = self.bus.send(arg, name.encode())
            except QueueFull:
                result = QueueFull
            self.log.append(("send", name.encode(), result))
        elif kind == "register":
            self.register(name, arg, [])
        elif kind == "unregister" and self.handles:
            live = list(self.handles)
            self.unregister(live[arg % len(live)])


def _check_counts(bus: Bus, model: Model) -> None:
    stats = bus.stats()
    for cls, (sent, nobody, full, delivered, discarded) in model.counts.items():
        s = stats[cls]
        assert (s.sent, s.refused_nobody_listens, s.refused_queue_full) == (sent, nobody, full)
        assert (s.delivered, s.discarded, s.expired) == (delivered, discarded, 0), cls
    assert sum(s.queued for s in stats.values()) == bus.queue_length == model.queue_length()


async def _run(ops: list[tuple[str, int, list[Reaction]]]) -> None:
    model = Model()
    bus = Bus(queue_depth=DEPTH, clock=lambda: 1_000_000)
    world = _World(bus)
    counter = 0
    async with bus:
        for kind, arg, reactions in ops:
            if kind == "register":
                name = f"p{counter}"
                counter += 1
                world.register(name, arg, reactions)
                model.register(name, arg, reactions)
            elif kind == "unregister":
                live = list(world.handles)
                if not live:
                    continue
                name = live[arg % len(live)]
                world.unregister(name)
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
                assert bus.queue_length == model.queue_length()
            else:
                await bus.drain()
                model.drain()
                assert world.log == model.log
                _check_counts(bus, model)
        await bus.drain()
        model.drain()
    assert world.log == model.log
    _check_counts(bus, model)
