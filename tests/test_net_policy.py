"""The policy loader: the shipped default, the lws layout, and errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smdbus.net import (
    CaptivePortalDetect,
    PolicyError,
    RetryPolicy,
    default_policy,
    load_policy,
    parse_policy,
)

CERT = "MIIBszCCAVmgAwIBAgIUe3s="  # any valid base64 stands in for DER here


def lws_style() -> dict[str, Any]:
    """A policy written the way libwebsockets' examples write it."""
    return {
        "release": "01234567",
        "product": "myproduct",
        "schema-version": 1,
        "via-socks5": "127.0.0.1:1080",
        "retry": [
            {"default": {"backoff": [1000, 2000, 3000, 5000, 10000], "conceal": 5, "jitterpc": 20}},
            {"quick": {"backoff": [100], "conceal": 3, "svalidping": 30, "svalidhup": 35}},
        ],
        "certs": [{"isrg_root_x1": CERT}, {"other": CERT}],
        "trust_stores": [{"name": "le_via_isrg", "stack": ["isrg_root_x1", "other"]}],
        "s": [
            {
                "mintest": {
                    "endpoint": "warmcat.com",
                    "port": 4443,
                    "protocol": "h1get",
                    "tls": True,
                    "retry": "default",
                    "tls_trust_store": "le_via_isrg",
                    "some_future_field": {"kept": [1, 2]},
                }
            },
            {
                "captive_portal_detect": {
                    "endpoint": "connectivitycheck.android.com",
                    "http_url": "generate_204",
                    "port": 80,
                    "protocol": "h1",
                    "http_method": "GET",
                    "opportunistic": True,
                    "http_expect": 204,
                    "http_fail_redirect": True,
                    "retry": "quick",
                }
            },
            {"vendor_thing": {"anything": "goes", "port": 9}},
        ],
    }


def test_default_policy_targets_the_spec_endpoint() -> None:
    p = default_policy()
    assert p.captive_portal_detect == CaptivePortalDetect(
        endpoint="connectivitycheck.android.com",
        http_url="generate_204",
        port=80,
        protocol="h1",
        http_method="GET",
        opportunistic=True,
        http_expect=204,
        http_fail_redirect=True,
        retry="cpd",
    )
    assert p.captive_portal_detect.url == "http://connectivitycheck.android.com:80/generate_204"
    assert p.source.endswith("data/default-policy.json")
    cpd_retry = p.retry_for("captive_portal_detect")
    assert cpd_retry is not None and cpd_retry.attempts == 3


def test_default_policy_file_is_package_data() -> None:
    import smdbus

    path = Path(smdbus.__file__).parent / "data" / "default-policy.json"
    assert load_policy(path).captive_portal_detect == default_policy().captive_portal_detect


def test_lws_layout_is_understood() -> None:
    p = parse_policy(json.dumps(lws_style()), source="lws.json")
    assert (p.release, p.product, p.schema_version) == ("01234567", "myproduct", 1)
    assert p.retry["default"] == RetryPolicy("default", (1000, 2000, 3000, 5000, 10000), 5, 20)
    assert p.retry["quick"].svalid_ping_s == 30 and p.retry["quick"].svalid_hup_s == 35
    assert p.trust_stores == {"le_via_isrg": ("isrg_root_x1", "other")}
    assert list(p.certs) == ["isrg_root_x1", "other"]
    assert list(p.streamtypes) == ["mintest", "captive_portal_detect", "vendor_thing"]
    assert p.retry_for("captive_portal_detect") is p.retry["quick"]
    assert p.retry_for("vendor_thing") is None


def test_unknown_streamtypes_and_fields_are_kept_intact() -> None:
    doc = lws_style()
    p = parse_policy(doc)
    assert p.streamtype("vendor_thing") == {"anything": "goes", "port": 9}
    assert p.streamtype("mintest")["some_future_field"] == {"kept": [1, 2]}
    assert p.document == doc
    assert p.document is not doc  # a copy: the caller's dict is not aliased


def test_object_form_of_sections_means_the_same() -> None:
    doc = lws_style()
    doc["retry"] = {"default": {"backoff": [1000], "conceal": 1}, "quick": {"backoff": [5]}}
    doc["certs"] = {"isrg_root_x1": CERT, "other": CERT}
    doc["trust_stores"] = {"le_via_isrg": ["isrg_root_x1"]}
    p = parse_policy(doc)
    assert p.retry["quick"] == RetryPolicy("quick", (5,), 0)
    assert p.trust_stores == {"le_via_isrg": ("isrg_root_x1",)}


def test_unknown_streamtype_lookup_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"no streamtype 'nope' \(known: mintest, captive"):
        parse_policy(lws_style()).streamtype("nope")


def test_retry_delays_repeat_the_last_entry_and_add_jitter() -> None:
    r = RetryPolicy("r", (1000, 2000, 3000), conceal=5, jitter_pc=20)
    assert r.attempts == 6
    assert [r.delay_ms(i) for i in range(5)] == [1000, 2000, 3000, 3000, 3000]
    assert r.delay_ms(0, rand=0.5) == 1100
    assert r.delay_ms(1, rand=0.999) == 2399
    with pytest.raises(ValueError, match="retry index must be >= 0"):
        r.delay_ms(-1)


def test_cpd_url_for_tls_and_ipv6() -> None:
    c = CaptivePortalDetect(endpoint="::1", http_url="/x", port=8443, tls=True)
    assert c.url == "https://[::1]:8443/x"


def _bad(mutate: Any) -> str:
    doc = lws_style()
    mutate(doc)
    with pytest.raises(PolicyError) as info:
        parse_policy(json.dumps(doc), source="/etc/smd/policy.json")
    return str(info.value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["s"][1]["captive_portal_detect"].__setitem__("port", "x"),
            's[1].captive_portal_detect.port: expected int 1..65535, got "x"',
        ),
        (
            lambda d: d["s"][1]["captive_portal_detect"].__setitem__("port", 70000),
            "s[1].captive_portal_detect.port: expected int 1..65535, got 70000",
        ),
        (
            lambda d: d["s"][0]["mintest"].__setitem__("tls", "yes"),
            's[0].mintest.tls: expected true or false, got "yes"',
        ),
        (
            lambda d: d["s"][1]["captive_portal_detect"].__setitem__("http_expect", 99),
            "s[1].captive_portal_detect.http_expect: expected int 100..599, got 99",
        ),
        (
            lambda d: d["s"][1]["captive_portal_detect"].__setitem__("http_method", "get it"),
            "s[1].captive_portal_detect.http_method: "
            'expected an HTTP method such as GET, got "get it"',
        ),
        (
            lambda d: d["s"][1]["captive_portal_detect"].__setitem__("retry", "slow"),
            "s[1].captive_portal_detect.retry: unknown retry table 'slow' (retry: default, quick)",
        ),
        (
            lambda d: d["s"][1]["captive_portal_detect"].pop("endpoint"),
            "s[1].captive_portal_detect.endpoint: missing",
        ),
        (
            lambda d: d["s"][1]["captive_portal_detect"].__setitem__("protocol", "mqtt"),
            's[1].captive_portal_detect.protocol: expected "h1" or "h2", got "mqtt"',
        ),
        (
            lambda d: d["s"][0]["mintest"].__setitem__("tls_trust_store", "x"),
            "s[0].mintest.tls_trust_store: unknown trust store 'x' (trust_stores: le_via_isrg)",
        ),
        (
            lambda d: d["s"].append({"mintest": {}}),
            "s[3].mintest: duplicate streamtype (first at s[0].mintest)",
        ),
        (lambda d: d["s"].append([]), "s[3]: expected a non-empty object"),
        (lambda d: d.pop("s"), "s: missing"),
        (lambda d: d.__setitem__("s", {}), "s: expected a list"),
        (
            lambda d: d["retry"][0]["default"]["backoff"].__setitem__(2, -1),
            "retry[0].default.backoff[2]: expected int 0..3600000, got -1",
        ),
        (
            lambda d: d["retry"][1]["quick"].__setitem__("jitterpc", 101),
            "retry[1].quick.jitterpc: expected int 0..100, got 101",
        ),
        (lambda d: d["retry"][1]["quick"].pop("backoff"), "retry[1].quick.backoff: missing"),
        (
            lambda d: d["certs"][1].__setitem__("other", "not base64!"),
            'certs[1].other: expected base64 DER, got "not base64!"',
        ),
        (
            lambda d: d["trust_stores"][0]["stack"].append("missing"),
            "trust_stores[0].stack[2]: unknown certificate 'missing' (certs: isrg_root_x1, other)",
        ),
        (
            lambda d: d.__setitem__("schema-version", 0),
            "schema-version: expected int >= 1, got 0",
        ),
        (
            lambda d: d.__setitem__("via-socks5", "nohostport"),
            'via-socks5: expected "address:port", got "nohostport"',
        ),
        (lambda d: d.__setitem__("release", 7), "release: expected a string, got 7"),
    ],
)
def test_errors_name_the_file_and_the_path(mutate: Any, message: str) -> None:
    text = _bad(mutate)
    assert text.startswith("/etc/smd/policy.json: ")
    assert message in text


def test_error_carries_path_and_source_fields() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy('{"s": [{"captive_portal_detect": {"endpoint": 5}}]}', source="p.json")
    err = info.value
    assert (err.source, err.path) == ("p.json", "s[0].captive_portal_detect.endpoint")
    assert err.problem == "expected a string, got 5"


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "broken.json"
    f.write_text('{\n  "s": [\n    {"a": {},}\n  ]\n}\n')
    with pytest.raises(PolicyError, match=r"broken.json: invalid JSON at line 3 column"):
        load_policy(f)


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nope.json: cannot read policy"):
        load_policy(tmp_path / "nope.json")


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(
        PolicyError, match=r"x.json: expected a JSON object at the top level, got \[\]"
    ):
        parse_policy("[]", source="x.json")


def test_the_policy_loader_does_not_need_h11_or_asyncio() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from smdbus.net import load_policy, default_policy; default_policy(); "
        "print(sorted(m for m in ('h11', 'asyncio', 'smdbus.net._routes') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
