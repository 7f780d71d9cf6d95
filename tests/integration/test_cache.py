"""The exact cache (the `gateway` filter's cache stage) against the real Envoy: a repeated call
answered from Envoy's shared data with no provider called, per tenant; `no-store`; streamed
hits replayed through the OpenAI and the Anthropic SDK; expiry by a settable clock; a stale
answer standing in for a chain whose every provider failed. The demo alias `chat-cached` caches
(`ttl_s` 300, `stale_ttl_s` 86400). The design card's separate filters have no cache stage:
there, the same calls all reach a provider."""

import uuid
from decimal import Decimal

import anthropic
import openai
import pytest
from conftest import DEMO_KEYS


def unique(tag="cache"):
    return f"{tag} {uuid.uuid4().hex[:10]}"


def audit(gw, r):
    return gw.audit(r.headers["x-aigw-request-id"])[0]


def sent(gw, text):
    return len(gw.provider_requests("anthropic", containing=text)) + len(gw.provider_requests("openai", containing=text))


def test_a_repeated_call_is_answered_from_the_cache_with_no_provider_called(gateway):
    msg = unique()
    first = gateway.chat(msg, model="chat-cached", max_tokens=20)
    assert first.status_code == 200, first.text
    # Written differently (key order, a `user`): the same request.
    h = {"authorization": f"Bearer {DEMO_KEYS['acme']}"}
    second = gateway.client.post("/v1/chat/completions", headers=h, json={
        "user": "someone", "max_tokens": 20, "messages": [{"content": msg, "role": "user"}], "model": "chat-cached"})
    assert second.status_code == 200, second.text
    if gateway.layout == "filters":
        assert "x-aigw-cache" not in second.headers and sent(gateway, msg) == 2
        return
    assert first.headers["x-aigw-cache"] == "miss" and second.headers["x-aigw-cache"] == "hit"
    assert second.json() == first.json()
    assert sent(gateway, msg) == 1, "the hit called no provider"
    paid, saved = audit(gateway, first), audit(gateway, second)
    assert paid["cache_status"] == "miss" and Decimal(paid["cost_usd"]) > 0
    assert (saved["cache_status"], saved["outcome"], saved["provider"]) == ("hit", "ok", None)
    assert saved["cost_usd"] == "0.0" and saved["cost_saved_usd"] == paid["cost_usd"]
    assert saved["model"] == paid["model"] and saved["attempts"] == []
    # x-gateway-cache: refresh skips the lookup (a provider answers) and stores the new answer.
    fresh = gateway.chat(msg, model="chat-cached", max_tokens=20, headers={"x-gateway-cache": "refresh"})
    assert fresh.headers["x-aigw-cache"] == "miss" and sent(gateway, msg) == 2
    assert gateway.chat(msg, model="chat-cached", max_tokens=20).headers["x-aigw-cache"] == "hit"
    assert sent(gateway, msg) == 2


def test_one_tenant_never_receives_anothers_cached_answer(gateway):
    msg = unique()
    assert gateway.chat(msg, model="chat-cached").status_code == 200
    other = gateway.chat(msg, model="chat-cached", key=DEMO_KEYS["tiny"])
    assert other.status_code == 200, other.text
    assert other.headers.get("x-aigw-cache") in (None, "miss")
    assert sent(gateway, msg) == 2


def test_no_store_is_never_cached_and_an_uncached_alias_says_nothing(gateway):
    msg = unique()
    for _ in range(2):
        r = gateway.chat(msg, model="chat-cached", headers={"cache-control": "no-store"})
        assert r.status_code == 200 and "x-aigw-cache" not in r.headers
    assert sent(gateway, msg) == 2
    if gateway.layout == "gateway":
        assert audit(gateway, r)["cache_status"] == "no_store"
    r = gateway.chat(unique(), model="chat")
    assert "x-aigw-cache" not in r.headers and audit(gateway, r)["cache_status"] == "none"


def test_a_streamed_hit_is_replayed_through_both_sdks(gateway):
    msg = unique()
    oa = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=DEMO_KEYS["acme"], max_retries=0)
    whole = oa.chat.completions.create(model="chat-cached", messages=[{"role": "user", "content": msg}])
    if gateway.layout == "filters":
        # No cache stage: the streamed call reaches a provider too.
        list(oa.chat.completions.create(model="chat-cached", messages=[{"role": "user", "content": msg}], stream=True))
        assert sent(gateway, msg) == 2
        return
    stream = oa.chat.completions.with_raw_response.create(
        model="chat-cached", messages=[{"role": "user", "content": msg}], stream=True,
        stream_options={"include_usage": True})
    assert stream.headers["x-aigw-cache"] == "hit"
    chunks = list(stream.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert sent(gateway, msg) == 1
    # The Messages door: its own entry (its request differs), replayed as Anthropic's events.
    an = anthropic.Anthropic(base_url=gateway.url, api_key=DEMO_KEYS["acme"], max_retries=0)
    msg = unique()
    first = an.messages.create(model="chat-cached", max_tokens=50, messages=[{"role": "user", "content": msg}])
    with an.messages.stream(model="chat-cached", max_tokens=50, messages=[{"role": "user", "content": msg}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == first.content[0].text and final.stop_reason == first.stop_reason
    assert sent(gateway, msg) == 1
    rec = gateway.audit_lines()[-1]
    assert rec["door"] == "messages" and rec["cache_status"] == "hit" and rec["stream"] is True
    # And the other way: a Messages stream, collected as it passed, answers the same request
    # whole (the answer Anthropic's events amounted to, its usage included).
    msg = unique()
    with an.messages.stream(model="chat-cached", max_tokens=50, messages=[{"role": "user", "content": msg}]) as s:
        streamed = s.get_final_message()
    out = an.messages.with_raw_response.create(model="chat-cached", max_tokens=50,
                                               messages=[{"role": "user", "content": msg}])
    whole = out.parse()
    assert out.headers["x-aigw-cache"] == "hit" and sent(gateway, msg) == 1
    assert whole.content[0].text == streamed.content[0].text and whole.id == streamed.id
    assert (whole.usage.input_tokens, whole.usage.output_tokens) == (streamed.usage.input_tokens,
                                                                     streamed.usage.output_tokens)


T0 = "2027-03-01T00:00:00Z"


def cache_clock(now):
    """Sets the cache's settable clock (the store's `now`), whatever it was. With 4096 slots, two
    of a test's few random prompts share a slot (the newer replacing the older) about once in
    4,000 runs, not once in 64."""
    import re
    return lambda text: re.sub(r'"cache": \{"slots": (\d+)(, "now": "[^"]*")?,', f'"cache": {{"slots": 4096, "now": "{now}",',
                               text, count=1)


def test_entries_expire_by_the_settable_clock_and_a_stale_one_stands_in_for_a_failed_chain(fresh_gateway_factory):
    gw = fresh_gateway_factory(cache_clock(T0))
    fresh, kept, never = unique("fresh"), unique("kept"), unique("never")
    for msg in (fresh, kept):
        assert gw.chat(msg, model="chat-cached").headers["x-aigw-cache"] == "miss"
    assert gw.chat(fresh, model="chat-cached").headers["x-aigw-cache"] == "hit"
    # 301 s later: past the 300 s TTL, so the call goes to a provider again.
    gw.push(cache_clock("2027-03-01T00:05:01Z"))
    r = gw.chat(fresh, model="chat-cached")
    assert r.headers["x-aigw-cache"] == "miss" and sent(gw, fresh) == 2
    # Every provider fails: the expired entry (within its stale time) answers instead.
    down = {"x-fake-fault": "*=503"}
    r = gw.chat(kept, model="chat-cached", headers=down)
    assert r.status_code == 200, r.text
    assert r.headers["x-aigw-cache"] == "stale"
    rec = audit(gw, r)
    assert rec["cache_status"] == "stale" and rec["cost_usd"] == "0.0"
    assert [a["status"] for a in rec["attempts"]] == [503, 503], "the failed attempts are on record"
    # No entry: the chain's explanatory refusal stands.
    r = gw.chat(never, model="chat-cached", headers=down)
    assert r.status_code == 503 and r.json()["error"]["code"] == "fallback_chain_exhausted", r.text
    # Past the stale time too: the refusal.
    gw.push(cache_clock("2027-03-02T00:05:01Z"))
    r = gw.chat(kept, model="chat-cached", headers=down)
    assert r.status_code == 503 and r.headers.get("x-aigw-cache") != "stale", r.text
    assert audit(gw, r)["cache_status"] == "miss"


def test_a_streamed_miss_is_stored_once_it_ended_well(gateway):
    msg = unique()
    oa = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=DEMO_KEYS["acme"], max_retries=0)
    streamed = list(oa.chat.completions.create(model="chat-cached", messages=[{"role": "user", "content": msg}],
                                               stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    again = oa.chat.completions.with_raw_response.create(model="chat-cached",
                                                         messages=[{"role": "user", "content": msg}])
    if gateway.layout == "filters":
        assert sent(gateway, msg) == 2
        return
    assert again.headers["x-aigw-cache"] == "hit"
    assert again.parse().choices[0].message.content == text and text
    assert sent(gateway, msg) == 1
    # A stream cut short by the provider is not stored: the next call goes to a provider.
    cut = unique()
    with pytest.raises(openai.APIError):
        list(oa.chat.completions.create(model="chat-cached", messages=[{"role": "user", "content": cut}], stream=True,
                                        extra_headers={"x-fake-fault": "anthropic=error-after-1"}))
    r = gateway.chat(cut, model="chat-cached")
    assert r.headers["x-aigw-cache"] == "miss"
    # The provider holds its stream open after the last event, and the SDK closes the call at
    # [DONE] without waiting for the body's end: the answer was whole, so it is stored all the same.
    held = unique()
    stream = oa.chat.completions.create(model="chat-cached", messages=[{"role": "user", "content": held}],
                                        stream=True, extra_headers={"x-fake-fault": "anthropic=linger-3000"})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    r = gateway.chat(held, model="chat-cached")
    assert r.headers["x-aigw-cache"] == "hit", "stored at [DONE], before the stream's end"
    assert r.json()["choices"][0]["message"]["content"] == text and text
    assert sent(gateway, held) == 1
    # The caller got the whole answer: the record says ok, not client_aborted.
    rec = gateway.audit(stream.response.headers["x-aigw-request-id"])[0]
    assert (rec["outcome"], rec["cache_status"], rec["tokens"]["output"] > 0) == ("ok", "miss", True), rec


def test_the_store_stays_within_its_slots_and_a_sensitive_alias_is_never_cached(fresh_gateway_factory):
    """Four slots, forty distinct answers: a later entry replaces the one in its slot, so at
    most four of the forty are still there to answer."""
    gw = fresh_gateway_factory(lambda text: text.replace(
        '"cache": {"slots": 256, "max_entry_bytes": 65536,', '"cache": {"slots": 4, "max_entry_bytes": 4096,', 1).replace(
        '"cache": {"mode": "semantic", "ttl_s": 300, "threshold": 0.9}}',
        '"cache": {"mode": "semantic", "ttl_s": 300, "threshold": 0.9}, "sensitive": true}', 1))
    msgs = [unique(f"many{i}") for i in range(40)]
    for m in msgs:
        assert gw.chat(m, model="chat-cached").headers["x-aigw-cache"] == "miss"
    # Newest first (a miss stores its answer, replacing the entry of its slot).
    hits = []
    for m in reversed(msgs):
        r = gw.chat(m, model="chat-cached")
        assert r.json()["choices"][0]["message"]["content"].endswith(m), "a slot never answers for another entry"
        if r.headers["x-aigw-cache"] == "hit":
            hits.append(m)
    assert 1 <= len(hits) <= 4, hits
    # A sensitive alias is never cached, whatever its policy: no lookup, no entry, no embedding.
    secret = unique("secret")
    for _ in range(2):
        r = gw.chat(secret, model="chat-semantic")
        assert r.status_code == 200 and "x-aigw-cache" not in r.headers
        assert audit(gw, r)["cache_status"] == "none"
    assert len(gw.provider_requests("anthropic", containing=secret)) == 2
    assert not [r for r in gw.audit_lines() if r.get("tenant") == "gateway-cache"]


# -- the semantic cache ---------------------------------------------------------------------------

def test_a_paraphrase_is_served_by_meaning_and_a_near_miss_is_not(gateway):
    tag = uuid.uuid4().hex[:6]
    first = gateway.chat(f"What is the capital of France? (quiz {tag})", model="chat-semantic")
    para = gateway.chat(f"Which city is the capital of France? (quiz {tag})", model="chat-semantic")
    near = gateway.chat(f"What is the capital of Germany? (quiz {tag})", model="chat-semantic")
    assert first.status_code == para.status_code == near.status_code == 200
    chats = lambda: len(gateway.provider_requests("anthropic", containing=tag))  # noqa: E731 (embeddings go to OpenAI)
    if gateway.layout == "filters":
        assert chats() == 3
        return
    assert (first.headers["x-aigw-cache"], para.headers["x-aigw-cache"], near.headers["x-aigw-cache"]) == (
        "miss", "semantic_hit", "miss")
    assert para.json() == first.json(), "the paraphrase got the stored answer"
    assert chats() == 2, "no provider for the paraphrase"
    rec = audit(gateway, para)
    assert rec["cache_status"] == "semantic_hit" and rec["cost_usd"] == "0.0"
    assert rec["cache_semantic"]["would_serve"] == first.headers["x-aigw-request-id"]
    assert rec["cache_semantic"]["served"] is True and rec["cache_semantic"]["similarity"] >= 0.9
    rec = audit(gateway, near)
    assert rec["cache_status"] == "miss" and rec["cache_semantic"]["similarity"] < 0.9
    # The embedding calls are calls of their own: authenticated, routed and audited as the
    # cache's key, on the embeddings door.
    embeds = [r for r in gateway.audit_lines() if r.get("tenant") == "gateway-cache"]
    assert embeds and all(r["door"] == "embeddings" and r["alias"] == "embed-cache" for r in embeds)


def test_shadow_mode_records_what_it_would_serve_and_serves_nothing(fresh_gateway_factory):
    gw = fresh_gateway_factory(lambda text: text.replace(
        '"cache": {"mode": "semantic", "ttl_s": 300, "threshold": 0.9}',
        '"cache": {"mode": "semantic-shadow", "ttl_s": 300, "threshold": 0.9}', 1))
    tag = uuid.uuid4().hex[:6]
    first = gw.chat(f"How do I reverse a list in Python? ({tag})", model="chat-semantic")
    para = gw.chat(f"What is the way to reverse a list in Python? ({tag})", model="chat-semantic")
    assert para.headers["x-aigw-cache"] == "miss" and len(gw.provider_requests("anthropic", containing=tag)) == 2
    rec = audit(gw, para)
    assert rec["cache_semantic"]["would_serve"] == first.headers["x-aigw-request-id"]
    assert rec["cache_semantic"]["served"] is False and rec["cache_semantic"]["similarity"] >= 0.9


def test_cache_eval_prints_precision_and_recall_and_the_demo_threshold_serves_no_near_miss(gateway):
    """What the README quotes: `aigw-report cache-eval` over the shipped pairs, through the
    gateway's embeddings alias."""
    import os
    import subprocess
    from conftest import ROOT
    out = subprocess.run(
        [str(ROOT / "target" / "release" / "aigw-report"), "cache-eval",
         "--pairs", str(ROOT / "tools" / "report" / "cache-eval" / "pairs.jsonl"),
         "--url", gateway.url, "--model", "embed-cache", "--key-env", "AIGW_CACHE_EMBED_KEY"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, AIGW_CACHE_EMBED_KEY="aigw-demo-key-cache"))
    assert out.returncode == 0, out.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.stdout.splitlines() if line.startswith("| 0.")}
    assert rows["0.90"][1] == "1.000", out.stdout  # precision at the demo's threshold
    assert float(rows["0.90"][2]) > 0.3, out.stdout  # and it serves some paraphrases
    assert float(rows["0.60"][1]) < 0.9, "a low threshold serves near misses: " + out.stdout
    assert "no near miss served from" in out.stdout


def test_the_responses_door_is_cached_whole_and_streamed(gateway):
    oa = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=DEMO_KEYS["acme"], max_retries=0)
    msg = unique()
    first = oa.responses.create(model="chat-cached", input=msg)
    again = oa.responses.with_raw_response.create(model="chat-cached", input=msg)
    if gateway.layout == "filters":
        assert sent(gateway, msg) == 2
        return
    assert again.headers["x-aigw-cache"] == "hit" and again.parse().output_text == first.output_text
    # Streamed: the stored Response replayed as the Responses events, which the SDK reads.
    with oa.responses.stream(model="chat-cached", input=msg) as s:
        deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert deltas == final.output_text == first.output_text
    assert sent(gateway, msg) == 1
    # A streamed miss is stored once completed, and answers the whole call next.
    other = unique()
    with oa.responses.stream(model="chat-cached", input=other) as s:
        streamed = s.get_final_response()
    whole = oa.responses.with_raw_response.create(model="chat-cached", input=other)
    assert whole.headers["x-aigw-cache"] == "hit" and whole.parse().output_text == streamed.output_text
    assert sent(gateway, other) == 1
    rec = audit(gateway, whole)
    assert (rec["door"], rec["cache_status"]) == ("responses", "hit")
    # The provider holds its stream open after the last event, and the caller leaves once it
    # has `response.completed`: the answer was whole, so it is stored all the same.
    held = unique()
    h = {"authorization": f"Bearer {DEMO_KEYS['acme']}", "x-fake-fault": "anthropic=linger-3000"}
    with gateway.client.stream("POST", "/v1/responses", headers=h,
                               json={"model": "chat-cached", "input": held, "stream": True}) as r:
        seen = []
        for line in r.iter_lines():
            seen.append(line)
            if line.startswith("data: ") and '"type":"response.completed"' in line:
                break
    assert any("response.completed" in line for line in seen), seen
    whole = oa.responses.with_raw_response.create(model="chat-cached", input=held)
    assert whole.headers["x-aigw-cache"] == "hit", "stored at response.completed, before the stream's end"
    assert sent(gateway, held) == 1


def test_hits_misses_and_dollars_saved_are_counted_per_alias(gateway):
    from test_observability import metric, scrape
    msg = unique()
    for _ in range(2):
        assert gateway.chat(msg, model="chat-cached").status_code == 200
    m = scrape(gateway)
    if gateway.layout == "filters":
        assert metric(m, "aigw_cache_hits_total") == 0
        return
    assert metric(m, "aigw_cache_hits_total", alias="chat-cached") >= 1
    assert metric(m, "aigw_cache_misses_total", alias="chat-cached") >= 1
    assert metric(m, "aigw_cache_saved_nano_usd_total", alias="chat-cached") > 0


def test_a_policy_may_partition_per_key_and_charge_hits_to_the_request_bucket(fresh_gateway_factory):
    """`chat-cached` with `per_key` and `charge_requests`; `chat-semantic` as shipped (hits charged
    to nothing). A second key of tenant acme; tiny's key allows 3 requests a minute."""
    import hashlib
    second = "aigw-demo-key-acme-second"
    digest = hashlib.sha256(second.encode()).hexdigest()
    gw = fresh_gateway_factory(lambda t: t.replace(
        '"cache": {"mode": "exact", "ttl_s": 300, "stale_ttl_s": 86400}}',
        '"cache": {"mode": "exact", "ttl_s": 300, "stale_ttl_s": 86400, "per_key": true, "charge_requests": true}}', 1)
        .replace('{"id": "demo-tiny",', '{"id": "acme-second", "tenant": "acme", "zone": "global", '
                 f'"sha256": "{digest}"}},\n                      {{"id": "demo-tiny",', 1))
    # Partitioned per key: the tenant's other key does not get the first key's answer.
    msg = unique()
    assert gw.chat(msg, model="chat-cached").headers["x-aigw-cache"] == "miss"
    assert gw.chat(msg, model="chat-cached", key=second).headers["x-aigw-cache"] == "miss"
    assert gw.chat(msg, model="chat-cached").headers["x-aigw-cache"] == "hit"
    assert sent(gw, msg) == 2
    # Hits charged to nothing (chat-semantic): tiny's 3 requests a minute are not touched.
    tiny = DEMO_KEYS["tiny"]
    other = unique()
    assert gw.chat(other, model="chat-semantic", key=tiny).headers["x-aigw-cache"] == "miss"
    for _ in range(4):
        r = gw.chat(other, model="chat-semantic", key=tiny)
        assert r.status_code == 200 and r.headers["x-aigw-cache"] == "hit", r.text
    # Hits charged to the request bucket (chat-cached): two left, then a 429.
    third = unique()
    assert gw.chat(third, model="chat-cached", key=tiny).headers["x-aigw-cache"] == "miss"
    hit = gw.chat(third, model="chat-cached", key=tiny)
    assert hit.headers["x-aigw-cache"] == "hit" and hit.headers["x-ratelimit-remaining-requests"] == "0"
    refused = gw.chat(third, model="chat-cached", key=tiny)
    assert refused.status_code == 429, refused.text
    assert audit(gw, refused)["outcome"] == "refused_quota"
