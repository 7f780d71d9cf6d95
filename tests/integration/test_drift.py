"""`aigw-report drift` over the audit log of a real run: a provider made slower with the fakes'
delay injection is flagged (latency, with its effect and sample counts), and one that starts
refusing (its refusal rate and finish-reason mix); two unchanged periods are not; too few calls
say so."""

import subprocess
import time

import pytest
from conftest import ROOT, Gateway

REPORT = ROOT / "target" / "release" / "aigw-report"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    gw = Gateway(tmp_path_factory.mktemp("drift"))
    gw.start_envoy()
    try:
        def calls(n, fault=None):
            start = int(time.time() * 1000)
            for i in range(n):
                r = gw.chat(f"drift {i} {time.time_ns()}", max_tokens=5,
                            headers={"x-fake-fault": fault} if fault else None)
                assert r.status_code == 200, r.text
            time.sleep(0.01)
            return start, int(time.time() * 1000)
        calls(20)  # warm-up
        periods = {"a": calls(40), "b": calls(40), "slow": calls(40, "anthropic=delay-60"), "few": calls(5),
                   "refusing": calls(40, "anthropic=refuse")}
        time.sleep(0.5)
        yield gw, periods
    finally:
        gw.stop()


def drift(gw, base, cur):
    out = subprocess.run([str(REPORT), "drift", "--baseline", f"{base[0]}..{base[1]}", "--current",
                          f"{cur[0]}..{cur[1]}", str(gw.access_log)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_provider_made_slower_is_flagged_with_its_effect(run):
    gw, p = run
    out = drift(gw, p["a"], p["slow"])
    rows = [line for line in out.splitlines() if line.startswith("| anthropic |") and "latency p50/p95" in line]
    assert rows, out
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == "claude-sonnet-4-5-20250929" and cells[3].endswith("of 40") and cells[4].endswith("of 40")
    assert float(cells[6]) > 3.29 and cells[5].startswith("p50 +") and "p95 +" in cells[5], cells
    # Only latency moved: no answer signal did.
    assert "refusal rate" not in out and "finish reason" not in out, out


def test_a_provider_that_starts_refusing_is_flagged(run):
    gw, p = run
    out = drift(gw, p["a"], p["refusing"])
    cells = {}
    for line in out.splitlines():
        if line.startswith("| anthropic |"):
            c = [x.strip() for x in line.strip("|").split("|")]
            cells[c[2]] = c
    assert cells["refusal rate"][3:6] == ["0.0% of 40", "100.0% of 40", "+100.0 points"], out
    assert cells["finish reason: content_filter"][5] == "+100.0 points"
    assert cells["finish reason: stop"][5] == "-100.0 points"
    assert float(cells["refusal rate"][6]) > 3.29


def test_two_unchanged_periods_are_quiet_and_too_few_calls_say_so(run):
    gw, p = run
    assert "no signal moved significantly" in drift(gw, p["a"], p["b"])
    few = drift(gw, p["a"], p["few"])
    assert "too little data to tell" in few and "n=5" in few
