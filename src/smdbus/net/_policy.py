"""The Secure Streams policy document: load, validate, and give typed access.

Rules of this module:

- The document is JSON as libwebsockets' Secure Streams reads it: top-level
  ``release``, ``product``, ``schema-version``, ``retry``, ``certs``,
  ``trust_stores`` and ``s`` (the streamtypes). ``retry``, ``certs`` and
  ``trust_stores`` may be written the lws way (a list of one-key objects) or
  as a plain object keyed by name; both mean the same.
- Validation stops at the first bad field and says where it is, as a path
  into the document (``s[3].captive_portal_detect.port``), what was expected
  and what was found, and which file it came from.
- Only the fields we understand are checked; everything else, including
  whole streamtypes we have never heard of, is kept intact so the policy can
  be handed on to something that does understand it.
- References are checked: a streamtype's ``retry`` must name a retry table,
  its ``tls_trust_store`` a trust store, and a trust store's stack must name
  certificates defined in ``certs`` (lws forbids forward references too).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import pkgutil
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CPD_STREAMTYPE = "captive_portal_detect"
"""The streamtype name lws looks for to run captive portal detection."""

DEFAULT_POLICY_RESOURCE = "data/default-policy.json"


class PolicyError(ValueError):
    """A policy document that cannot be used: names the file, the JSON path and the problem."""

    def __init__(self, path: str, problem: str, source: str | None = None) -> None:
        self.path = path
        self.problem = problem
        self.source = source
        where = f"{path}: " if path else ""
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{where}{problem}")


@dataclass(frozen=True)
class RetryPolicy:
    """One named retry/backoff table (``retry`` section).

    ``conceal`` is how many retries are hidden from the layer above before a
    failure is reported, so a connection is tried ``1 + conceal`` times.
    When there are more retries than ``backoff`` entries, the last entry is
    used again. ``jitterpc`` adds up to that percentage on top of each delay.
    """

    name: str
    backoff_ms: tuple[int, ...]
    conceal: int
    jitter_pc: int = 0
    svalid_ping_s: int | None = None
    svalid_hup_s: int | None = None

    @property
    def attempts(self) -> int:
        """How many tries in all before giving up: the first plus ``conceal`` retries."""
        return 1 + self.conceal

    def delay_ms(self, retry: int, rand: float = 0.0) -> int:
        """The wait before retry ``retry`` (0 = the first); ``rand`` in [0, 1) scales the jitter."""
        if retry < 0:
            raise ValueError(f"retry index must be >= 0, got {retry}")
        if not self.backoff_ms:
            return 0
        base = self.backoff_ms[min(retry, len(self.backoff_ms) - 1)]
        return base + int(base * self.jitter_pc * rand / 100)


@dataclass(frozen=True)
class CaptivePortalDetect:
    """The ``captive_portal_detect`` streamtype: where and how to probe."""

    endpoint: str
    http_url: str = ""
    port: int = 80
    protocol: str = "h1"
    http_method: str = "GET"
    opportunistic: bool = False
    http_expect: int | None = None
    http_fail_redirect: bool = False
    tls: bool = False
    retry: str | None = None
    timeout_ms: int | None = None

    @property
    def url(self) -> str:
        """The probe URL: ``http://connectivitycheck.android.com:80/generate_204``."""
        scheme = "https" if self.tls else "http"
        host = self.endpoint
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}/{self.http_url.lstrip('/')}"


@dataclass(frozen=True)
class Policy:
    """A validated policy. ``document`` is the JSON as loaded, untouched."""

    document: Mapping[str, Any]
    source: str
    release: str | None
    product: str | None
    schema_version: int | None
    retry: Mapping[str, RetryPolicy]
    certs: Mapping[str, str]
    trust_stores: Mapping[str, tuple[str, ...]]
    streamtypes: Mapping[str, Mapping[str, Any]]
    captive_portal_detect: CaptivePortalDetect | None

    def streamtype(self, name: str) -> Mapping[str, Any]:
        """The settings of one streamtype, as written; KeyError names the known ones."""
        try:
            return self.streamtypes[name]
        except KeyError:
            known = ", ".join(self.streamtypes) or "none"
            raise KeyError(f"{self.source}: no streamtype {name!r} (known: {known})") from None

    def retry_for(self, streamtype: str) -> RetryPolicy | None:
        """The retry table a streamtype names, or None when it names none."""
        name = self.streamtype(streamtype).get("retry")
        return self.retry[name] if isinstance(name, str) else None


# ---------------------------------------------------------------------------
# Loading


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; errors name the file and the bad field."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise PolicyError("", f"cannot read policy: {e.strerror or e}", source) from e
    except UnicodeDecodeError as e:
        raise PolicyError("", f"not UTF-8 text: {e}", source) from e
    return parse_policy(text, source=source)


def default_policy() -> Policy:
    """The policy shipped with smdbus (CPD against connectivitycheck.android.com)."""
    # pkgutil, not importlib.resources: that one imports zipfile (+3 MiB in the daemon).
    data = pkgutil.get_data("smdbus", DEFAULT_POLICY_RESOURCE)
    assert data is not None  # the package's own loader always has get_data
    return parse_policy(data.decode("utf-8"), source=f"smdbus:{DEFAULT_POLICY_RESOURCE}")


def parse_policy(doc: str | bytes | Mapping[str, Any], source: str = "<policy>") -> Policy:
    """Validate a policy given as JSON text or as already-parsed JSON."""
    if isinstance(doc, str | bytes):
        try:
            obj: Any = json.loads(doc)
        except json.JSONDecodeError as e:
            raise PolicyError(
                "", f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}", source
            ) from e
    else:
        obj = copy.deepcopy(dict(doc))
    return _Validator(source).policy(obj)


# ---------------------------------------------------------------------------
# Validation

_METHOD = re.compile(r"^[A-Z]+$")
_CPD_PROTOCOLS = ("h1", "h2")

_BOOL_FIELDS = frozenset(
    {
        "opportunistic",
        "http_fail_redirect",
        "tls",
        "nailed_up",
        "allow_redirects",
        "server",
        "swake_validity",
        "direct_proto_str",
        "local_sink",
        "urgent_tx",
        "urgent_rx",
        "long_poll",
        "retry_on_fail_redirect",
    }
)
_STR_FIELDS = frozenset(
    {"endpoint", "protocol", "http_url", "aux", "http_auth_header", "http_auth_preamble"}
)


def _show(value: object) -> str:
    """A value as it appears in JSON, cut short: ``"x"``, ``true``, ``[1, 2]``."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Validator:
    """Walks the document once, remembering the file for every error."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._paths: dict[str, str] = {}

    def fail(self, path: str, problem: str) -> PolicyError:
        return PolicyError(path, problem, self.source)

    def expect(self, path: str, what: str, got: object) -> PolicyError:
        return self.fail(path, f"expected {what}, got {_show(got)}")

    def int_in(self, path: str, value: object, lo: int, hi: int | None = None) -> int:
        if not _is_int(value) or value < lo or (hi is not None and value > hi):  # type: ignore[operator]
            span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise self.expect(path, f"int {span}", value)
        assert isinstance(value, int)
        return value

    def string(self, path: str, value: object, *, nonempty: bool = False) -> str:
        if not isinstance(value, str) or (nonempty and not value):
            raise self.expect(path, "a non-empty string" if nonempty else "a string", value)
        return value

    def boolean(self, path: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.expect(path, "true or false", value)
        return value

    def named_entries(self, path: str, value: object) -> Iterator[tuple[str, str, object]]:
        """(name, path, value) for a section written as ``[{name: v}, ...]`` or ``{name: v}``."""
        if isinstance(value, dict):
            for name, item in value.items():
                yield name, f"{path}.{name}", item
            return
        if not isinstance(value, list):
            raise self.expect(path, "a list of {name: ...} objects or an object", value)
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or not entry:
                raise self.expect(f"{path}[{i}]", "a non-empty object {name: ...}", entry)
            for name, item in entry.items():
                yield name, f"{path}[{i}].{name}", item

    # -- sections ---------------------------------------------------------

    def policy(self, obj: object) -> Policy:
        if not isinstance(obj, dict):
            raise self.expect("", "a JSON object at the top level", obj)
        release = self.string("release", obj["release"]) if "release" in obj else None
        product = self.string("product", obj["product"]) if "product" in obj else None
        schema = (
            self.int_in("schema-version", obj["schema-version"], 1)
            if "schema-version" in obj
            else None
        )
        if "via-socks5" in obj:
            socks = self.string("via-socks5", obj["via-socks5"], nonempty=True)
            host, sep, port = socks.rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise self.expect("via-socks5", '"address:port"', socks)
        retry = self.retry_section(obj.get("retry", []))
        certs = self.certs_section(obj.get("certs", []))
        stores = self.trust_store_section(obj.get("trust_stores", []), certs)
        if "s" not in obj:
            raise self.fail("s", "missing: the list of streamtypes is required")
        streamtypes = self.streamtype_section(obj["s"], retry, stores)
        cpd = None
        if CPD_STREAMTYPE in streamtypes:
            cpd = self.cpd(streamtypes[CPD_STREAMTYPE], self._paths[CPD_STREAMTYPE])
        return Policy(
            document=obj,
            source=self.source,
            release=release,
            product=product,
            schema_version=schema,
            retry=retry,
            certs=certs,
            trust_stores=stores,
            streamtypes=streamtypes,
            captive_portal_detect=cpd,
        )

    def retry_section(self, value: object) -> dict[str, RetryPolicy]:
        tables: dict[str, RetryPolicy] = {}
        for name, path, table in self.named_entries("retry", value):
            if not isinstance(table, dict):
                raise self.expect(path, "an object {backoff, conceal, ...}", table)
            if name in tables:
                raise self.fail(path, f"duplicate retry table {name!r}")
            if "backoff" not in table:
                raise self.fail(f"{path}.backoff", "missing: a list of delays in ms is required")
            backoff = table["backoff"]
            if not isinstance(backoff, list) or not backoff:
                raise self.expect(f"{path}.backoff", "a non-empty list of ms delays", backoff)
            delays = tuple(
                self.int_in(f"{path}.backoff[{i}]", ms, 0, 3_600_000)
                for i, ms in enumerate(backoff)
            )
            conceal = self.int_in(f"{path}.conceal", table.get("conceal", 0), 0, 65535)
            jitter = self.int_in(f"{path}.jitterpc", table.get("jitterpc", 0), 0, 100)
            ping = table.get("svalidping")
            hup = table.get("svalidhup")
            tables[name] = RetryPolicy(
                name=name,
                backoff_ms=delays,
                conceal=conceal,
                jitter_pc=jitter,
                svalid_ping_s=None if ping is None else self.int_in(f"{path}.svalidping", ping, 0),
                svalid_hup_s=None if hup is None else self.int_in(f"{path}.svalidhup", hup, 0),
            )
        return tables

    def certs_section(self, value: object) -> dict[str, str]:
        certs: dict[str, str] = {}
        for name, path, der in self.named_entries("certs", value):
            text = self.string(path, der, nonempty=True)
            try:
                base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                raise self.expect(path, "base64 DER", der) from None
            if name in certs:
                raise self.fail(path, f"duplicate certificate {name!r}")
            certs[name] = text
        return certs

    def trust_store_section(
        self, value: object, certs: Mapping[str, str]
    ) -> dict[str, tuple[str, ...]]:
        stores: dict[str, tuple[str, ...]] = {}
        entries: list[tuple[str, str, object]] = []
        if isinstance(value, list):
            # lws writes {"name": "x", "stack": [...]}; the short form {"x": [...]} works too.
            for i, entry in enumerate(value):
                path = f"trust_stores[{i}]"
                if not isinstance(entry, dict) or not entry:
                    raise self.expect(path, 'an object {"name": ..., "stack": [...]}', entry)
                if "stack" in entry:
                    name = self.string(f"{path}.name", entry.get("name"), nonempty=True)
                    entries.append((name, f"{path}.stack", entry["stack"]))
                else:
                    entries.extend((k, f"{path}.{k}", v) for k, v in entry.items())
        else:
            entries.extend(self.named_entries("trust_stores", value))
        for name, path, stack in entries:
            if not isinstance(stack, list) or not stack:
                raise self.expect(path, "a non-empty list of certificate names", stack)
            for j, cert in enumerate(stack):
                self.string(f"{path}[{j}]", cert, nonempty=True)
                if cert not in certs:
                    known = ", ".join(certs) or "none defined"
                    raise self.fail(
                        f"{path}[{j}]", f"unknown certificate {cert!r} (certs: {known})"
                    )
            if name in stores:
                raise self.fail(path, f"duplicate trust store {name!r}")
            stores[name] = tuple(stack)
        return stores

    def streamtype_section(
        self,
        value: object,
        retry: Mapping[str, RetryPolicy],
        stores: Mapping[str, tuple[str, ...]],
    ) -> dict[str, dict[str, Any]]:
        if not isinstance(value, list):
            raise self.expect("s", "a list of {streamtype: settings} objects", value)
        streamtypes: dict[str, dict[str, Any]] = {}
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or not entry:
                raise self.expect(f"s[{i}]", "a non-empty object {streamtype: settings}", entry)
            for name, settings in entry.items():
                path = f"s[{i}].{name}"
                if not isinstance(settings, dict):
                    raise self.expect(path, "an object of streamtype settings", settings)
                if name in streamtypes:
                    raise self.fail(path, f"duplicate streamtype (first at {self._paths[name]})")
                self.common_fields(path, settings, retry, stores)
                streamtypes[name] = settings
                self._paths[name] = path
        return streamtypes

    def common_fields(
        self,
        path: str,
        st: Mapping[str, Any],
        retry: Mapping[str, RetryPolicy],
        stores: Mapping[str, tuple[str, ...]],
    ) -> None:
        """Check the fields every streamtype may carry; leave the rest alone."""
        for key, val in st.items():
            where = f"{path}.{key}"
            if key in _BOOL_FIELDS:
                self.boolean(where, val)
            elif key in _STR_FIELDS:
                self.string(where, val)
            elif key == "port":
                self.int_in(where, val, 1, 65535)
            elif key == "http_expect":
                self.int_in(where, val, 100, 599)
            elif key == "timeout_ms":
                self.int_in(where, val, 0)
            elif key == "http_method":
                if not isinstance(val, str) or not _METHOD.match(val):
                    raise self.expect(where, "an HTTP method such as GET", val)
            elif key == "retry":
                self.string(where, val, nonempty=True)
                if val not in retry:
                    known = ", ".join(retry) or "none defined"
                    raise self.fail(where, f"unknown retry table {val!r} (retry: {known})")
            elif key == "tls_trust_store":
                self.string(where, val, nonempty=True)
                if val not in stores:
                    known = ", ".join(stores) or "none defined"
                    raise self.fail(where, f"unknown trust store {val!r} (trust_stores: {known})")

    def cpd(self, st: Mapping[str, Any], path: str) -> CaptivePortalDetect:
        """The stricter checks for the one streamtype we act on ourselves."""
        if "endpoint" not in st:
            raise self.fail(f"{path}.endpoint", "missing: the host to probe is required")
        endpoint = self.string(f"{path}.endpoint", st["endpoint"], nonempty=True)
        protocol = st.get("protocol", "h1")
        if protocol not in _CPD_PROTOCOLS:
            raise self.expect(f"{path}.protocol", '"h1" or "h2"', protocol)
        tls = bool(st.get("tls", False))
        return CaptivePortalDetect(
            endpoint=endpoint,
            http_url=st.get("http_url", ""),
            port=st.get("port", 443 if tls else 80),
            protocol=protocol,
            http_method=st.get("http_method", "GET"),
            opportunistic=st.get("opportunistic", False),
            http_expect=st.get("http_expect"),
            http_fail_redirect=st.get("http_fail_redirect", False),
            tls=tls,
            retry=st.get("retry"),
            timeout_ms=st.get("timeout_ms"),
        )
