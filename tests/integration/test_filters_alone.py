"""Each filter works on its own: an operator may deploy only some of them. The configurations are
derived from envoy/envoy.yaml the same way scripts/bench derives them."""

import subprocess
import time

import httpx
import pytest
from conftest import DEMO_KEYS, FAKES, access_log_records, free_port

import bench  # scripts/bench.py (conftest puts scripts/ on the path)


@pytest.fixture(scope="module")
def fake():
    # No keys: the fake accepts any credential, so filters that inject none still get answers.
    p = subprocess.Popen([str(FAKES), "--listen", "any=127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline().split()[1].rsplit(":", 1)[1])
    assert p.stdout.readline().strip() == "ready"
    yield port
    p.terminate()
    p.wait()


@pytest.fixture
def alone(fake, tmp_path):
    started = []

    def start(name, edit=lambda cfg: cfg):
        port, admin = free_port(), free_port()
        cfg, _, _, _ = bench.make_config(name, port, admin, fake, tmp_path)
        cfg = edit(cfg)
        envoy = bench.Envoy(cfg, tmp_path, workers=1, pin=False)
        started.append(envoy)
        return f"http://127.0.0.1:{port}", tmp_path / "access.log"

    yield start
    for e in started:
        e.stop()


def call(url, key=DEMO_KEYS["acme"]):
    h = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/chat/completions", headers=h, timeout=20,
                      json={"model": "chat", "messages": [{"role": "user", "content": "alone"}]})


def records(log, want=1, timeout=5):
    """Audit records in the access log (Envoy flushes it about once a second here)."""
    import time

    deadline = time.time() + timeout
    while True:
        found = access_log_records(log)
        if len(found) >= want or time.time() > deadline:
            return found
        time.sleep(0.1)


def test_audit_emit_alone_records_every_call(alone):
    url, log = alone("audit-emit")
    r = call(url, key=None)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Echo: alone"
    [rec] = records(log)
    assert rec["outcome"] == "ok" and rec["tenant"] is None
    assert rec["tokens"]["input"] == r.json()["usage"]["prompt_tokens"]
    assert r.headers["x-aigw-tokens-output"] == str(r.json()["usage"]["completion_tokens"])


def test_auth_key_swap_alone_refuses_and_swaps_keys(alone):
    url, _ = alone("auth-key-swap")
    assert call(url, key="aigw_sk_wrong").status_code == 401
    assert call(url, key=None).json()["error"]["code"] == "missing_api_key"
    assert call(url).status_code == 200


def test_quota_alone_charges_an_anonymous_bucket(alone):
    url, _ = alone("quota")
    r = call(url, key=None)
    assert r.status_code == 200 and "x-ratelimit-remaining-requests" in r.headers


def test_quota_alone_charges_a_streamed_call_what_its_usage_says(alone):
    # Without the audit stage, quota charges a stream what it used, not its estimate.
    import json

    def slow_refill(cfg):
        text = json.dumps(cfg).replace('\\"tokens_per_minute\\": 1000000000000,',
                                       '\\"tokens_per_minute\\": 1, \\"tokens_burst\\": 1000000,', 1)
        assert "tokens_burst" in text
        return json.loads(text)

    url, _ = alone("quota", slow_refill)
    # (An answer of some length: its output tokens are what only the stream's usage tells.)
    words = " ".join(f"w{i}" for i in range(40))
    body = {"model": "chat", "max_tokens": 100, "messages": [{"role": "user", "content": words}]}

    def plain():
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=20)
        assert r.status_code == 200, r.text
        return int(r.headers["x-ratelimit-remaining-tokens"]), r.json()["usage"]["total_tokens"]

    before, first = plain()
    with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=20,
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    usage = [json.loads(line[6:])["usage"] for line in text.splitlines()
             if line.startswith("data: {") and '"usage":{' in line]
    assert len(usage) == 1, text[-500:]
    time.sleep(0.3)
    after, _ = plain()
    # Between two probes of the same estimate: the first probe and the stream, each as used.
    assert abs((before - after) - (first + usage[0]["total_tokens"])) <= 1, (before - after, first, usage)


def test_route_select_alone_routes_and_translates(alone):
    url, _ = alone("route-select")
    r = call(url, key=None)
    assert r.status_code == 200, r.text
    assert r.headers["x-aigw-provider"] == "anthropic"
    assert r.json()["object"] == "chat.completion" and r.json()["choices"][0]["message"]["content"] == "Echo: alone"


def test_the_bench_prints_a_rows_gateway_configuration_as_envoy_gets_it():
    """`scripts/bench --gateway-config full`: the input of filters/core/examples/call_cost.rs."""
    import json
    import sys

    out = subprocess.run([sys.executable, str(bench.ROOT / "scripts" / "bench.py"), "--gateway-config", "full"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert {"auth", "route", "quota", "audit"} <= set(json.loads(out.stdout))
    bad = subprocess.run([sys.executable, str(bench.ROOT / "scripts" / "bench.py"), "--gateway-config", "bare"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "no gateway filter" in bad.stderr
