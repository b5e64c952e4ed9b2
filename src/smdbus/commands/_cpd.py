"""``smd cpd``: run one captive portal detection check and say what it found.

The probe is the policy's ``captive_portal_detect`` streamtype (the shipped
default policy probes ``http://connectivitycheck.android.com:80/generate_204``
and expects 204), retried along the policy's retry table::

    $ smd cpd
    OK: 204 as expected (http://connectivitycheck.android.com:80/generate_204, 1 probe, 38 ms)
    $ smd cpd --url http://127.0.0.1:8080/generate_204 --timeout 1 --no-retry
    Captive: 302 redirect to http://portal.lan/login (...)

Exit status: 0 OK, 3 Captive, 4 No internet, 2 bad arguments or policy.
"""

from __future__ import annotations

import argparse
import json
import sys

from smdbus._aiorun import run as run_async
from smdbus.commands._options import examples

EXIT = {"OK": 0, "Captive": 3, "No internet": 4}


def configure(parser: argparse.ArgumentParser) -> None:
    examples(
        parser,
        "smd cpd                                 the policy's probe, with its retries",
        "smd cpd --url http://127.0.0.1:8080/generate_204 --timeout 1 --no-retry",
        "",
        "exit status: 0 OK, 3 Captive, 4 No internet, 2 bad arguments or policy",
    )
    parser.add_argument("--policy", metavar="FILE", help="policy JSON (default: the shipped one)")
    parser.add_argument(
        "--url", metavar="URL", help="probe this URL instead of the policy's endpoint"
    )
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="seconds per probe (default: policy or 3)"
    )
    parser.add_argument("--no-retry", action="store_true", help="one probe, no retry table")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from smdbus.net import CaptivePortalDetector, PolicyError, default_policy, load_policy

    try:
        policy = load_policy(args.policy) if args.policy else default_policy()
        kwargs: dict[str, object] = {}
        if args.url:
            kwargs["url"] = args.url
        if args.timeout is not None:
            kwargs["timeout"] = args.timeout
        if args.no_retry:
            kwargs["retry"] = None
        detector = CaptivePortalDetector.from_policy(policy, **kwargs)
    except (PolicyError, ValueError) as e:
        print(f"smd cpd: {e}", file=sys.stderr)
        return 2
    report = run_async(detector.check("smd cpd"))
    last = report.probes[-1]
    if args.json:
        print(
            json.dumps(
                {
                    "result": report.result.value,
                    "url": report.url,
                    "probes": [
                        {
                            "result": p.result.value,
                            "reason": p.reason,
                            "status": p.status,
                            "location": p.location,
                            "elapsed_ms": round(p.elapsed * 1000, 1),
                        }
                        for p in report.probes
                    ],
                }
            )
        )
    else:
        total = sum(p.elapsed for p in report.probes)
        n = report.attempts
        print(
            f"{report.result.value}: {last.reason} "
            f"({report.url}, {n} probe{'s' if n != 1 else ''}, {total * 1000:.0f} ms)"
        )
    return EXIT[report.result.value]
