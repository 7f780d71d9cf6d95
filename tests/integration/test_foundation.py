"""The walking skeleton end to end: real Envoy, real .wasm filters, fake providers."""

import json
import re
import time
import uuid
from decimal import Decimal

import pytest
from conftest import DEMO_KEYS, PROVIDER_KEYS, expected_cost


def unique(text="hello"):
    """A message no other test sends, to find this call among what the providers saw."""
    return f"{text} {uuid.uuid4().hex[:12]}"


def one_audit(gw, resp):
    rid = resp.headers["x-aigw-request-id"]
    records = gw.audit(rid)
    assert len(records) == 1, f"expected one audit record for {rid}, got {records}"
    return records[0]


def assert_openai_error(resp, status, code):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["message"] and err["type"]


def test_good_key_is_served_and_provider_sees_only_its_own_key(gateway):
    msg = unique()
    resp = gateway.chat(msg)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": f"Echo: {msg}", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert resp.headers["x-aigw-provider"] == "anthropic"
    assert resp.headers["x-aigw-model"] == "claude-sonnet-4-5-20250929"

    [seen] = gateway.provider_requests("anthropic", containing=msg)
    assert seen["path"] == "/v1/messages"
    assert seen["headers"]["x-api-key"] == PROVIDER_KEYS["anthropic"]
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen["headers"]
    assert not [h for h in seen["headers"] if h.startswith("x-aigw-")]
    assert DEMO_KEYS["acme"] not in json.dumps(seen)
    sent = json.loads(seen["body"])
    assert sent["model"] == "claude-sonnet-4-5-20250929"
    assert sent["max_tokens"] == 1024
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": msg}]}]

    rec = one_audit(gateway, resp)
    assert rec["tenant"] == "acme" and rec["key_id"] == "demo-acme" and rec["alias"] == "chat"
    assert rec["outcome"] == "ok" and rec["status"] == 200 and len(rec["attempts"]) == 1
    assert rec["provider"] == "anthropic" and rec["model"] == "claude-sonnet-4-5-20250929"
    u = body["usage"]
    assert rec["tokens"] == {"input": u["prompt_tokens"], "cached_input": 0, "cache_write": 0, "cache_write_1h": 0, "output": u["completion_tokens"], "reasoning": 0}
    assert Decimal(rec["cost_usd"]) == expected_cost(rec["model"], rec["tokens"]) > 0


def test_openai_provider_gets_bearer_key_and_concrete_model(gateway):
    msg = unique()
    resp = gateway.chat(msg, model="chat-openai-first", headers={"x-api-key": "ignored"}, key=DEMO_KEYS["acme"])
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-aigw-provider"] == "openai"
    [seen] = gateway.provider_requests("openai", containing=msg)
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["authorization"] == f"Bearer {PROVIDER_KEYS['openai']}"
    assert "x-api-key" not in seen["headers"] and "anthropic-version" not in seen["headers"]
    assert json.loads(seen["body"])["model"] == "gpt-4o-mini-2024-07-18"
    rec = one_audit(gateway, resp)
    assert Decimal(rec["cost_usd"]) == expected_cost("gpt-4o-mini-2024-07-18", rec["tokens"])


@pytest.mark.parametrize("style", ["bearer", "x-api-key", "api-key"])
def test_caller_key_header_styles(gateway, style):
    key = DEMO_KEYS["acme"]
    headers = {"bearer": {"authorization": f"Bearer {key}"}, "x-api-key": {"x-api-key": key}, "api-key": {"api-key": key}}[style]
    resp = gateway.chat(unique(), key=None, headers=headers)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    "headers,code",
    [
        ({"authorization": "Bearer aigw-not-a-real-key"}, "invalid_api_key"),
        ({"x-api-key": "sk-ant-something-else"}, "invalid_api_key"),
        ({}, "missing_api_key"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
    ],
)
def test_bad_or_missing_key_is_401_and_no_provider_is_called(gateway, headers, code):
    msg = unique()
    resp = gateway.chat(msg, key=None, headers=headers)
    assert_openai_error(resp, 401, code)
    assert gateway.provider_requests("anthropic", containing=msg) == []
    assert gateway.provider_requests("openai", containing=msg) == []
    rec = one_audit(gateway, resp)
    assert rec["outcome"] == "refused_auth" and rec["status"] == 401
    assert rec["tenant"] is None and rec["tokens"] is None and rec["cost_usd"] is None


def test_feature_and_agent_within_scope_are_recorded_and_not_sent_upstream(gateway):
    msg = unique()
    resp = gateway.chat(msg, headers={"x-gateway-feature": "search", "x-gateway-agent": "triage-bot"})
    assert resp.status_code == 200, resp.text
    [seen] = gateway.provider_requests("anthropic", containing=msg)
    assert "x-gateway-feature" not in seen["headers"] and "x-gateway-agent" not in seen["headers"]
    rec = one_audit(gateway, resp)
    assert (rec["feature"], rec["agent"], rec["tenant"]) == ("search", "triage-bot", "acme")


@pytest.mark.parametrize(
    "key,headers,model,code",
    [
        ("acme", {"x-gateway-feature": "billing"}, "chat", "feature_not_in_scope"),
        ("beta", {"x-gateway-agent": "any-bot"}, "chat", "agent_not_in_scope"),
        ("beta", {}, "chat-openai-first", "alias_not_in_scope"),
    ],
)
def test_outside_the_key_scope_is_403_naming_the_scope(gateway, key, headers, model, code):
    msg = unique()
    resp = gateway.chat(msg, model=model, key=DEMO_KEYS[key], headers=headers)
    assert_openai_error(resp, 403, code)
    asked = next(iter(headers.values()), model)
    assert f"`{asked}`" in resp.json()["error"]["message"]
    assert gateway.provider_requests("anthropic", containing=msg) == []
    assert gateway.provider_requests("openai", containing=msg) == []
    rec = one_audit(gateway, resp)
    assert rec["tenant"] == key and rec["status"] == 403
    assert rec["outcome"] == ("refused_request" if code == "alias_not_in_scope" else "refused_auth")


def test_caller_cannot_smuggle_internal_headers(gateway):
    msg = unique()
    resp = gateway.chat(msg, headers={"x-aigw-chain": "chain_openai_first", "x-aigw-anything": "1"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-aigw-provider"] == "anthropic"  # the alias decided, not the caller
    [seen] = gateway.provider_requests("anthropic", containing=msg)
    assert not [h for h in seen["headers"] if h.startswith("x-aigw-")]


def test_past_the_per_minute_limit_is_429_with_retry_after(gateway):
    # Tenant "tiny" may make 3 requests per minute (burst 3).
    statuses = []
    for _ in range(3):
        r = gateway.chat(unique(), key=DEMO_KEYS["tiny"])
        statuses.append(r.status_code)
        assert r.headers["x-ratelimit-limit-requests"] == "3"
    assert statuses == [200, 200, 200]
    msg = unique()
    resp = gateway.chat(msg, key=DEMO_KEYS["tiny"])
    assert_openai_error(resp, 429, "tenant_requests_per_minute")
    assert resp.json()["error"]["type"] == "rate_limit_exceeded"
    retry_after = int(resp.headers["retry-after"])
    assert 1 <= retry_after <= 20
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert gateway.provider_requests("anthropic", containing=msg) == []
    rec = one_audit(gateway, resp)
    assert rec["outcome"] == "refused_quota" and rec["tenant"] == "tiny"
    # Another tenant is unaffected.
    assert gateway.chat(unique()).status_code == 200


def test_anthropic_529_falls_back_to_openai(gateway):
    msg = unique()
    resp = gateway.chat(msg, headers={"x-fake-fault": "anthropic=529"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-aigw-provider"] == "openai"
    assert resp.headers["x-envoy-attempt-count"] == "2"
    body = resp.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == f"Echo: {msg}"
    assert len(gateway.provider_requests("anthropic", containing=msg)) == 1
    [seen] = gateway.provider_requests("openai", containing=msg)
    # The second attempt starts clean: OpenAI path, OpenAI body, OpenAI key, no Anthropic headers.
    assert seen["path"] == "/v1/chat/completions"
    assert json.loads(seen["body"])["messages"] == [{"role": "user", "content": msg}]
    assert seen["headers"]["authorization"] == f"Bearer {PROVIDER_KEYS['openai']}"
    assert "anthropic-version" not in seen["headers"] and "x-api-key" not in seen["headers"]
    rec = one_audit(gateway, resp)
    assert rec["outcome"] == "ok" and len(rec["attempts"]) == 2 and rec["provider"] == "openai"
    assert Decimal(rec["cost_usd"]) == expected_cost("gpt-4o-mini-2024-07-18", rec["tokens"])


@pytest.mark.parametrize("status", [503, 429])
def test_openai_failure_falls_back_to_anthropic_in_openai_format(gateway, status):
    msg = unique()
    resp = gateway.chat(msg, model="chat-openai-first", headers={"x-fake-fault": f"openai={status}"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-aigw-provider"] == "anthropic"
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "claude-haiku-4-5-20251001"
    assert body["choices"][0]["message"]["content"] == f"Echo: {msg}"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    rec = one_audit(gateway, resp)
    assert len(rec["attempts"]) == 2 and rec["outcome"] == "ok"
    assert Decimal(rec["cost_usd"]) == expected_cost("claude-haiku-4-5-20251001", rec["tokens"])


def test_every_provider_failing_is_an_openai_error_and_audited(gateway):
    msg = unique()
    resp = gateway.chat(msg, headers={"x-fake-fault": "*=503"})
    assert resp.status_code == 503
    assert "error" in resp.json()
    rec = one_audit(gateway, resp)
    assert rec["outcome"] == "upstream_error" and len(rec["attempts"]) == 2 and rec["tokens"] is None


def test_streamed_anthropic_answer_arrives_as_openai_chunks(gateway):
    msg = unique("stream")
    with gateway.client.stream(
        "POST", "/v1/chat/completions",
        json={"model": "chat", "stream": True, "messages": [{"role": "user", "content": msg}]},
        headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        rid = resp.headers["x-aigw-request-id"]
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == f"Echo: {msg}"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]
    # The caller did not ask for usage: no usage chunk, no usage fields; the audit record has it.
    assert not any("usage" in c for c in chunks)
    [rec] = gateway.audit(rid)
    assert rec["stream"] is True and rec["outcome"] == "ok"
    assert rec["tokens"]["input"] > 0 and rec["tokens"]["output"] == len(f"Echo: {msg}".split())
    assert Decimal(rec["cost_usd"]) == expected_cost("claude-sonnet-4-5-20250929", rec["tokens"])
    # Asked for, the usage chunk comes last before [DONE] and matches the record.
    with gateway.client.stream(
        "POST", "/v1/chat/completions",
        json={"model": "chat", "stream": True, "stream_options": {"include_usage": True},
              "messages": [{"role": "user", "content": msg}]},
        headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
    ) as resp:
        rid = resp.headers["x-aigw-request-id"]
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    usage = json.loads(events[-2])["usage"]
    [rec] = gateway.audit(rid)
    assert rec["tokens"]["input"] == usage["prompt_tokens"] and rec["tokens"]["output"] == usage["completion_tokens"]


@pytest.mark.parametrize(
    "body,status,code",
    [
        (b"{not json", 400, "invalid_json"),
        # JSON has no infinity: a number the float reader would round to it is refused.
        (b'{"model": "chat", "temperature": 1e400, "messages": [{"role": "user", "content": "x"}]}', 400,
         "invalid_json"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), 400, "missing_model"),
        (json.dumps({"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]}).encode(), 404, "model_not_found"),
    ],
)
def test_bad_requests_get_openai_errors_and_are_audited(gateway, body, status, code):
    resp = gateway.client.post(
        "/v1/chat/completions", content=body,
        headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "content-type": "application/json"},
    )
    assert_openai_error(resp, status, code)
    rec = one_audit(gateway, resp)
    assert rec["outcome"] == "refused_request" and rec["tenant"] == "acme"


def test_official_openai_sdk_works_with_only_base_url_changed(gateway):
    from openai import OpenAI

    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=DEMO_KEYS["acme"], max_retries=0)
    msg = unique("sdk")
    out = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": msg}])
    assert out.choices[0].message.content == f"Echo: {msg}"
    assert out.usage.total_tokens > 0
    stream = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": msg}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == f"Echo: {msg}"


def test_invalid_filter_config_is_refused_with_a_reason_and_the_gateway_fails_closed(fresh_gateway_factory):
    broken = lambda text: text.replace('"requests_per_minute":600', '"requests_per_minute":"lots"')  # noqa: E731
    gw = fresh_gateway_factory(broken)
    msg = unique()
    resp = gw.chat(msg)
    assert resp.status_code == 500, resp.text
    assert resp.json()["error"]["type"] == "gateway_error"
    assert gw.provider_requests("anthropic", containing=msg) == []
    log = gw.envoy_log.read_text()
    assert gw.config_error("quota", "quota", "tenants.*.requests_per_minute") in log, log[-2000:]


def test_a_plugin_given_the_other_sides_module_is_refused_naming_the_module_and_fails_closed(
        fresh_gateway_factory):
    """Each side's plugins are in their own module (`aigw_gateway.wasm` on the listener,
    `aigw_gateway_upstream.wasm` per attempt), which links only that side's code: a per-attempt
    plugin given the listener's module is refused, its log line naming the module it needs."""
    wrong = lambda text: text.replace("aigw_gateway_upstream.wasm", "aigw_gateway.wasm")  # noqa: E731
    gw = fresh_gateway_factory(wrong)
    msg = unique()
    resp = gw.chat(msg)
    assert resp.status_code >= 500, resp.text
    assert gw.provider_requests("anthropic", containing=msg) == []
    assert gw.provider_requests("openai", containing=msg) == []
    log = gw.envoy_log.read_text()
    want = 'root_id "gateway_upstream" is not served by aigw_gateway.wasm: its vm_config loads aigw_gateway_upstream.wasm'
    assert want in log, log[-2000:]


def test_a_config_that_parses_but_is_wrong_names_the_field_from_the_top_of_the_gateways_config(
        fresh_gateway_factory):
    """Checks made when the configuration is compiled (not only its JSON shape) name the field
    too, as a path from the top of the filter's configuration."""
    zero = lambda text: text.replace('"requests_per_minute":600', '"requests_per_minute":0')  # noqa: E731
    gw = fresh_gateway_factory(zero)
    resp = gw.chat(unique())
    assert resp.status_code == 500, resp.text
    log = gw.envoy_log.read_text()
    want = gw.config_error("quota", "quota", "tenants.*.requests_per_minute") + ": must be at least 1"
    assert want in log, log[-2000:]


def test_a_key_given_twice_or_an_array_for_an_object_in_the_config_is_refused_by_name(fresh_gateway_factory):
    """The configuration is parsed once into a JSON value and read from it by hand: a key given
    twice (which the value would keep the last of silently) and an array where an object is
    expected (which serde's derived readers took as the object's first field) are each refused,
    naming the path, and the running configuration keeps serving. (Pushed as raw text: the
    renderer's own JSON parse would merge the copies.)"""
    gw = fresh_gateway_factory()
    assert gw.chat(unique()).headers["x-ratelimit-limit-requests"] == "600"
    path = gw.ecds_dir / (gw.filter_name("quota") + ".json")
    running = path.read_text()

    def push(edit):
        ecds = json.loads(running)
        conf = ecds["resources"][0]["typed_config"]["config"]["configuration"]
        conf["value"] = edit(conf["value"])
        __import__("render_envoy").write_ecds(str(gw.ecds_dir), {path.name: json.dumps(ecds)})

    def refused(want):
        deadline = time.time() + 10
        while want not in gw.envoy_log.read_text():
            assert time.time() < deadline, gw.envoy_log.read_text()[-2000:]
            time.sleep(0.05)
        resp = gw.chat(unique())
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-ratelimit-limit-requests"] == "600"

    def twice(value):
        text, n = re.subn(r'"requests_per_minute": ?600', '"requests_per_minute":600,"requests_per_minute":6',
                          value, count=1)
        assert n == 1, value[:500]
        return text

    push(twice)
    refused(gw.config_error("quota", "quota", "tenants.*.requests_per_minute") + ": duplicate field `requests_per_minute`")

    def array_for_tenant(value):
        c = json.loads(value)
        quota = c["quota"] if "quota" in c else c
        quota["tenants"]["*"] = [600]
        return json.dumps(c)

    push(array_for_tenant)
    refused(gw.config_error("quota", "quota", "tenants.*") + ": invalid type: sequence, expected struct TenantSpec")


def test_pushing_an_invalid_config_keeps_the_running_one(fresh_gateway_factory):
    gw = fresh_gateway_factory()
    assert gw.chat(unique()).status_code == 200
    broken = lambda text: text.replace('"requests_per_minute":600', '"requests_per_minute":"lots"')  # noqa: E731
    _, files = __import__("render_envoy").to_ecds(broken(__import__("render_envoy").render(gw.values)),
                                                 str(gw.ecds_dir))
    name = gw.filter_name("quota") + ".json"
    __import__("render_envoy").write_ecds(str(gw.ecds_dir), {name: files[name]})
    deadline = time.time() + 10
    while gw.config_error("quota", "quota", "tenants.*.requests_per_minute") not in gw.envoy_log.read_text():
        assert time.time() < deadline, gw.envoy_log.read_text()[-2000:]
        time.sleep(0.05)
    # Still served, under the running limits.
    resp = gw.chat(unique())
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-ratelimit-limit-requests"] == "600"
    # A valid push afterwards is taken.
    gw.push(lambda text: text.replace('"requests_per_minute":600', '"requests_per_minute":700'))
    assert gw.chat(unique()).headers["x-ratelimit-limit-requests"] == "700"


def test_request_the_provider_cannot_take_is_a_400_from_the_attempt_and_audited(gateway):
    msg = unique()
    resp = gateway.chat(msg, n=2)  # Anthropic (first in the chain) has no n > 1
    assert_openai_error(resp, 400, "unsupported_for_provider")
    assert resp.json()["error"]["param"] == "n"
    assert gateway.provider_requests("anthropic", containing=msg) == []
    assert gateway.provider_requests("openai", containing=msg) == []  # a 400 is not retried elsewhere
    rec = one_audit(gateway, resp)
    assert rec["outcome"] == "refused_request" and rec["status"] == 400 and rec["tenant"] == "acme"


@pytest.mark.parametrize(
    "method,path,body,status,code",
    [
        ("GET", "/v1/files", None, 404, "unknown_path"),  # Envoy's direct response
        ("PUT", "/v1/chat/completions", b"{}", 405, "method_not_allowed"),  # route-select
        ("POST", "/v1/chat/completions", b"a" * (9 << 20), 413, "request_payload_too_large"),  # Envoy's limit
    ],
)
def test_gateway_refusals_are_openai_errors_and_audited_as_refused(gateway, method, path, body, status, code):
    resp = gateway.client.request(method, path, content=body,
                                  headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"})
    assert_openai_error(resp, status, code)
    assert resp.headers["content-type"].startswith("application/json")
    rec = one_audit(gateway, resp)
    assert rec["outcome"] == "refused_request" and rec["attempts"] == [] and rec["tenant"] == "acme"


def test_a_provider_success_that_is_not_json_is_retried_and_explained(gateway):
    msg = unique()
    resp = gateway.chat(msg, headers={"x-fake-fault": "*=malformed"})
    # Each provider's broken 200 was caught per attempt (as a 502, which Envoy retries), so the
    # chain moved on, and its end explains every step.
    assert_openai_error(resp, 503, "fallback_chain_exhausted")
    assert [(a["provider"], a["status"], a["reason"]) for a in resp.json()["error"]["attempts"]] == [
        ("anthropic", 200, "invalid_response"), ("openai", 200, "invalid_response")]
    rec = one_audit(gateway, resp)
    assert [(a["provider"], a["status"], a["error_class"]) for a in rec["attempts"]] == [
        ("anthropic", 200, "invalid_response"), ("openai", 200, "invalid_response")]
    assert rec["outcome"] == "upstream_error" and rec["status"] == 503
    # Nothing was billed: no tokens, no cost.
    assert rec["tokens"] is None and rec["cost_usd"] is None


@pytest.mark.parametrize("chain, broken, served", [("chat-openai-first", "openai", "anthropic"),
                                                   ("chat", "anthropic", "openai")])
def test_a_malformed_answer_falls_back_on_every_provider(gateway, chain, broken, served):
    resp = gateway.chat(unique(), model=chain, headers={"x-fake-fault": f"{broken}=malformed"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-aigw-provider"] == served
    rec = one_audit(gateway, resp)
    assert [(a["provider"], a["error_class"]) for a in rec["attempts"]] == [(broken, "invalid_response"), (served, None)]
    assert rec["outcome"] == "ok" and "usage_estimated" not in rec["flags"]


def test_the_push_command_changes_a_filter_without_a_restart(fresh_gateway_factory):
    """What the README tells operators to run: scripts/render_envoy.py --push DIR NAME=VALUE."""
    import subprocess
    import sys

    from conftest import ROOT

    gw = fresh_gateway_factory()
    assert gw.chat(unique(), key=DEMO_KEYS["tiny"]).headers["x-ratelimit-limit-requests"] == "3"
    quota = json.loads((ROOT / "envoy" / "quota.json").read_text())
    quota.pop("_comment")
    quota["tenants"]["tiny"]["requests_per_minute"] = 7
    quota["price_book"] = json.loads((ROOT / "envoy" / "price-book.json").read_text())
    before = gw.reloads()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "render_envoy.py"), "--push", str(gw.ecds_dir),
                    f"QUOTA_CONFIG={json.dumps(quota)}"], check=True)
    deadline = time.time() + 10
    q = f"http_filter.{gw.filter_name('quota')}"
    while gw.reloads().get(q, 0) <= before.get(q, 0):
        assert time.time() < deadline, gw.reloads()
        time.sleep(0.05)
    assert gw.chat(unique(), key=DEMO_KEYS["tiny"]).headers["x-ratelimit-limit-requests"] == "7"
    assert gw.envoy.poll() is None
