"""Who may send and who may receive each class bit, compiled to two masks per peer.

Rules:

- A rule names class bits and, for each direction it cares about, a list
  of *principals*: ``"*"`` (anyone), a user (``"alice"`` or ``"1000"``) or a
  group (``"@netdev"`` or ``"@108"``; the peer's primary or a supplementary
  group). A rule may give ``send``, ``receive`` or both.
- Rules add up: for one bit and one direction, the principals of every rule
  that names it are allowed. A bit no rule names for a direction keeps its
  default: open, except that, with ``defaults`` on, SYSTEM_STATE and NETWORK
  may be *sent* only by the privileged (the classes the system itself owns).
  A rule naming one of them for ``send`` replaces that default for it.
- The *privileged* (root and the daemon's own uid) may always send and
  receive everything: they run the bus, and a rule cannot lock the daemon out
  of announcing its own state.
- Compiling turns the rules into, per direction, the open bits and a short
  list of (principals, bits) pairs, bits with the same principals merged.
  A peer's send and receive masks are computed once, when it connects (and
  again after a reload); checking a message is then one mask test:
  ``cls & ~send_mask``. Names are resolved when compiling: an unknown user
  or group is an error there, not a silent never-match.

Pure: name lookups go through an injected :class:`Resolver`.
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from smdbus.classes import ALL_CLASSES, Class
from smdbus.policy._identity import Identity

SYSTEM_OWNED = int(Class.SYSTEM_STATE | Class.NETWORK)
"""The classes only the privileged may send by default."""


class Resolver(Protocol):
    """User and group names to ids (KeyError when there is no such name)."""

    def uid(self, name: str) -> int: ...
    def gid(self, name: str) -> int: ...


class SystemResolver:
    """The system's user and group databases (``pwd``, ``grp``)."""

    def uid(self, name: str) -> int:
        return pwd.getpwnam(name).pw_uid

    def gid(self, name: str) -> int:
        return grp.getgrnam(name).gr_gid


@dataclass(frozen=True)
class Principals:
    """A set of peers: anyone, or these uids and these groups."""

    anyone: bool = False
    uids: frozenset[int] = frozenset()
    gids: frozenset[int] = frozenset()

    def matches(self, who: Identity) -> bool:
        if self.anyone:
            return True
        if who.uid is None:
            return False
        if who.uid in self.uids:
            return True
        return any(who.in_group(g) for g in self.gids)

    def __or__(self, other: Principals) -> Principals:
        return Principals(
            self.anyone or other.anyone, self.uids | other.uids, self.gids | other.gids
        )

    def describe(self) -> str:
        if self.anyone:
            return "anyone"
        parts = [f"uid {u}" for u in sorted(self.uids)] + [f"gid {g}" for g in sorted(self.gids)]
        return ", ".join(parts) or "the privileged only"


NOBODY = Principals()


def parse_principal(text: str, resolver: Resolver) -> Principals:
    """``*``, ``alice``, ``1000``, ``@netdev`` or ``@108``; ValueError names what is wrong."""
    text = text.strip()
    if text == "*":
        return Principals(anyone=True)
    group = text.startswith("@")
    name = text[1:] if group else text
    if not name:
        raise ValueError(f"empty {'group' if group else 'user'} in {text!r}")
    if name.isdigit():
        ident = int(name)
        if ident >= 0xFFFFFFFF:
            raise ValueError(f"{text!r} is not a valid id")
    else:
        try:
            ident = resolver.gid(name) if group else resolver.uid(name)
        except KeyError:
            raise ValueError(f"no such {'group' if group else 'user'} {name!r}") from None
    return Principals(gids=frozenset([ident])) if group else Principals(uids=frozenset([ident]))


@dataclass(frozen=True)
class Rule:
    """Bits ``classes``; who may send them (None: this rule says nothing), who may receive."""

    classes: int
    send: Principals | None = None
    receive: Principals | None = None
    source: str = ""
    """Where it was written (``/etc/smd/access.d/10-net.toml: rule[0]``), for messages."""


@dataclass(frozen=True)
class Rules:
    """Everything the policy says, before compiling."""

    rules: tuple[Rule, ...] = ()
    defaults: bool = True
    """SYSTEM_STATE and NETWORK sendable only by the privileged, unless a rule says otherwise."""


@dataclass(frozen=True)
class _Direction:
    open: int
    grants: tuple[tuple[Principals, int], ...]

    def mask(self, who: Identity) -> int:
        mask = self.open
        for principals, bits in self.grants:
            if principals.matches(who):
                mask |= bits
        return mask


def _compile(per_bit: dict[int, Principals], default_closed: int) -> _Direction:
    """Per bit principals -> open bits and (principals, bits) merged by principals."""
    open_mask = 0
    merged: dict[Principals, int] = {}
    for bit in range(32):
        flag = 1 << bit
        who = per_bit.get(flag)
        if who is None:
            who = NOBODY if flag & default_closed else Principals(anyone=True)
        if who.anyone:
            open_mask |= flag
        elif who != NOBODY:
            merged[who] = merged.get(who, 0) | flag
    return _Direction(open_mask, tuple(merged.items()))


@dataclass(frozen=True)
class Masks:
    """What one peer may send and receive: a message of ``cls`` goes if ``cls & ~send == 0``."""

    send: int
    receive: int


@dataclass(frozen=True)
class CompiledPolicy:
    """The rules in the form the proxy checks: two masks per peer, computed at connect."""

    send: _Direction
    receive: _Direction
    privileged: frozenset[int]
    rules: Rules = field(default_factory=Rules)

    @classmethod
    def build(cls, rules: Rules, privileged: Iterable[int]) -> CompiledPolicy:
        send: dict[int, Principals] = {}
        receive: dict[int, Principals] = {}
        for rule in rules.rules:
            for bit in range(32):
                flag = 1 << bit
                if not rule.classes & flag:
                    continue
                if rule.send is not None:
                    send[flag] = send.get(flag, NOBODY) | rule.send
                if rule.receive is not None:
                    receive[flag] = receive.get(flag, NOBODY) | rule.receive
        closed = SYSTEM_OWNED if rules.defaults else 0
        return cls(_compile(send, closed), _compile(receive, 0), frozenset(privileged), rules)

    def masks(self, who: Identity) -> Masks:
        if who.uid is not None and who.uid in self.privileged:
            return Masks(ALL_CLASSES, ALL_CLASSES)
        return Masks(self.send.mask(who), self.receive.mask(who))

    def describe_senders(self, flag: int) -> str:
        """Who may send class ``flag`` (for a refusal's text)."""
        if flag & self.send.open:
            return "anyone"
        who = NOBODY
        for principals, bits in self.send.grants:
            if bits & flag:
                who = who | principals
        extra = who.describe() if who != NOBODY else ""
        return "root and the daemon's user" + (f", {extra}" if extra else "")


def default_rules(privileged: Iterable[int] = (0,)) -> CompiledPolicy:
    """No rules, defaults on: what a device that configures nothing gets."""
    return CompiledPolicy.build(Rules(), privileged)
