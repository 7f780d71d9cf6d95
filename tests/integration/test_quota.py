"""Quota plane: request, token, concurrency and money buckets, exact across Envoy's two workers.

Every gateway here runs with `--concurrency 2` (conftest), and each exactness test checks that
both workers really took connections. Bucket rates are set to 1 per minute with a larger burst,
so nothing refills while a test runs and "exactly N pass" is exact.
"""

import json
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from conftest import DEMO_KEYS, PRICE_BOOK, assert_both_workers_used

MSG = "q" * 40  # 40 bytes: ceil(40 / 4) = 10 prompt tokens, + 4 for the message


def pieces(text):
    """The text's pieces, as README 'Sizing limits' defines them (plain text, no JSON escapes)."""
    n, i = 0, 0
    while i < len(text):
        c = text[i]
        j = i + 1
        if c.isascii() and c.isalpha():
            while j < len(text) and text[j].isascii() and text[j].isalpha():
                j += 1
            n += max(1, math.ceil((j - i) / 4))
        elif c.isascii() and c.isdigit():
            while j < len(text) and text[j].isascii() and text[j].isdigit():
                j += 1
            n += max(1, math.ceil((j - i) / 3))
        elif c.isspace():
            while j < len(text) and text[j].isspace():
                j += 1
            n += 1 if (j - i > 1 or "\n" in text[i:j]) else 0
        else:
            n += 1 if c.isascii() else math.ceil(len(c.encode()) / 2)
        i = j
    return n


def estimate(content=MSG, max_tokens=100):
    """The documented estimate for a one-message call (README, 'Sizing limits')."""
    return max(math.ceil(len(content.encode()) / 4), pieces(content)) + 4 + max_tokens


def quota_config(tenants, providers=None, **extra):
    cfg = {"tenants": tenants, "providers": providers or {}, "price_book": PRICE_BOOK, **extra}
    return json.dumps(cfg, separators=(",", ":"))


@pytest.fixture
def start(fresh_gateway_factory):
    def make(tenants, providers=None, modules="one", **extra):
        return fresh_gateway_factory(values={"QUOTA_CONFIG": quota_config(tenants, providers, **extra)},
                                     modules=modules)

    return make


def post(gw, key="acme", model="chat", content=MSG, max_tokens=100, headers=None, **body):
    """One call on a connection of its own, so calls spread over both workers."""
    h = {"authorization": f"Bearer {DEMO_KEYS[key]}", "connection": "close", **(headers or {})}
    payload = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **body}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=payload, headers=h, timeout=30)


def burst(gw, n, **kw):
    """n calls at once."""
    with ThreadPoolExecutor(max_workers=min(n, 32)) as pool:
        return list(pool.map(lambda _: post(gw, **kw), range(n)))


def codes(responses):
    return sorted(r.status_code for r in responses)


def error(resp):
    return resp.json()["error"]


# -- exactness at the limit, one test per kind of bucket -----------------------------------------


def test_requests_bucket_is_exact_under_concurrent_load(start):
    gw = start({"acme": {"requests_per_minute": 1, "requests_burst": 20}})
    out = burst(gw, 60)
    assert codes(out).count(200) == 20, codes(out)
    refused = [r for r in out if r.status_code != 200]
    assert len(refused) == 40 and {r.status_code for r in refused} == {429}
    for r in refused:
        e = error(r)
        assert e["type"] == "rate_limit_exceeded" and e["code"] == "tenant_requests_per_minute"
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["x-ratelimit-limit-requests"] == "20" and r.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(gw.provider_requests("anthropic", containing=MSG)) == 20
    assert_both_workers_used(gw)
    # Another tenant has buckets of its own.
    assert post(gw, key="tiny").status_code == 200


def test_tokens_bucket_is_exact_under_concurrent_load(start):
    est = estimate()
    gw = start({"acme": {"tokens_per_minute": 1, "tokens_burst": 5 * est}})
    # Slow answers: every call is admitted or refused before any is reconciled.
    out = burst(gw, 15, headers={"x-fake-fault": "anthropic=delay-1500"})
    assert codes(out).count(200) == 5, codes(out)
    for r in (r for r in out if r.status_code != 200):
        assert r.status_code == 429 and error(r)["code"] == "tenant_tokens_per_minute"
        assert r.headers["x-ratelimit-limit-tokens"] == str(5 * est)
    assert_both_workers_used(gw)
    # A call that could never fit says so, instead of asking to retry.
    r = post(gw, max_tokens=10 * est)
    assert r.status_code == 429 and "retry-after" not in r.headers and "max_tokens" in error(r)["message"]
    # ... and gives no reset time (there is none), while the other figures are there.
    assert "x-ratelimit-reset-tokens" not in r.headers, r.headers
    assert r.headers["x-ratelimit-limit-tokens"] == str(5 * est)


def test_concurrency_bucket_is_exact_and_released(start):
    gw = start({"acme": {"concurrent": 3}})
    out = burst(gw, 10, headers={"x-fake-fault": "anthropic=delay-1500"})
    assert codes(out).count(200) == 3, codes(out)
    for r in (r for r in out if r.status_code != 200):
        assert r.status_code == 429 and error(r)["code"] == "tenant_concurrent_requests"
    assert_both_workers_used(gw)
    # Every slot was given back when its call ended, refused ones included.
    again = burst(gw, 3, headers={"x-fake-fault": "anthropic=delay-500"})
    assert codes(again) == [200, 200, 200]


def test_feature_and_model_buckets_are_exact(start):
    gw = start({"acme": {
        "features": {"search": {"requests_per_minute": 1, "requests_burst": 6}},
        "models": {"chat-openai-first": {"requests_per_minute": 1, "requests_burst": 4}}}})
    out = burst(gw, 20, headers={"x-gateway-feature": "search"})
    assert codes(out).count(200) == 6, codes(out)
    assert {error(r)["code"] for r in out if r.status_code != 200} == {"feature_requests_per_minute"}
    # Another feature of the same tenant is not held back.
    assert post(gw, headers={"x-gateway-feature": "support-bot"}).status_code == 200
    out = burst(gw, 12, model="chat-openai-first")
    assert codes(out).count(200) == 4, codes(out)
    assert {error(r)["code"] for r in out if r.status_code != 200} == {"model_requests_per_minute"}
    assert post(gw, model="chat").status_code == 200
    assert_both_workers_used(gw)


def test_provider_bucket_is_exact_and_its_refusal_names_no_figures(start):
    gw = start({}, providers={"openai": {"requests_per_minute": 1, "requests_burst": 3}})
    out = burst(gw, 10, model="chat-openai-first")
    served = [r.headers.get("x-aigw-provider") for r in out if r.status_code == 200]
    assert served == ["openai"] * 3, codes(out)
    refused = [r for r in out if r.status_code != 200]
    assert len(refused) == 7
    for r in refused:
        e = error(r)
        assert r.status_code == 429 and e["code"] == "provider_requests_per_minute"
        assert int(r.headers["retry-after"]) >= 1
        # The provider's bucket is shared by every tenant: no figures in the refusal.
        assert "per minute" not in e["message"] and "burst" not in e["message"]
        assert "x-ratelimit-limit-requests" not in r.headers
    assert len(gw.provider_requests("openai", containing=MSG)) == 3
    # Envoy does not retry an upstream filter's own answer: the call is not moved on.
    assert gw.provider_requests("anthropic", containing=MSG) == []
    # The audit record shows the attempt the gateway stopped before it reached the provider.
    rec = gw.audit(refused[0].headers["x-aigw-request-id"])[0]
    assert [(a["provider"], a["error_class"], a["status"]) for a in rec["attempts"]] == [
        ("openai", "provider_limit", None)]
    assert rec["outcome"] == "refused_quota"
    # Chains that start at another provider are not affected.
    assert post(gw, model="chat").status_code == 200
    assert_both_workers_used(gw)


def test_provider_tokens_bucket_is_exact(start):
    est = estimate()
    gw = start({}, providers={"openai": {"tokens_per_minute": 1, "tokens_burst": 3 * est}})
    out = burst(gw, 9, model="chat-openai-first", headers={"x-fake-fault": "openai=delay-1500"})
    assert codes(out).count(200) == 3, codes(out)
    assert {error(r)["code"] for r in out if r.status_code != 200} == {"provider_tokens_per_minute"}
    assert len(gw.provider_requests("openai", containing=MSG)) == 3
    assert_both_workers_used(gw)


# -- token accounting ----------------------------------------------------------------------------


def remaining_tokens(resp):
    return int(resp.headers["x-ratelimit-remaining-tokens"])


BIG = 1_000_000


def level(gw):
    """The tokens bucket's level, read with a probe call: (before the probe, after it settles).

    The probe's header shows the level minus its estimate; once logged, the probe is charged
    its real usage instead."""
    r = post(gw)
    assert r.status_code == 200, r.text
    u = r.json()["usage"]
    before = remaining_tokens(r) + estimate()
    time.sleep(0.3)  # reconciliation runs when the call is logged, just after the answer
    return before, before - (u["prompt_tokens"] + u["completion_tokens"])


def stream_call(gw, content=MSG, headers=None, **body):
    h = {"authorization": f"Bearer {DEMO_KEYS['acme']}", **(headers or {})}
    payload = {"model": "chat", "messages": [{"role": "user", "content": content}], "max_tokens": 100,
               "stream": True, **body}
    return httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=payload, headers=h, timeout=30)


def test_tokens_are_reconciled_for_non_streamed_calls(start):
    gw = start({"acme": {"tokens_per_minute": 1, "tokens_burst": BIG}})
    first = post(gw)
    assert first.status_code == 200
    assert remaining_tokens(first) == BIG - estimate()  # the estimate is taken up front
    u = first.json()["usage"]
    time.sleep(0.3)
    now, _ = level(gw)
    # Once logged, the call was charged exactly its usage: the rest of max_tokens came back.
    assert abs((BIG - now) - (u["prompt_tokens"] + u["completion_tokens"])) <= 1


@pytest.mark.parametrize("modules", ["one", "separate"])
@pytest.mark.parametrize("asked", [True, False], ids=["usage-asked", "usage-not-asked"])
def test_tokens_are_reconciled_for_streamed_calls(start, modules, asked):
    # Also with the design card's filters, one module each, and whether or not the caller sees
    # the usage: the charge is what the call used.
    gw = start({"acme": {"tokens_per_minute": 1, "tokens_burst": BIG}}, modules=modules)
    _, base = level(gw)
    usage = None
    with stream_call(gw, **({"stream_options": {"include_usage": True}} if asked else {})) as r:
        assert r.status_code == 200
        rid = r.headers["x-aigw-request-id"]
        text = "".join(r.iter_text())
    for line in text.splitlines():
        if line.startswith("data: {"):
            usage = json.loads(line[6:]).get("usage") or usage
    if asked:
        assert usage, "the stream carried no usage"
        used = usage["prompt_tokens"] + usage["completion_tokens"]
    else:
        assert '"usage"' not in text, text[-500:]
        [rec] = gw.audit(rid)
        used = rec["tokens"]["input"] + rec["tokens"]["output"]
    assert used < estimate()  # the charge moved from the estimate to what was used
    time.sleep(0.3)
    now, _ = level(gw)
    assert abs((base - now) - used) <= 1, (base - now, used)


def test_aborted_calls_are_reconciled(start):
    gw = start({"acme": {"tokens_per_minute": 1, "tokens_burst": BIG}})
    content = MSG + " " + " ".join(f"w{i}" for i in range(40))
    est = estimate(content)
    prompt = est - 100
    _, base = level(gw)
    # The caller leaves after the first content chunk of a slow stream.
    with stream_call(gw, content, headers={"x-fake-fault": "anthropic=slow-300"}) as r:
        assert r.status_code == 200
        assert remaining_tokens(r) == base - est
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break
    time.sleep(0.5)
    now, settled = level(gw)
    charged = base - now
    # The prompt (the provider bills it anyway) plus what streamed before the caller left;
    # the rest of the max_tokens bound came back.
    assert prompt <= charged < prompt + 10, (charged, prompt)

    # A caller that gives up before any answer: the prompt is charged, the output bound refunded.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gw.url}/v1/chat/completions", timeout=0.5,
                   json={"model": "chat", "messages": [{"role": "user", "content": MSG}], "max_tokens": 100},
                   headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "x-fake-fault": "anthropic=delay-3000"})
    time.sleep(0.5)
    now, _ = level(gw)
    assert abs((settled - now) - (estimate(MSG) - 100)) <= 1, (settled - now)


# -- budgets -------------------------------------------------------------------------------------


def price(model):
    p = PRICE_BOOK["models"][model]
    return Decimal(p["input"]) / 10**6, Decimal(p["output"]) / 10**6


def upper_bound(max_tokens, content=MSG):
    """The most a `chat-openai-first` call can cost: the dearer of its two models."""
    prompt = estimate(content, 0)
    return max(prompt * i + max_tokens * o for i, o in
               (price("gpt-4o-mini-2024-07-18"), price("claude-haiku-4-5-20251001")))


def test_budget_hard_cap_refuses_on_the_upper_bound_and_soft_threshold_warns(start):
    gw = start({"acme": {"budget": {"daily_usd": "0.02", "soft_percent": 50}}})
    # 3000 output tokens at Haiku's rate: more than half the day's budget on its own.
    ok = post(gw, model="chat-openai-first", max_tokens=3000)
    assert ok.status_code == 200, ok.text
    assert upper_bound(3000) > Decimal("0.01")
    assert "daily" in ok.headers["x-aigw-budget-warning"]
    rec = gw.audit(ok.headers["x-aigw-request-id"])[0]
    assert "budget_soft_limit" in rec["flags"]
    spent = Decimal(rec["cost_usd"])

    # 5000 could cost more than the whole cap: refused before it is sent, whatever was spent.
    msg = f"budget {uuid.uuid4().hex}"
    r = post(gw, model="chat-openai-first", max_tokens=5000, content=msg)
    assert r.status_code == 402, r.text
    e = error(r)
    assert e["type"] == "budget_exceeded" and e["code"] == "tenant_daily_budget"
    assert f"USD {upper_bound(5000, msg).normalize()}" in e["message"] or \
        f"USD {upper_bound(5000, msg)}" in e["message"], (e["message"], upper_bound(5000, msg))
    # What was spent is the first call's real cost (its reservation was settled), exactly.
    assert f"({spent.normalize()} USD spent or reserved)" in e["message"], (e["message"], spent)
    assert gw.provider_requests("openai", containing=msg) == []
    assert gw.audit(r.headers["x-aigw-request-id"])[0]["outcome"] == "refused_quota"

    # A small call still fits; the first call's reservation was settled to its real (tiny)
    # cost, so the day is no longer past the soft threshold.
    small = post(gw, model="chat-openai-first", max_tokens=10)
    assert small.status_code == 200 and "x-aigw-budget-warning" not in small.headers
    # Another tenant's budget is its own.
    other = post(gw, key="tiny", model="chat", max_tokens=5000)
    assert other.status_code == 200 and "x-aigw-budget-warning" not in other.headers


def test_budget_is_exact_under_concurrent_load(start):
    each = upper_bound(1000)
    cap = each * 4  # room for exactly four reservations at once
    gw = start({"acme": {"budget": {"daily_usd": str(cap), "monthly_usd": "100"}}})
    out = burst(gw, 12, model="chat-openai-first", max_tokens=1000, headers={"x-fake-fault": "openai=delay-1500"})
    assert codes(out).count(200) == 4, codes(out)
    assert {error(r)["code"] for r in out if r.status_code != 200} == {"tenant_daily_budget"}
    assert_both_workers_used(gw)


# -- headers and privacy -------------------------------------------------------------------------


def test_every_response_carries_the_tightest_buckets_headers(start):
    gw = start({"acme": {"requests_per_minute": 777, "tokens_per_minute": 1, "tokens_burst": 900_000,
                         "features": {"search": {"requests_per_minute": 1, "requests_burst": 2,
                                                 "tokens_per_minute": 1, "tokens_burst": 600}}},
                "tiny": {"requests_per_minute": 1, "requests_burst": 1}})
    r = post(gw)
    assert r.headers["x-ratelimit-limit-requests"] == "777"
    assert r.headers["x-ratelimit-remaining-requests"] == "776"
    assert r.headers["x-ratelimit-limit-tokens"] == "900000"
    # With the feature, the feature's buckets are the tighter ones.
    f = {"x-gateway-feature": "search"}
    r = post(gw, headers=f)
    assert (r.headers["x-ratelimit-limit-requests"], r.headers["x-ratelimit-remaining-requests"]) == ("2", "1")
    assert (r.headers["x-ratelimit-limit-tokens"], r.headers["x-ratelimit-remaining-tokens"]) == (
        "600", str(600 - estimate()))
    assert r.headers["x-ratelimit-reset-requests"].endswith("s")
    # A refusal carries them too.
    post(gw, headers=f)
    refused = post(gw, headers=f)
    assert refused.status_code == 429 and refused.headers["x-ratelimit-remaining-requests"] == "0"
    # A refusal never shows another tenant's figures.
    assert post(gw, key="tiny").status_code == 200
    t = post(gw, key="tiny")
    assert t.status_code == 429
    # (Its body and its quota headers: request ids are random and may contain any digits.)
    shown = t.text + json.dumps({k: v for k, v in t.headers.items() if k.startswith(("x-ratelimit", "retry-after"))})
    assert "777" not in shown and "900000" not in shown and "600" not in shown


def test_a_flooding_tenant_is_held_to_its_limit_and_a_quiet_one_is_untouched(start):
    gw = start({"*": {"requests_per_minute": 1, "requests_burst": 10}})
    flood_results, quiet_results = [], []

    def flood():
        with ThreadPoolExecutor(max_workers=8) as pool:
            flood_results.extend(pool.map(lambda _: post(gw, key="tiny").status_code, range(100)))

    t = threading.Thread(target=flood)
    t.start()
    for _ in range(8):  # the quiet tenant, during the flood
        quiet_results.append(post(gw, key="acme").status_code)
        time.sleep(0.05)
    t.join()
    assert flood_results.count(200) == 10 and flood_results.count(429) == 90
    assert quiet_results == [200] * 8
    assert_both_workers_used(gw)


def test_bucket_and_budget_state_survive_a_config_push(start):
    gw = start({"acme": {"requests_per_minute": 1, "requests_burst": 5,
                         "budget": {"daily_usd": "0.02", "soft_percent": 50}}})
    calls = [post(gw, model="chat-openai-first", max_tokens=3000), post(gw), post(gw)]
    assert [c.status_code for c in calls] == [200, 200, 200]
    spent = sum(Decimal(gw.audit(c.headers["x-aigw-request-id"])[0]["cost_usd"]) for c in calls)
    # Push a changed configuration (the soft threshold; another tenant's limit): no restart.
    cfg = json.loads(gw.values["QUOTA_CONFIG"])
    cfg["tenants"]["acme"]["budget"]["soft_percent"] = 60
    cfg["tenants"]["tiny"] = {"requests_per_minute": 50}
    assert gw.filter_name("quota") in gw.push(QUOTA_CONFIG=json.dumps(cfg, separators=(",", ":")))
    # The day's spending was kept: the refusal shows it, exactly (a refused call gives back
    # the request it took).
    r = post(gw, model="chat-openai-first", max_tokens=5000)
    assert r.status_code == 402, r.text
    assert f"({spent.normalize()} USD spent or reserved)" in error(r)["message"], (error(r)["message"], spent)
    # The requests bucket kept its level: 2 of 5 are left, not 5.
    assert [post(gw).status_code for _ in range(3)] == [200, 200, 429]
    assert gw.envoy.poll() is None


def test_monthly_and_feature_budgets_have_their_own_codes(start):
    gw = start({"acme": {"budget": {"monthly_usd": "0.01"},
                         "features": {"search": {"budget": {"daily_usd": "0.001"}}}}})
    # 1000 output tokens at Haiku's rate: USD 0.005; 3000: 0.015, past the month's cap.
    assert post(gw, model="chat-openai-first", max_tokens=1000).status_code == 200
    r = post(gw, model="chat-openai-first", max_tokens=3000)
    assert r.status_code == 402 and error(r)["code"] == "tenant_monthly_budget"
    assert "start of next month" in error(r)["message"]
    f = post(gw, model="chat-openai-first", max_tokens=1000, headers={"x-gateway-feature": "search"})
    assert f.status_code == 402 and error(f)["code"] == "feature_daily_budget"
