"""The policy in force, and reloading it: a new one replaces it only when it is whole.

Rules:

- :func:`load_access_policy` builds a policy from the checked ``[access]`` table
  and the drop-in directory it names: the table's rules first, then each
  trusted file's. Files skipped for their ownership or mode are reported,
  not fatal; a trusted file that does not parse is fatal.
- :meth:`PolicyStore.reload` runs the loader; on any error it keeps the
  policy in force and returns the reason (file and field), so the caller can
  log it and say so to whoever asked (SIGHUP). A successful reload bumps
  :attr:`PolicyStore.generation`: the proxy recomputes every connection's
  masks and its quota limits then, and drops no connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smdbus.policy._quotas import Quotas
from smdbus.policy._rules import CompiledPolicy, Resolver, Rules

if TYPE_CHECKING:  # the checker (and tomllib) is imported where files are read, not by the proxy
    from smdbus.policy._config import AccessConfig


@dataclass(frozen=True)
class AccessPolicy:
    """Everything the proxy consults: the compiled rules and the quotas."""

    rules: CompiledPolicy
    quotas: Quotas
    skipped: tuple[str, ...] = ()
    """Drop-in files left out when it was loaded, each with its reason."""


def load_access_policy(
    config: AccessConfig,
    privileged: Iterable[int],
    *,
    trusted_uid: int = 0,
    resolver: Resolver | None = None,
) -> AccessPolicy:
    """The policy ``config`` and its drop-in directory describe; raises AccessConfigError."""
    from smdbus.policy._dropins import load_dropins

    rules = config.rules
    skipped: tuple[str, ...] = ()
    if config.dir is not None:
        dropins = load_dropins(config.dir, trusted_uid=trusted_uid, resolver=resolver)
        rules += dropins.rules
        skipped = dropins.skipped
    compiled = CompiledPolicy.build(Rules(rules, config.defaults), privileged)
    return AccessPolicy(compiled, config.quotas, skipped)


@dataclass(frozen=True)
class Reloaded:
    ok: bool
    reason: str | None
    """Why the new policy was refused (the old one stays), or None."""
    skipped: tuple[str, ...] = ()


class PolicyStore:
    """The policy in force and how to make a new one (``loader``: raises on a bad policy)."""

    def __init__(self, loader: Callable[[], AccessPolicy]) -> None:
        self._loader = loader
        self.current = loader()
        self.generation = 0

    def reload(self) -> Reloaded:
        from smdbus.policy._config import AccessConfigError

        try:
            policy = self._loader()
        except (AccessConfigError, OSError) as exc:
            return Reloaded(False, f"{exc}; keeping the policy in force")
        self.current = policy
        self.generation += 1
        return Reloaded(True, None, policy.skipped)
