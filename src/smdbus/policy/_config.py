"""The ``[access]`` table and the drop-in files: checked, with errors naming file and field.

The table in the daemon's config::

    [access]
    defaults = true                 # SYSTEM_STATE, NETWORK: root and the daemon only
    dir = "/etc/smd/access.d"       # drop-in files (*.toml), "" for none

    [[access.rule]]
    classes = "NETWORK"             # as smd send takes them: names, | or , , 0x.., ALL
    send = ["@netdev"]              # "*", "alice", "1000", "@group", "@108"
    receive = ["*"]

    [access.quota.user]             # every uid but root and the daemon's
    connections = 64
    [access.quota.root]
    [access.quota.daemon]

A drop-in file holds ``[[rule]]`` tables only (the same keys as
``[[access.rule]]``). Rules:

- Checking stops at the first problem and raises :class:`AccessConfigError`,
  whose text is ``<file>: <field>: <problem>`` (``access.rule[2].send[0]: no
  such group 'netdev'``): an operator finds it in one look.
- Unknown keys are errors (a typo must not silently leave a class open).
- Everything is bounded: rules per file, principals per list, the size of
  a drop-in file; numbers are checked against sane ranges.

Pure apart from name lookups (an injected :class:`~smdbus.policy._rules.Resolver`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from smdbus.classes import parse_mask
from smdbus.policy._quotas import MAX_RATE, PRIVILEGED_LIMITS, Limits, Quotas
from smdbus.policy._rules import Principals, Resolver, Rule, SystemResolver, parse_principal

MAX_RULES = 1024
"""Rules in one table or file."""
MAX_PRINCIPALS = 256
"""Entries in one ``send`` or ``receive`` list."""
MAX_DROPIN_BYTES = 64 * 1024
"""Largest drop-in file read (a larger one is an error, not read in part)."""
DEFAULT_DIR = Path("/etc/smd/access.d")

_RULE_KEYS = ("classes", "send", "receive")
_LIMIT_MAX: dict[str, float] = {
    "connections": 65536,
    "outbound": 1024 * 1024 * 1024,
    "publish_rate": MAX_RATE,
    "publish_burst": 1_000_000,
    "control_rate": 1000,
    "control_burst": 1000,
}


class AccessConfigError(ValueError):
    """A policy that cannot be used; names the file and the field."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source, self.field, self.problem = source, field, problem
        where = f"{field}: " if field else ""
        super().__init__(f"{source}: {where}{problem}")


@dataclass(frozen=True)
class AccessConfig:
    """The checked ``[access]`` table."""

    rules: tuple[Rule, ...] = ()
    defaults: bool = True
    dir: Path | None = DEFAULT_DIR
    quotas: Quotas = field(default_factory=Quotas)


def _unknown(table: Mapping[str, Any], known: tuple[str, ...], source: str, where: str) -> None:
    for key in table:
        if key not in known:
            raise AccessConfigError(
                source,
                f"{where}.{key}" if where else key,
                f"unknown key (known: {', '.join(known)})",
            )


def _principals(value: object, source: str, where: str, resolver: Resolver) -> Principals:
    if not isinstance(value, list):
        raise AccessConfigError(source, where, f"expected a list of strings, got {value!r}")
    if len(value) > MAX_PRINCIPALS:
        raise AccessConfigError(source, where, f"{len(value)} entries (at most {MAX_PRINCIPALS})")
    out = Principals()
    for i, item in enumerate(value):
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            raise AccessConfigError(source, f"{where}[{i}]", f"expected a string, got {item!r}")
        try:
            out = out | parse_principal(item, resolver)
        except ValueError as exc:
            raise AccessConfigError(source, f"{where}[{i}]", str(exc)) from None
    return out


def parse_rules(
    items: object, source: str, where: str, resolver: Resolver | None = None
) -> tuple[Rule, ...]:
    """A list of rule tables (``[[access.rule]]`` or a drop-in's ``[[rule]]``)."""
    resolver = resolver or SystemResolver()
    if not isinstance(items, list):
        raise AccessConfigError(source, where, "expected an array of tables ([[...]])")
    if len(items) > MAX_RULES:
        raise AccessConfigError(source, where, f"{len(items)} rules (at most {MAX_RULES})")
    rules: list[Rule] = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise AccessConfigError(source, at, "expected a table")
        _unknown(item, _RULE_KEYS, source, at)
        classes = item.get("classes")
        if not isinstance(classes, str):
            raise AccessConfigError(
                source, f"{at}.classes", "required: a class list such as 'NETWORK'"
            )
        try:
            mask = parse_mask(classes) & 0xFFFFFFFF
        except ValueError as exc:
            raise AccessConfigError(source, f"{at}.classes", str(exc)) from None
        if not mask:
            raise AccessConfigError(source, f"{at}.classes", "names no class")
        if "send" not in item and "receive" not in item:
            raise AccessConfigError(source, at, "says neither send nor receive")
        send = _principals(item["send"], source, f"{at}.send", resolver) if "send" in item else None
        receive = (
            _principals(item["receive"], source, f"{at}.receive", resolver)
            if "receive" in item
            else None
        )
        rules.append(Rule(mask, send, receive, f"{source}: {at}"))
    return tuple(rules)


def _limits(table: object, base: Limits, source: str, where: str) -> Limits:
    if not isinstance(table, dict):
        raise AccessConfigError(source, where, "expected a table")
    names = tuple(f.name for f in fields(Limits))
    _unknown(table, names, source, where)
    values: dict[str, Any] = {}
    for name, value in table.items():
        at = f"{where}.{name}"
        integral = isinstance(getattr(base, name), int)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AccessConfigError(source, at, f"expected a number, got {value!r}")
        if integral and not isinstance(value, int):
            raise AccessConfigError(source, at, f"expected a whole number, got {value!r}")
        if not 0 < value <= _LIMIT_MAX[name]:
            raise AccessConfigError(
                source, at, f"{value!r} is out of range (1..{_LIMIT_MAX[name]:g})"
            )
        values[name] = value if integral else float(value)
    return Limits(**{**base.__dict__, **values})


def parse_access(
    table: Mapping[str, Any],
    source: str,
    *,
    base: Path | None = None,
    resolver: Resolver | None = None,
) -> AccessConfig:
    """Check the ``[access]`` table; relative ``dir`` is taken from ``base``."""
    resolver = resolver or SystemResolver()
    _unknown(table, ("defaults", "dir", "rule", "quota"), source, "access")
    defaults = table.get("defaults", True)
    if not isinstance(defaults, bool):
        raise AccessConfigError(
            source, "access.defaults", f"expected true or false, got {defaults!r}"
        )
    raw_dir = table.get("dir", str(DEFAULT_DIR))
    if not isinstance(raw_dir, str):
        raise AccessConfigError(source, "access.dir", f"expected a path, got {raw_dir!r}")
    directory: Path | None = None
    if raw_dir:
        directory = Path(raw_dir)
        if not directory.is_absolute() and base is not None:
            directory = base / directory
    rules = parse_rules(table.get("rule", []), source, "access.rule", resolver)
    quota = table.get("quota", {})
    if not isinstance(quota, dict):
        raise AccessConfigError(source, "access.quota", "expected a table")
    _unknown(quota, ("user", "root", "daemon"), source, "access.quota")
    quotas = Quotas(
        default=_limits(quota.get("user", {}), Limits(), source, "access.quota.user"),
        root=_limits(quota.get("root", {}), PRIVILEGED_LIMITS, source, "access.quota.root"),
        daemon=_limits(quota.get("daemon", {}), PRIVILEGED_LIMITS, source, "access.quota.daemon"),
    )
    return AccessConfig(rules, defaults, directory, quotas)


def parse_dropin(data: bytes, source: str, resolver: Resolver | None = None) -> tuple[Rule, ...]:
    """The rules of one drop-in file's bytes."""
    if len(data) > MAX_DROPIN_BYTES:
        raise AccessConfigError(source, "", f"larger than {MAX_DROPIN_BYTES} bytes")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AccessConfigError(source, "", f"not valid TOML: {exc}") from None
    _unknown(doc, ("rule",), source, "")
    return parse_rules(doc.get("rule", []), source, "rule", resolver)
