"""Who may say what on the bus: peer identity, per-class rules, per-uid quotas.

    config = parse_access(toml.get("access", {}), "/etc/smd/daemon.toml")
    store = PolicyStore(lambda: load_access_policy(config, privileged={0, os.getuid()}))
    who = read_identity(sock)                    # at connect
    masks = store.current.rules.masks(who)       # send / receive masks, once
    if cls & ~masks.send: ...                    # per message: one mask test

The proxy consults it; nothing here opens a socket of its own or keeps
time (clocks are passed in). See docs/security.md for the threat model and
the defaults.
"""

from typing import TYPE_CHECKING

from smdbus._lazy import lazy_names
from smdbus.policy._identity import (
    NOBODY_KNOWN,
    SO_PEERGROUPS,
    SO_PEERPIDFD,
    Identity,
    parse_peercred,
    parse_peergroups,
    parse_status,
    read_identity,
)
from smdbus.policy._quotas import PRIVILEGED_LIMITS, Bucket, Ledger, Limits, Quotas, Usage
from smdbus.policy._rules import (
    SYSTEM_OWNED,
    CompiledPolicy,
    Masks,
    Principals,
    Resolver,
    Rule,
    Rules,
    SystemResolver,
    default_rules,
    parse_principal,
)
from smdbus.policy._store import AccessPolicy, PolicyStore, Reloaded, load_access_policy

if TYPE_CHECKING:
    from smdbus.policy._config import (
        DEFAULT_DIR,
        MAX_DROPIN_BYTES,
        MAX_PRINCIPALS,
        MAX_RULES,
        AccessConfig,
        AccessConfigError,
        parse_access,
        parse_dropin,
        parse_rules,
    )
    from smdbus.policy._dropins import MAX_FILES, DropIns, load_dropins

# The config side (its checker needs tomllib) is imported on first use: the
# proxy consults the policy without ever reading a file.
_HOME = {
    "smdbus.policy._config": (
        "DEFAULT_DIR",
        "MAX_DROPIN_BYTES",
        "MAX_PRINCIPALS",
        "MAX_RULES",
        "AccessConfig",
        "AccessConfigError",
        "parse_access",
        "parse_dropin",
        "parse_rules",
    ),
    "smdbus.policy._dropins": ("MAX_FILES", "DropIns", "load_dropins"),
}


__all__ = [
    "DEFAULT_DIR",
    "MAX_DROPIN_BYTES",
    "MAX_FILES",
    "MAX_PRINCIPALS",
    "MAX_RULES",
    "NOBODY_KNOWN",
    "PRIVILEGED_LIMITS",
    "SO_PEERGROUPS",
    "SO_PEERPIDFD",
    "SYSTEM_OWNED",
    "AccessConfig",
    "AccessConfigError",
    "AccessPolicy",
    "Bucket",
    "CompiledPolicy",
    "DropIns",
    "Identity",
    "Ledger",
    "Limits",
    "Masks",
    "PolicyStore",
    "Principals",
    "Quotas",
    "Reloaded",
    "Resolver",
    "Rule",
    "Rules",
    "SystemResolver",
    "Usage",
    "default_rules",
    "load_access_policy",
    "load_dropins",
    "parse_access",
    "parse_dropin",
    "parse_peercred",
    "parse_peergroups",
    "parse_principal",
    "parse_rules",
    "parse_status",
    "read_identity",
]


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals())
