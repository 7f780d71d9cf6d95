"""The alert rules and the dashboard against a real Prometheus (Debian's `prometheus`) scraping the
real Envoy: the rules pass promtool's checks and unit tests; a provider outage injected with the
fakes makes the provider-error alert fire, and it resolves once the provider recovers; every
panel of the Grafana dashboard returns data after a mixed run.

The live test runs the shipped rules with every duration divided by 20 (a 5-minute window is
15 s, `for: 3m` is 9 s), scraping and evaluating every second: the same expressions, on a
test's time scale."""

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import DEMO_KEYS, ROOT, Gateway, free_port

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "aigw.json"
SCALE = 20


def scaled(text):
    """The rules with every duration (windows, offsets, `for:`) divided by SCALE."""
    secs = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def shrink(m):
        return f"{m.group(1)}{max(1, int(m.group(2)) * secs[m.group(3)] // SCALE)}s"
    return re.sub(r"(\[|for: |offset )(\d+)([smhd])(?!\w)", shrink, text)


def test_the_rules_pass_promtools_checks_and_unit_tests():
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULES.with_name("alerts.test.yml"))]):
        out = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "SUCCESS" in out.stdout + out.stderr


def test_scaling_shrinks_every_duration():
    assert scaled("rate(x[5m]) offset 30m\n    for: 3m\n") == "rate(x[15s]) offset 90s\n    for: 9s\n"
    assert not re.search(r"\[\d+[mhd]\]|for: \d+[mhd]|offset \d+[mhd]", scaled(RULES.read_text()))


class Prometheus:
    def __init__(self, workdir: Path, target_port: int):
        self.port = free_port()
        (workdir / "alerts.yml").write_text(scaled(RULES.read_text()))
        (workdir / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(workdir / "alerts.yml")],
            "scrape_configs": [{"job_name": "aigw", "metrics_path": "/stats/prometheus",
                                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}]}))
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=open(workdir / "prometheus.log", "w"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("prometheus did not start")

    def query(self, expr):
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5).json()
        assert r["status"] == "success", r
        return r["data"]["result"]

    def alerts(self, name):
        r = httpx.get(f"{self.url}/api/v1/alerts", timeout=5).json()
        return [a for a in r["data"]["alerts"] if a["labels"]["alertname"] == name]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not shutil.which("prometheus"):
        pytest.fail("prometheus is needed (scripts/test installs Debian's package)")
    d = tmp_path_factory.mktemp("prom")
    gw = Gateway(d / "gw")
    gw.start_envoy()
    prom = Prometheus(d, gw.admin_port)
    try:
        yield gw, prom
    finally:
        prom.stop()
        gw.stop()


def calls(gw, seconds, fault=None):
    end = time.time() + seconds
    while time.time() < end:
        r = gw.chat(f"prom {time.time_ns()}", headers={"x-fake-fault": fault} if fault else None)
        assert r.status_code == 200, r.text
        time.sleep(0.2)


def test_a_provider_outage_fires_the_provider_error_alert_and_recovery_resolves_it(stack):
    gw, prom = stack
    calls(gw, 4)
    assert prom.alerts("AigwProviderErrorRateHigh") == []
    # Anthropic answers 503 to every attempt: callers are still served (the chain falls back to
    # OpenAI), and the alert goes pending, then fires, naming the provider and model.
    firing, states = None, set()
    deadline = time.time() + 60
    while firing is None and time.time() < deadline:
        calls(gw, 1, fault="anthropic=503")
        for a in prom.alerts("AigwProviderErrorRateHigh"):
            states.add(a["state"])
            if a["state"] == "firing":
                firing = a
    assert firing, states
    assert "pending" in states or firing
    assert (firing["labels"]["provider"], firing["labels"]["model"]) == ("anthropic", "claude-sonnet-4-5-20250929")
    assert firing["labels"]["severity"] == "page" and "runbook" in firing["annotations"]
    assert "of attempts failing" in firing["annotations"]["summary"]
    # OpenAI, serving the fallbacks, never failed: no alert for it.
    assert {a["labels"]["provider"] for a in prom.alerts("AigwProviderErrorRateHigh")} == {"anthropic"}
    # Anthropic recovers: once its errors leave the window, the alert resolves.
    deadline = time.time() + 60
    while prom.alerts("AigwProviderErrorRateHigh") and time.time() < deadline:
        calls(gw, 1)
    assert prom.alerts("AigwProviderErrorRateHigh") == []


def test_every_dashboard_panel_has_data_after_a_mixed_run(stack):
    gw, prom = stack
    acme = DEMO_KEYS["acme"]
    for i in range(3):
        assert gw.chat(f"dash {i} {time.time_ns()}").status_code == 200
    assert gw.chat(f"dash fallback {time.time_ns()}", headers={"x-fake-fault": "anthropic=503"}).status_code == 200
    assert gw.chat(f"dash stream {time.time_ns()}", stream=True).status_code == 200
    same = f"dash cached {time.time_ns()}"
    assert [gw.chat(same, model="chat-cached").headers.get("x-aigw-cache") for _ in range(2)] == ["miss", "hit"]
    assert gw.chat("Mail ann.lee@example.com about it", model="chat-guarded").status_code == 200
    codes = [gw.chat(f"dash tiny {i} {time.time_ns()}", key=DEMO_KEYS["tiny"]).status_code for i in range(5)]
    assert 429 in codes and acme
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = {(p["title"], t["expr"].replace("$__rate_interval", "2m")) for p in panels for t in p["targets"]}
    assert len({t for t, _ in exprs}) >= 15
    titles = " ".join(t for t, _ in exprs).lower()
    for wanted in ("provider errors by class", "latency", "time to first token", "tokens", "cost by tenant",
                   "cost by provider", "fallbacks", "quota refusals by bucket", "cache hits", "dollars saved"):
        assert wanted in titles, wanted
    # Histograms reach Envoy's admin endpoint at its stats flush (5 s); then a scrape.
    deadline = time.time() + 40
    empty = exprs
    while empty and time.time() < deadline:
        time.sleep(1)
        empty = {(t, e) for t, e in empty if not prom.query(e)}
    assert not empty, sorted(empty)
    # The figures are the run's: the tenant panel's cost is `acme`'s and `tiny`'s.
    tenants = {r["metric"]["tenant"] for r in prom.query("sum by (tenant) (aigw_tenant_cost_nano_usd_total)")}
    assert {"acme", "tiny"} <= tenants
