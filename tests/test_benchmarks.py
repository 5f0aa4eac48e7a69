"""`make bench` still works: every scenario, tiny, against both servers."""

import json
import subprocess
import sys

import pytest
from servers import ROOT

pytestmark = pytest.mark.server


def quick_run(*options):
    """`run.py --quick` with `options`: its JSON summary, once it passed."""
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_quick_benchmark_run_verifies_every_scenario(tmp_path):
    report, plot = tmp_path / "README.md", tmp_path / "latency.png"

    summary = quick_run("--output", str(report), "--plot", str(plot))

    assert summary["verified"] is True
    for server in ("project", "peer"):
        (round_,) = summary["rounds"][server]
        assert round_["burst"]["lost"] == 0
        assert round_["burst"]["cpu_us_per_delivery"] > 0
        assert round_["latency"]["deliveries"] > 0
        assert round_["connections"]["connect_errors"] == 0
        assert_abuse_counted(round_["abuse"])
        assert_abuse_counted(round_["firehose"])
    # The yardstick has no rate limits: every abusive event is accepted.
    (peer,) = summary["rounds"]["peer"]
    assert peer["abuse"]["abuser_refused"] == {}
    text = report.read_text()
    assert "(a) delivered messages/s" in text
    assert "(a) server CPU per delivered message, µs" in text
    assert "(e) beside a firehose, 100 every 5 ms: normal clients' p99 ms" in text
    assert "normal clients' p99 ≤ 100 ms" in text
    assert plot.stat().st_size > 0
    soak = summary["rounds"]["project"][0]["soak"]
    assert soak["ok"] is True and len(soak["rss_mb"]) >= 3
    assert "(h) soak" in text


def test_a_benchmark_run_with_an_admin_watching_the_chat(tmp_path):
    report = tmp_path / "README.md"

    summary = quick_run("--only", "burst", "--admin", "--output", str(report))

    (chat,) = summary["rounds"]["project"]
    assert chat["burst"]["lost"] == 0
    assert chat["admin"]["events"] > 0  # told of the clients connecting, at least
    assert "admin" not in summary["rounds"]["peer"][0]
    assert not report.exists()  # a partial run writes no report


def assert_abuse_counted(abuse):
    """(e): the normal clients all served, the flood flowed, every abusive
    event answered one way or the other (or counted unanswered)."""
    assert abuse["deliveries"] > 0
    assert abuse["lost"] == abuse["duplicated"] == abuse["out_of_order"] == 0
    assert abuse["abuser_attempted"] > 0
    assert abuse["abuser_attempted"] == (
        abuse["abuser_accepted"]
        + sum(abuse["abuser_refused"].values())
        + abuse["abuser_unanswered"]
    )
