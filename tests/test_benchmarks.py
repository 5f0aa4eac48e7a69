"""`make bench` still works: every scenario, tiny, against both servers."""

import json
import os
import subprocess
import sys

import pytest
from servers import ROOT

pytestmark = pytest.mark.server
PEER = ROOT.parent / "shared" / "bench" / "peer"


@pytest.fixture
def yardstick():
    if not PEER.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the yardstick is missing: {PEER}")
        pytest.skip(f"the yardstick is missing: {PEER}")


@pytest.mark.usefixtures("yardstick")
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
        assert round_["latency"]["deliveries"] > 0
        assert round_["connections"]["connect_errors"] == 0
    assert "(a) delivered messages/s" in report.read_text()
    assert plot.stat().st_size > 0
