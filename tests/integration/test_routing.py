"""Routing plane and fallback chain: rules, privacy zones, canary, deprecation calendar, every
fallback trigger and non-trigger, the chain's refusal, mid-stream failures."""

import json
import socket
import uuid
from collections import Counter

import httpx
import openai
import pytest
from conftest import DEMO_KEYS


def unique(text="hello"):
    return f"{text} {uuid.uuid4().hex[:12]}"


def audit(gw, resp):
    [rec] = gw.audit(resp.headers["x-aigw-request-id"])
    return rec


def route_config_edit(extra):
    """Adds JSON members to the route-select configuration (both halves share it)."""
    return lambda text: text.replace('"rules": [', extra + ',\n                     "rules": [', 1)


# -- fallback triggers and non-triggers ----------------------------------------------------------


@pytest.mark.parametrize("fault", ["429", "500", "503", "529", "reset"])
def test_each_trigger_moves_the_call_to_the_next_provider(gateway, fault):
    msg = unique(fault)
    r = gateway.chat(msg, headers={"x-fake-fault": f"anthropic={fault}"})
    assert r.status_code == 200, r.text
    assert r.headers["x-aigw-provider"] == "openai"
    assert r.headers["x-aigw-attempts"] == "2"
    rec = audit(gateway, r)
    first = rec["attempts"][0]
    assert first["provider"] == "anthropic"
    if fault == "reset":
        assert first["status"] is None and first["error_class"] == "no_response"
    else:
        assert first["status"] == int(fault)
    assert len(gateway.provider_requests("openai", containing=msg)) == 1


@pytest.mark.parametrize("fault,status", [("400", 400), ("401", 502), ("403", 502)])
def test_a_400_or_401_from_the_provider_is_not_retried(gateway, fault, status):
    msg = unique(fault)
    r = gateway.chat(msg, headers={"x-fake-fault": f"anthropic={fault}"})
    # A provider's 401 is about the gateway's credential: the caller gets a 502 saying so.
    assert r.status_code == status, r.text
    assert gateway.provider_requests("openai", containing=msg) == []
    assert len(audit(gateway, r)["attempts"]) == 1


def test_connect_failure_moves_the_call_on(fresh_gateway_factory):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    gw = fresh_gateway_factory(values={"ANTHROPIC_PORT": dead})
    r = gw.chat(unique())
    assert r.status_code == 200 and r.headers["x-aigw-provider"] == "openai", r.text
    assert audit(gw, r)["attempts"][0]["error_class"] == "no_response"


def test_a_latency_budget_gives_each_attempt_its_share(gateway):
    msg = unique("budget")
    r = gateway.chat(msg, headers={"x-fake-fault": "anthropic=delay-3000", "x-gateway-latency-budget-ms": "1200"})
    assert r.status_code == 200, r.text
    # The slow provider's 600 ms share ran out (it would have answered after 3 s): the attempt
    # was cut without an answer and the next provider served.
    assert r.headers["x-aigw-provider"] == "openai"
    rec = audit(gateway, r)
    assert rec["attempts"][0]["provider"] == "anthropic" and rec["attempts"][0]["status"] is None
    # Cut by its per-try timeout: a `timeout`, with the time it was given.
    assert rec["attempts"][0]["error_class"] == "timeout", rec["attempts"]
    assert rec["attempts"][0]["latency_ms"] >= 540  # 90% of its 600 ms share, or more
    # Without a budget the same slow provider is waited for.
    slow = gateway.chat(unique("no budget"), headers={"x-fake-fault": "anthropic=delay-1500"})
    assert slow.headers["x-aigw-provider"] == "anthropic"
    # The caller's hint is the gateway's, not the provider's.
    [seen] = gateway.provider_requests("openai", containing=msg)
    assert "x-gateway-latency-budget-ms" not in seen["headers"]


# -- the refusal at the end of the chain ---------------------------------------------------------


def test_an_exhausted_chain_explains_itself(gateway):
    r = gateway.chat(unique(), headers={"x-fake-fault": "anthropic=529,openai=500"})
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "fallback_chain_exhausted" and err["type"] == "server_error"
    assert [(a["provider"], a["status"], a["reason"]) for a in err["attempts"]] == [
        ("anthropic", 529, "overloaded"), ("openai", 500, "server_error")]
    assert "anthropic answered 529 (overloaded); openai answered 500 (server_error)" in err["message"]
    assert r.headers["x-aigw-attempts"] == "2"
    # Every step rate limited: a 429, so SDKs back off.
    r = gateway.chat(unique(), headers={"x-fake-fault": "*=429"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "fallback_chain_exhausted"


# -- mid-stream failure --------------------------------------------------------------------------


@pytest.mark.parametrize("model,provider", [("chat", "anthropic"), ("chat-openai-first", "openai")])
def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error_event(gateway, model, provider):
    msg = unique("midstream one two three four")
    with gateway.client.stream("POST", "/v1/chat/completions",
                               headers={"authorization": f"Bearer {DEMO_KEYS['acme']}",
                                        "x-fake-fault": f"{provider}=error-after-2"},
                               json={"model": model, "stream": True,
                                     "messages": [{"role": "user", "content": msg}]}) as r:
        assert r.status_code == 200
        rid = r.headers["x-aigw-request-id"]
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    # Content got through, then one well-formed error event, and the stream ended cleanly.
    assert any('"content":"Echo: "' in d for d in data)
    err = json.loads(data[-1])["error"]
    assert err["message"] and err["type"]
    other = "openai" if provider == "anthropic" else "anthropic"
    assert gateway.provider_requests(other, containing=msg) == []  # not retried after the first byte
    [rec] = gateway.audit(rid)
    assert rec["outcome"] == "upstream_error" and rec["stream"] is True
    # The official SDK turns it into an exception, not a hang or a garbled stream.
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=DEMO_KEYS["acme"], max_retries=0,
                           default_headers={"x-fake-fault": f"{provider}=error-after-2"})
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model=model, stream=True,
                                                messages=[{"role": "user", "content": unique("sdk a b c")}]):
            pass


# -- usage in streams ----------------------------------------------------------------------------


def test_openai_upstreams_are_asked_for_stream_usage_that_callers_see_only_if_they_asked(gateway):
    msg = unique("usage")
    with gateway.client.stream("POST", "/v1/chat/completions",
                               headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
                               json={"model": "chat-openai-first", "stream": True,
                                     "messages": [{"role": "user", "content": msg}]}) as r:
        rid = r.headers["x-aigw-request-id"]
        text = "".join(r.iter_text())
    assert '"usage"' not in text and text.rstrip().endswith("data: [DONE]")
    [seen] = gateway.provider_requests("openai", containing=msg)
    assert json.loads(seen["body"])["stream_options"] == {"include_usage": True}
    [rec] = gateway.audit(rid)
    assert rec["tokens"]["output"] == len(f"Echo: {msg}".split())  # the record still has it


def test_an_openai_upstream_gets_the_callers_body_as_written_but_for_the_model(gateway):
    msg = unique("as written")
    # Members in the caller's order and spacing, and one the gateway knows nothing of.
    raw = ('{ "messages": [{"role": "user", "content": "%s"}],\n  "x_vendor": {"b": 1, "a": [2.50, null]},'
           ' "model":"chat-openai-first", "temperature": 0.70 }' % msg)
    r = gateway.client.post("/v1/chat/completions", content=raw.encode(),
                            headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "content-type": "application/json"})
    assert r.status_code == 200, r.text
    [seen] = gateway.provider_requests("openai", containing=msg)
    model = json.loads(seen["body"])["model"]
    assert model != "chat-openai-first"
    assert seen["body"] == raw.replace('"chat-openai-first"', json.dumps(model)), seen["body"]


# -- rules, zones, canary, deprecation -----------------------------------------------------------


def test_rules_pick_the_alias_and_say_which_rule(fresh_gateway_factory):
    keys_edit = lambda t: t.replace('{"keys": [', '{"keys": [{"id": "batch-1", "tenant": "acme", "sha256": "'  # noqa: E731
                                    + __import__("hashlib").sha256(b"aigw_sk_batch-job").hexdigest()
                                    + '", "workload_class": "batch"},', 1)
    rules = ('"rules": [{"name": "batch-goes-cheap", "match": {"workload_classes": ["batch"], "models": ["chat"]}, '
             '"alias": "chat-openai-first"}, {"name": "search-feature", "match": {"features": ["search"]}, '
             '"alias": "chat-openai-first"}, {"name": "tight-budget", "match": {"latency_budget_ms_at_most": 3000}, '
             '"alias": "chat-openai-first"}, {"name": "low-cost", "match": {"cost_ceiling_usd_at_most": "0.01"}, '
             '"alias": "chat-openai-first"},')
    gw = fresh_gateway_factory(lambda t: keys_edit(t).replace('"rules": [', rules, 1))
    plain = gw.chat(unique())
    assert plain.headers["x-aigw-route"] == "default" and plain.headers["x-aigw-provider"] == "anthropic"
    for kw, route in [({"key": "aigw_sk_batch-job"}, "batch-goes-cheap"),
                      ({"headers": {"x-gateway-feature": "search"}}, "search-feature"),
                      ({"headers": {"x-gateway-latency-budget-ms": "2500"}}, "tight-budget"),
                      ({"headers": {"x-gateway-cost-ceiling-usd": "0.005"}}, "low-cost")]:
        r = gw.chat(unique(), **kw)
        assert r.status_code == 200, r.text
        assert (r.headers["x-aigw-route"], r.headers["x-aigw-provider"]) == (route, "openai"), kw
        rec = audit(gw, r)
        assert (rec["route"], rec["alias"]) == (route, "chat-openai-first")
    assert audit(gw, gw.chat(unique(), key="aigw_sk_batch-job"))["workload_class"] == "batch"
    # A budget or ceiling above the rules' bounds falls through to the default.
    r = gw.chat(unique(), headers={"x-gateway-latency-budget-ms": "9000", "x-gateway-cost-ceiling-usd": "1"})
    assert r.headers["x-aigw-route"] == "default"
    bad = gw.chat(unique(), headers={"x-gateway-cost-ceiling-usd": "cheap"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cost_ceiling"


def test_privacy_zone_holds_during_an_outage_of_the_in_zone_provider(fresh_gateway_factory):
    gw = fresh_gateway_factory()
    tiny = DEMO_KEYS["tiny"]  # zone eu
    # The rule sends eu calls to the in-zone chain: with Anthropic down, Azure (westeurope) serves.
    msg = unique("eu")
    r = gw.chat(msg, key=tiny, headers={"x-fake-fault": "anthropic=503"})
    assert r.status_code == 200, r.text
    assert (r.headers["x-aigw-route"], r.headers["x-aigw-provider"]) == ("eu-data-stays-in-eu", "azure")
    assert gw.provider_requests("openai", containing=msg) == []
    # A chain whose fallback is outside the zone: the call stops at the zone border and says why.
    msg = unique("border")
    r = gw.chat(msg, key=tiny, model="chat-openai-first")
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "no_eligible_provider_in_zone" and "privacy zone `eu`" in err["message"]
    assert gw.provider_requests("openai", containing=msg) == []
    # And with no in-zone rule at all, an outage of the in-zone provider never spills out of it.
    gw.push(lambda t: t.replace('{"name": "eu-data-stays-in-eu", "match": {"zones": ["eu"], "models": ["chat"]}, '
                                '"alias": "chat-eu"},', ''))
    msg = unique("outage")
    r = gw.chat(msg, key=tiny, headers={"x-fake-fault": "anthropic=503"})
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "no_eligible_provider_in_zone"
    assert [(a["provider"], a["status"]) for a in err["attempts"]] == [("anthropic", 503)]
    assert "The next step, openai (us-east-1), is outside privacy zone `eu`" in err["message"]
    assert gw.provider_requests("openai", containing=msg) == []
    assert audit(gw, r)["privacy_zone"] == "eu"


def test_canary_slice_ratio_and_stickiness(fresh_gateway_factory):
    canary = ('"chat-next": {"chain": "chain_chat", "steps": [{"provider": "anthropic", "model": '
              '"claude-haiku-4-5-20251001"}, {"provider": "openai", "model": "gpt-4o-mini-2024-07-18"}]}')
    gw = fresh_gateway_factory(lambda t: t.replace(
        '"chat": {"chain": "chain_chat", "steps": [',
        canary + ',\n                       "chat": {"chain": "chain_chat", "canary": {"alias": "chat-next", "percent": 25}, '
        '"steps": [', 1))
    models = Counter()
    with httpx.Client(base_url=gw.url, timeout=20) as c:
        for _ in range(300):
            r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
                       json={"model": "chat", "messages": [{"role": "user", "content": "c"}]})
            assert r.status_code == 200, r.text
            models[r.headers["x-aigw-model"]] += 1
    share = models["claude-haiku-4-5-20251001"] / 300
    assert 0.15 <= share <= 0.35, models  # 25% +- 4 standard deviations
    # The slice is sticky per request id, and the record says which slice served.
    rid = f"sticky-{uuid.uuid4().hex}"
    first = [gw.chat("s", headers={"x-request-id": rid}).headers["x-aigw-model"] for _ in range(3)]
    assert len(set(first)) == 1
    r = gw.chat("s", headers={"x-request-id": rid})
    rec = gw.audit(rid)[-1]
    assert rec["slice"] == ("canary" if r.headers["x-aigw-model"] == "claude-haiku-4-5-20251001" else "stable")


def test_deprecation_calendar_on_both_sides_of_the_sunset(fresh_gateway_factory):
    calendar = ('"deprecations": {"claude-sonnet-4-5-20250929": {"sunset": "2027-01-15", '
                '"successor": "claude-opus-4-1-20250805"}}, "now": "{NOW}"')
    gw = fresh_gateway_factory(route_config_edit(calendar.replace("{NOW}", "2027-01-14T12:00:00Z")))
    before = gw.chat(unique())
    assert before.headers["x-aigw-model"] == "claude-sonnet-4-5-20250929"
    assert before.headers["x-aigw-deprecation"] == (
        "model claude-sonnet-4-5-20250929 is deprecated; sunset 2027-01-15; successor claude-opus-4-1-20250805")
    gw.push(lambda t: t.replace("2027-01-14T12:00:00Z", "2027-01-15T00:00:01Z"))
    msg = unique("after sunset")
    after = gw.chat(msg)  # the caller changes nothing
    assert after.status_code == 200
    assert after.headers["x-aigw-model"] == "claude-opus-4-1-20250805"
    assert "x-aigw-deprecation" not in after.headers
    [seen] = gw.provider_requests("anthropic", containing=msg)
    assert json.loads(seen["body"])["model"] == "claude-opus-4-1-20250805"
    rec = audit(gw, after)
    assert rec["model"] == "claude-opus-4-1-20250805"
    assert "deprecated_model_replaced:claude-sonnet-4-5-20250929->claude-opus-4-1-20250805" in rec["flags"]


def test_the_renderer_refuses_chains_that_do_not_match_the_aliases():
    """Each alias's steps must be what Envoy runs: its aggregate cluster's providers in order, a
    route on x-aigw-chain, and a retry per step after the first."""
    import render_envoy  # scripts/ (conftest puts it on the path)

    text = render_envoy.render({})
    render_envoy.to_ecds(text, "/tmp/unused-ecds")  # the shipped template is consistent
    swapped = text.replace("clusters: [provider_azure, provider_openai]", "clusters: [provider_openai, provider_azure]")
    with pytest.raises(SystemExit, match="alias 'chat-azure': steps \\['azure', 'openai'\\] but chain 'chain_azure'"):
        render_envoy.to_ecds(swapped, "/tmp/unused-ecds")
    no_route = text.replace("string_match: {exact: chain_gemini}", "string_match: {exact: chain_gemini_old}")
    with pytest.raises(SystemExit, match="no route matches x-aigw-chain: chain_gemini"):
        render_envoy.to_ecds(no_route, "/tmp/unused-ecds")
    no_retry = text.replace("num_retries: 1", "num_retries: 0")
    with pytest.raises(SystemExit, match="retries fewer times"):
        render_envoy.to_ecds(no_retry, "/tmp/unused-ecds")
    # An embeddings chain never moves to another model: vectors of two models do not compare.
    mixed = text.replace('{"provider": "azure", "model": "text-embedding-3-small"}',
                         '{"provider": "azure", "model": "text-embedding-3-large"}')
    with pytest.raises(SystemExit, match="alias 'embed': an embeddings chain mixes models"):
        render_envoy.to_ecds(mixed, "/tmp/unused-ecds")
    # ... and is routed on the embeddings path.
    wrong_path = text.replace("prefix: /v1/embeddings\n                  headers: [{name: x-aigw-chain, string_match: {exact: chain_embed}}]",
                              "prefix: /v1/chat/completions\n                  headers: [{name: x-aigw-chain, string_match: {exact: chain_embed}}]")
    assert wrong_path != text
    with pytest.raises(SystemExit, match="alias 'embed': the route for 'chain_embed' matches '/v1/chat/completions'"):
        render_envoy.to_ecds(wrong_path, "/tmp/unused-ecds")
    # A split embeddings batch's calls go to the provider's own cluster, which must be its.
    elsewhere = text.replace('"bedrock": {"api": "bedrock", "max_tokens_default": 1024}',
                             '"bedrock": {"api": "bedrock", "max_tokens_default": 1024, "cluster": "provider_gemini"}')
    assert elsewhere != text
    with pytest.raises(SystemExit, match="alias 'embed-titan': the calls of a split batch go to cluster 'provider_gemini'"):
        render_envoy.to_ecds(elsewhere, "/tmp/unused-ecds")


def test_the_readme_says_one_thing_about_a_providers_401():
    """The behaviour is tested above (a 401 or 403 is not retried); both README sections that
    speak of it must say so."""
    from conftest import ROOT

    text = " ".join((ROOT / "README.md").read_text().split())
    assert "Not triggers: 400, 401, 403" in text
    assert "the call itself is **not** moved on to the next provider" in text
    assert "moves on to the next provider of its chain (a retriable header)" not in text
