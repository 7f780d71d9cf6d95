"""`GET /v1/models`: both official SDKs' `models.list()` and `models.retrieve()` against the real
Envoy, on both layouts. The gateway answers with the model aliases the caller's key may use."""

import anthropic
import httpx
import openai
import pytest
from conftest import DEMO_KEYS

# The demo's aliases (envoy/envoy.yaml); the demo key `beta` may use `chat` only.
ALL = sorted(["chat", "chat-cached", "chat-guarded", "chat-restricted", "chat-semantic", "chat-openai-first", "chat-fastest", "chat-shadowed", "chat-azure", "chat-gemini", "chat-bedrock", "chat-eu", "embed", "embed-cache", "embed-gemini",
              "embed-titan", "embed-cohere"])


def test_the_openai_sdk_lists_the_aliases_its_key_may_use(gateway):
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=DEMO_KEYS["acme"], max_retries=0)
    listed = client.models.list()
    assert [m.id for m in listed] == ALL
    assert {(m.object, m.owned_by) for m in listed.data} == {("model", "gateway")}
    assert client.models.retrieve("chat-eu").id == "chat-eu"

    beta = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=DEMO_KEYS["beta"], max_retries=0)
    assert [m.id for m in beta.models.list()] == ["chat"]
    with pytest.raises(openai.NotFoundError) as e:
        beta.models.retrieve("chat-eu")
    assert e.value.code == "model_not_found"
    stranger = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="aigw-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()


def test_the_anthropic_sdk_lists_page_by_page(gateway):
    client = anthropic.Anthropic(base_url=gateway.url, api_key=DEMO_KEYS["acme"], max_retries=0)
    # Two per page: the SDK follows `last_id` until `has_more` is false.
    first = client.models.list(limit=2)
    assert [m.id for m in first.data] == ALL[:2] and first.has_more
    assert [m.id for m in client.models.list(limit=2)] == ALL
    got = client.models.retrieve("chat")
    assert (got.id, got.display_name, got.type) == ("chat", "chat", "model")

    beta = anthropic.Anthropic(base_url=gateway.url, api_key=DEMO_KEYS["beta"], max_retries=0)
    assert [m.id for m in beta.models.list()] == ["chat"]
    with pytest.raises(anthropic.NotFoundError) as e:
        beta.models.retrieve("chat-eu")
    assert e.value.body["error"]["type"] == "not_found_error"
    stranger = anthropic.Anthropic(base_url=gateway.url, api_key="aigw-not-a-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        stranger.models.list()
    assert e.value.body["error"]["type"] == "authentication_error"


def test_a_model_list_reaches_no_provider_is_not_charged_and_is_audited_as_costing_nothing(gateway):
    h = {"authorization": f"Bearer {DEMO_KEYS['acme']}"}
    before = {p: len(gateway.provider_requests(p)) for p in ("openai", "anthropic")}
    r = httpx.get(f"{gateway.url}/v1/models", headers=h, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert "x-ratelimit-remaining-requests" not in r.headers, "no bucket was charged"
    assert {p: len(gateway.provider_requests(p)) for p in ("openai", "anthropic")} == before
    rec = gateway.audit(r.headers["x-aigw-request-id"])
    assert len(rec) == 1, rec
    rec = rec[0]
    assert (rec["outcome"], rec["route"], rec["status"], rec["tenant"]) == ("ok", "models", 200, "acme")
    assert rec["door"] == "models"
    assert rec["cost_usd"] == "0.0" and rec["attempts"] == [] and rec["flags"] == []
    # Only GET.
    r = httpx.post(f"{gateway.url}/v1/models", headers=h, json={}, timeout=10)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_a_bad_page_size_is_a_400_that_names_it_and_is_audited(gateway):
    # The Anthropic listing's `limit` is read as an unsigned integer from 1 to 1000: anything else
    # (zero, a sign, a word, a number past u64) is refused before any provider, in the Anthropic
    # SDK's error shape (its call carries `anthropic-version`), and audited.
    h = {"authorization": f"Bearer {DEMO_KEYS['acme']}", "anthropic-version": "2023-06-01"}
    before = {p: len(gateway.provider_requests(p)) for p in ("openai", "anthropic")}
    for bad in ["0", "-1", "abc", "1.5", "1001", "18446744073709551616", ""]:
        r = httpx.get(f"{gateway.url}/v1/models", params={"limit": bad}, headers=h, timeout=10)
        assert r.status_code == 400, (bad, r.text)
        body = r.json()
        assert (body["type"], body["error"]["type"]) == ("error", "invalid_request_error"), body
        assert "`limit` must be 1 to 1000" in body["error"]["message"], body
        rec = gateway.audit(r.headers["x-aigw-request-id"])
        assert len(rec) == 1 and (rec[0]["status"], rec[0]["error_code"]) == (400, "invalid_limit"), rec
    r = httpx.get(f"{gateway.url}/v1/models", params={"limit": "1000"}, headers=h, timeout=10)
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ALL
    assert {p: len(gateway.provider_requests(p)) for p in ("openai", "anthropic")} == before
