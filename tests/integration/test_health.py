"""Health-aware fallback with Envoy's own outlier detection on the provider clusters: a provider
that keeps failing is ejected, and the chain's aggregate cluster sends calls straight to the next
step (no attempt spent on it); the skip is counted and audited; 429s never eject; the provider
comes back after its ejection time. The shipped settings (envoy/envoy.yaml), with the ejection
time shortened from 30 s to 2 s for the test."""

import time

import httpx
import pytest
from conftest import Gateway


def shorter(text):
    assert "base_ejection_time: 30s" in text and "interval: 10s" in text
    return text.replace("base_ejection_time: 30s", "base_ejection_time: 2s").replace("interval: 10s", "interval: 1s")


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("health"), shorter, eject=True)
    g.start_envoy()
    yield g
    g.stop()


def outlier(gw, cluster):
    text = httpx.get(f"http://127.0.0.1:{gw.admin_port}/stats?filter=outlier_detection", timeout=5).text
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if name.startswith(f"cluster.{cluster}.outlier_detection."):
            out[name.rsplit(".", 1)[1]] = int(value)
    return out


def skipped_metric(gw):
    text = httpx.get(f"http://127.0.0.1:{gw.admin_port}/stats/prometheus", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("aigw_provider_skipped_total") and 'provider="anthropic"' in line)


def test_429s_never_eject_a_provider(gw):
    before = outlier(gw, "provider_anthropic").get("ejections_enforced_total", 0)
    for i in range(7):
        r = gw.chat(f"limited {i} {time.time_ns()}", headers={"x-fake-fault": "anthropic=429"})
        assert r.status_code == 200 and r.headers["x-aigw-provider"] == "openai", r.text
    assert outlier(gw, "provider_anthropic").get("ejections_enforced_total", 0) == before
    assert gw.chat("after 429s").headers["x-aigw-provider"] == "anthropic"


def test_a_failing_provider_is_ejected_skipped_and_audited_then_restored(gw):
    # Five 503s in a row from Anthropic (each call still served by OpenAI, in two attempts).
    for i in range(5):
        r = gw.chat(f"failing {i} {time.time_ns()}", headers={"x-fake-fault": "anthropic=503"})
        assert r.status_code == 200 and r.headers["x-aigw-attempts"] == "2", r.headers
    assert outlier(gw, "provider_anthropic")["ejections_active"] == 1
    # Ejected: the next calls go straight to OpenAI, in one attempt, and say what was skipped.
    sent_before = len(gw.provider_requests("anthropic"))
    r = gw.chat(f"skipping {time.time_ns()}")
    assert r.status_code == 200 and r.headers["x-aigw-provider"] == "openai" and r.headers["x-aigw-attempts"] == "1"
    assert len(gw.provider_requests("anthropic")) == sent_before, "no attempt spent on the ejected provider"
    rec = gw.audit(r.headers["x-aigw-request-id"])[0]
    assert "skipped_unhealthy:anthropic" in rec["flags"] and [a["provider"] for a in rec["attempts"]] == ["openai"]
    assert skipped_metric(gw) >= 1
    # After its ejection time, Anthropic is tried first again.
    deadline = time.time() + 10
    while time.time() < deadline and outlier(gw, "provider_anthropic")["ejections_active"]:
        time.sleep(0.2)
    r = gw.chat(f"restored {time.time_ns()}")
    assert r.headers["x-aigw-provider"] == "anthropic" and r.headers["x-aigw-attempts"] == "1"
    assert not any(f.startswith("skipped") for f in gw.audit(r.headers["x-aigw-request-id"])[0]["flags"])


def test_the_gateways_own_refusal_at_an_attempt_is_not_counted_against_the_provider(tmp_path):
    # Ejection after 2 failures here. An EU caller's chain: Anthropic (in zone), then OpenAI
    # (us-east-1, outside it). Anthropic fails; the retry reaches OpenAI's cluster, where the
    # attempt refuses it (503 no_eligible_provider_in_zone) without sending it: twice.
    g = Gateway(tmp_path, lambda t: shorter(t).replace("consecutive_5xx: 5", "consecutive_5xx: 2"), eject=True)
    g.start_envoy()
    try:
        from conftest import DEMO_KEYS
        for i in range(2):
            r = g.chat(f"eu {i} {time.time_ns()}", model="chat-cached", key=DEMO_KEYS["tiny"],
                       headers={"x-fake-fault": "anthropic=503"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "no_eligible_provider_in_zone", r.text
        time.sleep(1.2)
        assert outlier(g, "provider_anthropic")["ejections_enforced_total"] == 1
        assert outlier(g, "provider_openai").get("ejections_enforced_total", 0) == 0
        assert g.provider_requests("openai") == []
    finally:
        g.stop()


def test_prefer_fastest_moves_traffic_to_the_faster_provider_and_back(tmp_path):
    # The demo's `chat-fastest`: Anthropic then OpenAI, or OpenAI then Anthropic (chain
    # `chain_openai_first`), whichever answers faster; a provider unsampled for probe_ms (1 s
    # here, 10 s shipped) is tried first once.
    def edit(t):
        assert '"prefer": "fastest",' in t
        return t.replace('"prefer": "fastest",', '"prefer": "fastest", "probe_ms": 1000,')
    g = Gateway(tmp_path, edit)
    g.start_envoy()
    try:
        def fastest():
            r = g.chat(f"fast {time.time_ns()}", model="chat-fastest")
            assert r.status_code == 200, r.text
            return r.headers["x-aigw-route"], r.headers["x-aigw-provider"]
        # Anthropic is slow (300 ms): its attempts on `chat` teach the gateway so.
        for i in range(3):
            assert g.chat(f"slow {i}", headers={"x-fake-fault": "anthropic=delay-300"}).status_code == 200
        assert fastest() == ("default+fastest:openai", "openai")  # (OpenAI never sampled: tried)
        assert [fastest() for _ in range(3)] == [("default+fastest:openai", "openai")] * 3
        r = g.chat(f"audited {time.time_ns()}", model="chat-fastest")
        rec = g.audit(r.headers["x-aigw-request-id"])[0]
        assert (rec["route"], rec["alias"], rec["provider"]) == ("default+fastest:openai", "chat-fastest", "openai")
        # Now OpenAI is the slow one (600 ms) and Anthropic has recovered: once Anthropic is
        # probed again, traffic moves back to it.
        for i in range(8):
            assert g.chat(f"slow o {i}", model="chat-openai-first",
                          headers={"x-fake-fault": "openai=delay-600"}).status_code == 200
        time.sleep(1.1)
        # Both are unsampled for the probe time now: each is tried first once (Anthropic, then
        # OpenAI, which answers fast again but is still the slower on average), then Anthropic.
        calls = [fastest() for _ in range(5)]
        assert calls[:2] == [("default+fastest:anthropic", "anthropic"), ("default+fastest:openai", "openai")], calls
        assert calls[2:] == [("default+fastest:anthropic", "anthropic")] * 3, calls
    finally:
        g.stop()
