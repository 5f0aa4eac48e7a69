"""`make bench` still works: every scenario, tiny, against both servers."""

import json
import subprocess
import sys

import pytest
from servers import ROOT

pytestmark = pytest.mark.server


def test_a_quick_benchmark_run_verifies_every_scenario(tmp_path):
    report, plot = tmp_path / "README.md", tmp_path / "latency.png"

    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick"]
        + ["--output", str(report), "--plot", str(plot)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
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
