"""The soak (bench/soak.py) in short: 5 s of fuzzing, floods, stalled subscribers and one
proxy kill-and-restart, with well-behaved clients counting every message.

One run serves every test here. Only what does not depend on this machine's speed is
asserted: the report is complete, the proxy died only when killed, its descriptors came
back to their count before the load, and the well-behaved clients lost, duplicated and
reordered nothing outside the restart window. The timing figures (admission gap, RSS, log
rate) are docs/reliability.md's business, not a test's.

Known failures on today's code are marked ``xfail(strict=False)`` with the point of issue
10 that fixes them; turn each into a plain assertion once that fix is merged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"
SECONDS = 5


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", str(SECONDS), "--seed", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == 0, f"soak failed:\n{out.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_report_well_formed(report: dict[str, Any]) -> None:
    for key in ("settings", "machine", "timeline_s", "well_behaved", "proxy", "load", "goals"):
        assert key in report, key
    t = report["timeline_s"]
    assert 0 < t["kill"] < t["restarted"] <= t["clients_back"] < t["load"] + 1
    assert t["window"][0] < t["kill"] < t["clients_back"] < t["window"][1]
    w = report["well_behaved"]
    assert w["steady_sent"] > 0 and w["bursts"] > 0 and w["expected_deliveries"] > 0
    for where in ("outside", "in_window"):
        for what in ("lost", "duplicated", "reordered"):
            split = sum(w["by_publisher"][f"{k}_{where}"][what] for k in ("steady", "burst"))
            assert w[where][what] == split >= 0
    assert w["outside"]["lost"] + w["in_window"]["lost"] <= w["expected_deliveries"]
    p = report["proxy"]
    assert p["processes"][0]["end"] == "SIGKILL (planned)"
    assert p["peak_rss_mib"] > 0 and p["fds_baseline"] > 0
    assert p["log"]["lines"] >= 0 and p["log"]["lines_per_s"] >= 0
    load = report["load"]
    assert load["fuzzer"]["connections"] > 0
    assert load["flooders"]["frames"] > 0
    assert load["stalled"]["connections"] > 0
    for name, goal in report["goals"].items():
        assert set(goal) == {"value", "goal", "pass"}, name
        assert isinstance(goal["pass"], bool), name


def test_proxy_died_only_when_killed(report: dict[str, Any]) -> None:
    assert report["proxy"]["unplanned_exits"] == []
    assert report["proxy"]["log"]["tracebacks"] == 0


def test_descriptors_back_to_baseline(report: dict[str, Any]) -> None:
    p = report["proxy"]
    assert p["fds_end"] == p["fds_baseline"]


def test_nothing_duplicated_or_reordered_outside_restart(report: dict[str, Any]) -> None:
    outside = report["well_behaved"]["outside"]
    assert outside["duplicated"] == 0
    assert outside["reordered"] == 0


def test_nothing_lost_outside_restart(report: dict[str, Any]) -> None:
    w = report["well_behaved"]
    assert w["outside"]["lost"] == 0, w["by_publisher"]


def test_no_forged_log_lines(report: dict[str, Any]) -> None:
    log = report["proxy"]["log"]
    assert log["forged_lines"] == 0
    assert log["lines_with_raw_escape"] == 0
