"""How calls that fail, or end early, are recorded and charged.

One rule (README, "What a failed or partial call costs") decides what such a call costs, and the
audit record and the budget both use it: what the provider reported; else, for a stream cut
short, the prompt estimate plus one token per content event streamed; nothing when the provider
billed nothing.
"""

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from conftest import DEMO_KEYS, PRICE_BOOK, assert_both_workers_used, expected_cost
from test_observability import metric, scrape
from test_quota import estimate, quota_config

SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"


def unique(text="hello"):
    return f"{text} {uuid.uuid4().hex[:12]}"


def stream_chat(gw, content, headers=None, model="chat", max_tokens=100):
    """A streamed chat call; returns (request id, the data events received, how it ended)."""
    h = {"authorization": f"Bearer {DEMO_KEYS['acme']}", **(headers or {})}
    payload = {"model": model, "stream": True, "max_tokens": max_tokens,
               "messages": [{"role": "user", "content": content}]}
    events, ended = [], "clean"
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=payload, headers=h, timeout=20) as r:
        rid = r.headers["x-aigw-request-id"]
        try:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
        except httpx.HTTPError:
            ended = "reset"
    return rid, events, ended


def record(gw, rid):
    [rec] = gw.audit(rid)
    return rec


def test_a_streamed_messages_call_is_audited_ok(gateway):
    before = scrape(gateway)
    body = {"model": "chat", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": unique()}]}
    h = {"x-api-key": DEMO_KEYS["acme"], "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", f"{gateway.url}/v1/messages", json=body, headers=h, timeout=20) as r:
        assert r.status_code == 200
        rid = r.headers["x-aigw-request-id"]
        kinds = [line[7:] for line in r.iter_lines() if line.startswith("event: ")]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    rec = record(gateway, rid)
    assert rec["outcome"] == "ok" and rec["stream"] is True, rec
    assert rec["tokens"]["output"] > 0 and "usage_estimated" not in rec["flags"]
    assert Decimal(rec["cost_usd"]) == expected_cost(SONNET, rec["tokens"])
    # The metric agrees: counted as ok, not as an upstream error.
    after = scrape(gateway)
    for outcome, delta in (("ok", 1), ("upstream_error", 0)):
        n = [metric(m, "aigw_requests_total", provider="anthropic", model=SONNET, outcome=outcome)
             for m in (before, after)]
        assert n[1] - n[0] == delta, (outcome, n)


def test_a_provider_reset_mid_stream_is_an_upstream_error_charged_what_streamed(gateway):
    content = unique("reset")
    rid, events, ended = stream_chat(gateway, content, headers={"x-fake-fault": "anthropic=reset-after-2"})
    assert ended == "reset"
    rec = record(gateway, rid)
    assert rec["outcome"] == "upstream_error", rec
    # Prompt estimate, plus the two content events that reached the caller.
    assert rec["tokens"] == {"input": estimate(content, 0), "cached_input": 0, "cache_write": 0, "cache_write_1h": 0, "output": 2, "reasoning": 0}
    assert "usage_estimated" in rec["flags"]
    assert Decimal(rec["cost_usd"]) == expected_cost(SONNET, rec["tokens"]) > 0


def test_an_in_stream_error_is_charged_what_streamed(gateway):
    content = unique("in-stream error")
    rid, events, _ = stream_chat(gateway, content, headers={"x-fake-fault": "anthropic=error-after-3"})
    assert any('"error"' in e for e in events), events
    rec = record(gateway, rid)
    assert rec["outcome"] == "upstream_error"
    assert rec["tokens"]["output"] == 3 and rec["tokens"]["input"] == estimate(content, 0)
    assert Decimal(rec["cost_usd"]) == expected_cost(SONNET, rec["tokens"])


def test_a_chain_cut_by_per_try_timeouts_records_timeouts(gateway):
    r = gateway.chat(unique(), headers={"x-fake-fault": "*=delay-3000", "x-gateway-latency-budget-ms": "800"})
    assert r.status_code in (503, 504), r.text
    rec = record(gateway, r.headers["x-aigw-request-id"])
    assert [a["error_class"] for a in rec["attempts"]] == ["timeout", "timeout"], rec["attempts"]
    assert rec["tokens"] is None and rec["cost_usd"] is None


# -- the budget charges what the audit record says ----------------------------------------------


def budget_spent(gw):
    """What the day's budget has spent or reserved, as its own refusal states it."""
    r = httpx.post(f"{gw.url}/v1/chat/completions", timeout=20,
                   json={"model": "chat", "max_tokens": 10_000_000, "messages": [{"role": "user", "content": "x"}]},
                   headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"})
    assert r.status_code == 402, r.text
    return Decimal(re.search(r"\(([0-9.]+) USD spent or reserved\)", r.json()["error"]["message"]).group(1))


def test_failed_calls_cost_the_budget_exactly_what_their_audit_records_say(fresh_gateway_factory):
    gw = fresh_gateway_factory(values={"QUOTA_CONFIG": quota_config({"acme": {"budget": {"daily_usd": "5"}}})})
    ids = []
    # A stream reset mid-way and an in-stream error: charged what streamed.
    ids.append(stream_chat(gw, unique(), headers={"x-fake-fault": "anthropic=reset-after-2"})[0])
    ids.append(stream_chat(gw, unique(), headers={"x-fake-fault": "anthropic=error-after-2"})[0])
    # A chain exhausted, and malformed answers everywhere: the providers billed nothing.
    for fault in ("*=503", "*=malformed"):
        r = gw.chat(unique(), headers={"x-fake-fault": fault})
        assert r.status_code == 503, r.text
        ids.append(r.headers["x-aigw-request-id"])
    # A good call, for contrast.
    ok = gw.chat(unique())
    assert ok.status_code == 200
    ids.append(ok.headers["x-aigw-request-id"])
    recs = [record(gw, i) for i in ids]
    assert [r["cost_usd"] is None for r in recs] == [False, False, True, True, False], recs
    audited = sum(Decimal(r["cost_usd"] or 0) for r in recs)
    assert budget_spent(gw) == audited


def test_the_budget_reservation_bounds_concurrent_calls_of_short_words(fresh_gateway_factory):
    """50 concurrent calls whose prompt is 150 one-letter words (154 tokens to the provider):
    the reservation must be an upper bound, so the day's cap is never passed."""
    content = " ".join("a" for _ in range(150))
    max_tokens = 20
    i, o = (Decimal(PRICE_BOOK["models"][HAIKU][k]) / 10**6 for k in ("input", "output"))
    worst = max(estimate(content, 0) * i + max_tokens * o,
                *(estimate(content, 0) * Decimal(PRICE_BOOK["models"][m]["input"]) / 10**6
                  + max_tokens * Decimal(PRICE_BOOK["models"][m]["output"]) / 10**6
                  for m in ("gpt-4o-mini-2024-07-18",)))
    cap = worst * 20  # twenty reservations fit at once
    gw = fresh_gateway_factory(values={"QUOTA_CONFIG": quota_config({"acme": {"budget": {"daily_usd": str(cap)}}})})

    def call(_):
        return httpx.post(f"{gw.url}/v1/chat/completions", timeout=30,
                          json={"model": "chat-openai-first", "max_tokens": max_tokens,
                                "messages": [{"role": "user", "content": content}]},
                          headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "connection": "close",
                                   "x-fake-fault": "openai=delay-300"})

    with ThreadPoolExecutor(max_workers=50) as pool:
        out = list(pool.map(call, range(50)))
    served = [r for r in out if r.status_code == 200]
    assert served and all(r.status_code in (200, 402) for r in out), [r.status_code for r in out]
    # The provider counted every word: the estimate was not below it.
    assert all(r.json()["usage"]["prompt_tokens"] <= estimate(content, 0) for r in served)
    assert_both_workers_used(gw)
    spent = sum(Decimal(record(gw, r.headers["x-aigw-request-id"])["cost_usd"]) for r in served)
    assert spent <= cap, (spent, cap)


# -- headers that must not cross -----------------------------------------------------------------


def test_only_allowed_headers_reach_providers_and_callers(gateway):
    msg = unique("headers")
    r = gateway.chat(msg, model="chat-openai-first", headers={
        "anthropic-beta": "prompt-caching-2024-07-31", "x-forwarded-for": "10.9.9.9",
        "x-envoy-original-path": "/admin", "x-gateway-unknown": "1", "x-note": "hi", "cookie": "a=b"})
    assert r.status_code == 200, r.text
    [seen] = gateway.provider_requests("openai", containing=msg)
    sent = {k.lower() for k in seen["headers"]}
    # (The gateway's chain header, and x-forwarded-proto and x-envoy-expected-rq-timeout-ms, which
    # Envoy adds, Envoy removes itself by envoy.yaml's request_headers_to_remove; the filter would too.)
    for h in ("anthropic-beta", "x-forwarded-for", "x-envoy-original-path", "x-gateway-unknown", "x-note", "cookie",
              "x-request-id", "user-agent", "x-aigw-chain", "x-forwarded-proto", "x-envoy-expected-rq-timeout-ms"):
        assert h not in sent, (h, seen["headers"])
    assert seen["headers"]["content-type"] == "application/json"
    # The provider's account headers stay at the gateway; its request id is kept under our name.
    for h in ("openai-version", "openai-organization", "openai-processing-ms", "cf-ray", "set-cookie", "request-id",
              "anthropic-ratelimit-requests-remaining", "connection"):
        assert h not in r.headers, (h, dict(r.headers))
    # (Envoy removes the provider's connection header and writes its own server name.)
    assert r.headers["server"] == "envoy", dict(r.headers)
    assert r.headers["x-aigw-provider-request-id"].startswith("req_fake")
    assert "x-ratelimit-remaining-requests" not in r.headers or r.headers["x-ratelimit-remaining-requests"] != "4999"
    a = gateway.chat(unique(), headers={"anthropic-beta": "x"})
    assert a.status_code == 200
    for h in ("anthropic-ratelimit-requests-remaining", "anthropic-organization-id", "cf-ray", "via", "request-id"):
        assert h not in a.headers, (h, dict(a.headers))
    assert a.headers["x-aigw-provider-request-id"].startswith("req_fake")


@pytest.mark.parametrize("model,provider", [("chat", "anthropic"), ("chat-openai-first", "openai")])
def test_what_the_official_sdk_sends_besides_the_call_stays_at_the_gateway(gateway, model, provider):
    # The SDK's own headers (its user agent, x-stainless-* telemetry, accept and encodings) and the
    # gateway key: Envoy removes most of them natively (envoy.yaml), the per-attempt filter the rest.
    import openai
    msg = unique("sdk")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=DEMO_KEYS["acme"], max_retries=0,
                           default_headers={"x-stainless-helper-method": "not-on-envoys-list"})
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": msg}])
    assert raw.parse().choices[0].message.content
    [seen] = gateway.provider_requests(provider, containing=msg)
    sent = {k.lower(): v for k, v in seen["headers"].items()}
    assert not [h for h in sent if h.startswith("x-stainless-")], sent
    for h in ("user-agent", "accept", "accept-encoding", "x-request-id"):
        assert h not in sent, (h, sent)
    # Only the provider's own credential, never the gateway key.
    assert DEMO_KEYS["acme"] not in json.dumps(sent)
    assert ("x-api-key" in sent) == (provider == "anthropic") and ("authorization" in sent) == (provider == "openai")
    assert not [h for h in raw.headers if h.startswith(("anthropic-ratelimit-", "openai-", "cf-"))], dict(raw.headers)


# -- Envoy's own replies -------------------------------------------------------------------------


@pytest.mark.parametrize("target", [b"/v1/chat/completions#frag", b"/v1/chat/../../etc"])
def test_every_envoy_made_error_has_the_error_shape(gateway, target):
    from test_hostile_input import raw_call
    status, headers, body = raw_call(gateway, f"Authorization: Bearer {DEMO_KEYS['acme']}\r\n".encode(), path=target)
    assert status >= 400
    assert headers["content-type"] == "application/json"
    err = json.loads(body)["error"]
    assert err["code"] and err["type"]
