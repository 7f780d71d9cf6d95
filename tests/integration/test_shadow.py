"""Shadow dual-run (README, "Shadow dual-run"): a sampled copy of a call goes to a candidate alias
off the caller's path, as a call of its own to the gateway with the shadow key. The leg is
audited and linked to the primary call, charged to the shadow tenant (never the caller's quota
or budget), skipped and counted past the shadow budget, keeps the caller's privacy zone, and
`aigw-report shadow` compares the two sides."""

import json
import subprocess
import time
import uuid

import httpx
import pytest
from conftest import DEMO_KEYS, ROOT, Gateway
from test_observability import metric, scrape

REPORT = ROOT / "target" / "release" / "aigw-report"
SONNET, MINI = "claude-sonnet-4-5-20250929", "gpt-4o-mini-2024-07-18"


@pytest.fixture(scope="module", params=["gateway", "filters"])
def gw(request, tmp_path_factory):
    # The two gateway filters, and the design card's filters from the one module (route_select
    # from its own module sends no legs, as it applies no guardrails: README, "Shadow dual-run").
    g = Gateway(tmp_path_factory.mktemp("shadow"), values={"LAYOUT": request.param})
    try:
        g.start_envoy()
        yield g
    finally:
        g.stop()


def shadowed(gw, key="acme", stream=False, path="/v1/chat/completions", **extra):
    rid = f"shd-{uuid.uuid4()}"
    headers = {"authorization": f"Bearer {DEMO_KEYS[key]}", "x-request-id": rid}
    if path == "/v1/responses":
        body = {"model": "chat-shadowed", "input": f"Shadow me ({rid})", "stream": stream}
    elif path == "/v1/messages":
        body = {"model": "chat-shadowed", "max_tokens": 50, "stream": stream,
                "messages": [{"role": "user", "content": f"Shadow me ({rid})"}]}
    else:
        body = {"model": "chat-shadowed", "stream": stream,
                "messages": [{"role": "user", "content": f"Shadow me ({rid})"}], **extra}
    r = gw.client.post(path, json=body, headers=headers)
    return r, rid


def leg_of(gw, rid, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        legs = [x for x in gw.audit_lines() if x.get("shadow_of") == rid]
        if legs:
            return legs
        time.sleep(0.05)
    return []


def test_a_shadow_leg_is_audited_linked_and_charged_to_the_shadow_tenant(gw):
    r, rid = shadowed(gw)
    assert r.status_code == 200, r.text
    # The caller sees the primary call only: its own provider and model, no shadow header.
    assert (r.headers["x-aigw-provider"], r.json()["model"]) == ("anthropic", SONNET)
    assert not any(k.startswith("x-aigw-shadow") for k in r.headers)
    [primary] = gw.audit(rid)
    assert "shadow_sent:chat-openai-first" in primary["flags"]
    assert (primary["tenant"], primary["shadow_of"]) == ("acme", None)
    [leg] = leg_of(gw, rid)
    assert leg["request_id"] == f"{rid}-shadow"
    assert (leg["tenant"], leg["key_id"], leg["alias"], leg["provider"], leg["model"]) == (
        "shadow", "gateway-shadow", "chat-openai-first", "openai", MINI)
    assert leg["outcome"] == "ok" and leg["stream"] is False
    assert leg["tokens"]["output"] > 0 and float(leg["cost_usd"]) > 0
    a = leg["answer"]
    assert a["finish_reason"] == "stop" and a["output_chars"] > 0 and len(a["output_digest"]) == 16
    # The leg asked the candidate the same question (masked as the primary's provider got it).
    [seen] = gw.provider_requests("openai", containing=rid)
    assert json.loads(seen["body"])["model"] == MINI
    # A streamed primary: the leg asks for the whole answer.
    r, rid = shadowed(gw, stream=True)
    assert r.status_code == 200
    [leg] = leg_of(gw, rid)
    assert leg["stream"] is False and leg["outcome"] == "ok"
    # The Responses door: the leg goes in by the same door.
    r, rid = shadowed(gw, path="/v1/responses")
    assert r.status_code == 200, r.text
    [leg] = leg_of(gw, rid)
    assert (leg["door"], leg["outcome"]) == ("responses", "ok")
    # The Messages door: the leg goes in by the same door, the request as the caller wrote it
    # (translated by the candidate's OpenAI attempt).
    r, rid = shadowed(gw, path="/v1/messages")
    assert r.status_code == 200 and r.json()["type"] == "message", r.text
    [leg] = leg_of(gw, rid)
    assert (leg["door"], leg["outcome"], leg["provider"]) == ("messages", "ok", "openai")


def test_the_leg_keeps_the_callers_zone_and_never_takes_the_callers_quota(gw):
    # tiny's zone is eu. chat-shadowed's first step (Anthropic, eu-west-1) is in the zone; the
    # candidate's (chat-openai-first: OpenAI, us-east-1) is not: the leg is stopped at the zone
    # border as the caller's own call would be, and never reaches OpenAI.
    r, rid = shadowed(gw, key="tiny")
    assert r.status_code == 200, r.text
    [leg] = leg_of(gw, rid)
    assert (leg["privacy_zone"], leg["tenant"]) == ("eu", "shadow")
    assert leg["outcome"] != "ok" and gw.provider_requests("openai", containing=rid) == []
    # tiny allows 3 calls a minute: two more shadowed calls pass (their legs, calls to the
    # gateway too, took none of tiny's), the fourth is refused.
    for _ in range(2):
        r, rid = shadowed(gw, key="tiny")
        assert r.status_code == 200, r.text
        assert leg_of(gw, rid)[0]["tenant"] == "shadow"
    r, _ = shadowed(gw, key="tiny")
    assert r.status_code == 429
    assert all(x["shadow_of"] is None for x in gw.audit_lines() if x.get("tenant") == "tiny")


def test_no_leg_for_a_call_outside_the_sample_or_on_another_alias(gw):
    rid = f"shd-{uuid.uuid4()}"
    r = gw.chat(f"not shadowed ({rid})", headers={"x-request-id": rid})
    assert r.status_code == 200
    time.sleep(0.5)
    assert leg_of(gw, rid, timeout=1) == []
    # A caller cannot make its own call a shadow leg (the header is the gateway's).
    rid = f"shd-{uuid.uuid4()}"
    r = gw.chat(f"forged ({rid})", headers={"x-request-id": rid, "x-aigw-shadow-of": "someone-else"})
    assert r.status_code == 200
    [rec] = gw.audit(rid)
    assert rec["shadow_of"] is None and rec["tenant"] == "acme"


def test_past_the_shadow_budget_legs_are_skipped_and_counted(fresh_gateway_factory):
    # A shadow budget of USD 0.0005 a day. A leg reserves its upper-bound cost first (README,
    # "Quotas and budgets"): a small one fits; one that may write 2,000 tokens (USD 0.0012 on
    # gpt-4o-mini) cannot, and is refused by the shadow tenant's budget before any provider,
    # and counted. The callers are served all along, charged only their own calls.
    quota = json.loads((ROOT / "envoy" / "quota.json").read_text())
    quota["tenants"]["shadow"]["budget"] = {"daily_usd": "0.0005", "monthly_usd": "1.00"}
    quota.pop("_comment")
    quota["price_book"] = json.loads((ROOT / "envoy" / "price-book.json").read_text())
    gw = fresh_gateway_factory(values={"QUOTA_CONFIG": json.dumps(quota)})
    r, small = shadowed(gw, max_tokens=10)
    assert r.status_code == 200
    big = []
    for _ in range(2):
        r, rid = shadowed(gw, max_tokens=2000)
        assert r.status_code == 200, r.text
        big.append(rid)
    assert leg_of(gw, small)[0]["outcome"] == "ok"
    for rid in big:
        [leg] = leg_of(gw, rid)
        assert (leg["outcome"], leg["error_code"], leg["attempts"]) == ("refused_quota", "tenant_daily_budget", [])
        assert gw.provider_requests("openai", containing=rid) == []
        assert gw.audit(rid)[0]["outcome"] == "ok"
    deadline = time.time() + 10
    while time.time() < deadline:
        m = scrape(gw)
        if metric(m, "aigw_shadow_skipped_total", alias="chat-openai-first") == 2:
            break
        time.sleep(0.2)
    assert metric(m, "aigw_shadow_skipped_total", alias="chat-openai-first") == 2
    assert metric(m, "aigw_shadow_legs_total", alias="chat-openai-first", outcome="ok") == 1
    assert metric(m, "aigw_shadow_legs_total", alias="chat-openai-first", outcome="refused_quota") == 2


def test_the_shadow_report_compares_primary_and_candidate(gw):
    start = int(time.time() * 1000)
    for i in range(6):
        r, rid = shadowed(gw)
        assert r.status_code == 200
        assert leg_of(gw, rid)
    # One primary whose answer is cut by its token limit (the candidate's too).
    r, rid = shadowed(gw, max_tokens=2)
    assert leg_of(gw, rid)
    end = int(time.time() * 1000) + 1
    out = subprocess.run([str(REPORT), "shadow", "--period", f"{start}..{end}", "--json", str(gw.access_log)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    [row] = [x for x in rows if x["primary_alias"] == "chat-shadowed" and x["candidate_alias"] == "chat-openai-first"]
    assert row["pairs"] == 7 and row["legs_skipped"] == 0
    assert row["primary"]["ok"] == 7 and row["candidate"]["ok"] == 7
    # The fakes echo the question: the same text from both, so every pair matches exactly.
    assert row["exact_match_rate"] == 1.0
    assert abs(row["output_length_ratio"] - 1.0) < 1e-9
    assert row["primary"]["cost_usd"] > row["candidate"]["cost_usd"] > 0
    assert row["primary"]["finish_reasons"]["length"] == 1 and row["candidate"]["finish_reasons"]["length"] == 1
    assert row["primary"]["refusal_rate"] == 0.0
    # The text form names the same figures.
    text = subprocess.run([str(REPORT), "shadow", "--period", f"{start}..{end}", str(gw.access_log)],
                          capture_output=True, text=True, timeout=30).stdout
    assert "chat-shadowed" in text and "chat-openai-first" in text and "100.0%" in text
    assert httpx.get(f"http://127.0.0.1:{gw.admin_port}/ready", timeout=5).status_code == 200
