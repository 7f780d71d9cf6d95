"""The Host trait's outgoing HTTP call, in the real Envoy.

A test-only filter of the module (root id `aigw_test_http_call`, which no gateway configuration
names) holds a request that carries `x-aigw-test-call: CLUSTER`, sends `GET /aigw-test-call` to
that Envoy cluster through `Host::http_call`, and either answers with the call's status and size
or (`CLUSTER resume`) lets the request go on through the gateway, marked with the call's
status. Later stages (fleet-mode
leases, for one) use the same call.
"""

import json

import httpx
from conftest import DEMO_KEYS, add_test_filter


def add_probe_filter(text):
    return add_test_filter(text, "test.http_call", "aigw_test_http_call", "allow_on_headers_stop_iteration: true")


def test_a_filter_calls_an_envoy_cluster_and_acts_on_the_answer(fresh_gateway_factory):
    gw = fresh_gateway_factory(template_edit=add_probe_filter)
    # The fake OpenAI has no such path: its own 404, with its own body, came back to the filter.
    r = httpx.get(f"{gw.url}/anything", headers={"x-aigw-test-call": "provider_openai"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": 404, "body_bytes": len(b'{"error":"not found"}')}
    # A cluster Envoy does not have: the proxy refuses the call, and the filter says so at once.
    r = httpx.get(f"{gw.url}/anything", headers={"x-aigw-test-call": "no_such_cluster"}, timeout=10)
    assert (r.status_code, r.json()) == (502, {"refused": True})
    # Resumed after the answer: the held request goes on through the gateway and is served. The
    # call's answer is delayed (the fake OpenAI's delay fault; the chat call itself is answered
    # by Anthropic), so the body always arrives first and must wait too: it once went on early,
    # and the late resume then dropped the connection.
    for _ in range(4):
        r = httpx.post(f"{gw.url}/v1/chat/completions", timeout=10,
                       json={"model": "chat", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
                       headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "x-fake-fault": "openai=delay-150",
                                "x-aigw-test-call": "provider_openai resume", "connection": "close"})
        assert r.status_code == 200, r.text
        assert json.loads(r.text)["choices"][0]["message"]["content"] == "Echo: hi"
    # The provider got the request as the filter left it once the answer had come: it carries
    # the call's status (404), not the caller's fault header.
    seen = [r["headers"].get("x-fake-fault") for r in gw.provider_requests("anthropic")]
    assert seen[-4:] == ["probe=status-404"] * 4, seen
    # Requests without the header are not held at all.
    r = httpx.post(f"{gw.url}/v1/chat/completions", timeout=10,
                   json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                   headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"})
    assert r.status_code == 200, r.text
