"""Observability: a mixed run against the real Envoy, then its audit log, metrics and reports.

The module has its own gateway, so every audit line and metric below comes from this run.
"""

import json
import re
import subprocess
import time
import uuid
from collections import defaultdict
from decimal import Decimal

import httpx
import pytest
from conftest import DEMO_KEYS, ROOT, expected_cost

REPORT = ROOT / "target" / "release" / "aigw-report"
SONNET, MINI = "claude-sonnet-4-5-20250929", "gpt-4o-mini-2024-07-18"


def msg():
    return f"observe {uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def run(gateway):
    """Drives the mixed run once; returns what each call's caller saw."""
    calls = {}

    def chat(name, **kw):
        r = gateway.chat(msg(), **kw)
        calls[name] = {"status": r.status_code, "id": r.headers.get("x-aigw-request-id"),
                       "headers": dict(r.headers), "body": r.json()}

    chat("ok", headers={"x-gateway-feature": "search"})
    chat("bad_key", key="aigw-wrong")
    for i in range(3):
        chat(f"tiny_{i}", key=DEMO_KEYS["tiny"])
    chat("rate_limited", key=DEMO_KEYS["tiny"])
    chat("fallback_ok", headers={"x-fake-fault": "anthropic=529"})
    chat("all_failing", headers={"x-fake-fault": "*=503"})

    with gateway.client.stream("POST", "/v1/chat/completions",
                               json={"model": "chat", "stream": True, "stream_options": {"include_usage": True},
                                     "messages": [{"role": "user", "content": msg()}]},
                               headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"}) as r:
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        usage = next(json.loads(x)["usage"] for x in lines[:-1] if json.loads(x).get("usage"))
        calls["streamed"] = {"status": r.status_code, "id": r.headers["x-aigw-request-id"], "usage": usage}

    # The caller gives up while the provider is still thinking.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.url}/v1/chat/completions", timeout=httpx.Timeout(5, read=0.3),
                   json={"model": "chat", "messages": [{"role": "user", "content": msg()}]},
                   headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "x-fake-fault": "anthropic=delay-3000"})
    calls["aborted"] = {"status": None, "id": None}

    # Every call's record is written when the call ends; wait for all of them.
    deadline = time.time() + 10
    while len(gateway.audit_lines()) < len(calls) and time.time() < deadline:
        time.sleep(0.05)
    return calls


def record_of(gateway, call):
    if call["id"] is None:
        return [r for r in gateway.audit_lines() if r["outcome"] == "client_aborted"]
    return gateway.audit(call["id"])


def test_exactly_one_correct_audit_line_per_call(gateway, run):
    lines = gateway.audit_lines()
    assert len(lines) == len(run), [r["outcome"] for r in lines]
    recs = {}
    for name, call in run.items():
        found = record_of(gateway, call)
        assert len(found) == 1, (name, found)
        recs[name] = found[0]
    assert len({r["request_id"] for r in lines}) == len(lines)

    expect = {
        "ok": ("ok", 200, "acme", "anthropic"),
        "bad_key": ("refused_auth", 401, None, None),
        "tiny_0": ("ok", 200, "tiny", "anthropic"),
        "rate_limited": ("refused_quota", 429, "tiny", None),
        "fallback_ok": ("ok", 200, "acme", "openai"),
        "all_failing": ("upstream_error", 503, "acme", "openai"),
        "streamed": ("ok", 200, "acme", "anthropic"),
        "aborted": ("client_aborted", None, "acme", "anthropic"),
    }
    for name, (outcome, status, tenant, provider) in expect.items():
        r = recs[name]
        assert (r["outcome"], r["status"], r["tenant"], r["provider"]) == (outcome, status, tenant, provider), (name, r)
        assert r["version"] == 2 and r["end_time_ms"] >= r["start_time_ms"]
        assert r["latency_ms"] == r["end_time_ms"] - r["start_time_ms"]

    # Identity: key fingerprint (never the key), zone.
    assert recs["ok"]["key_id"] == "demo-acme" and recs["ok"]["privacy_zone"] == "global"
    assert re.fullmatch(r"[0-9a-f]{12}", recs["ok"]["key_fingerprint"])
    assert recs["tiny_0"]["privacy_zone"] == "eu"
    assert recs["ok"]["feature"] == "search" and recs["fallback_ok"]["feature"] is None
    assert DEMO_KEYS["acme"] not in gateway.access_log.read_text()

    # Attempts, with region, raw provider status and error class.
    a = recs["fallback_ok"]["attempts"]
    assert [(x["provider"], x["region"], x["status"], x["error_class"]) for x in a] == [
        ("anthropic", "eu-west-1", 529, "overloaded"), ("openai", "us-east-1", 200, None)]
    assert a[0]["model"] == SONNET and a[1]["model"] == MINI
    assert all(x["latency_ms"] is not None for x in a)
    assert [(x["status"], x["error_class"]) for x in recs["all_failing"]["attempts"]] == [(503, "overloaded"), (503, "overloaded")]
    assert recs["bad_key"]["attempts"] == [] and recs["rate_limited"]["attempts"] == []
    assert [(x["provider"], x["status"], x["error_class"]) for x in recs["aborted"]["attempts"]] == [("anthropic", None, None)]

    # Tokens equal what the caller was told, cost equals the hand-computed figure.
    for name in ("ok", "tiny_0", "fallback_ok"):
        u, r = run[name]["body"]["usage"], recs[name]
        assert r["tokens"] == {"input": u["prompt_tokens"], "cached_input": 0, "cache_write": 0, "cache_write_1h": 0, "output": u["completion_tokens"], "reasoning": 0}
        assert Decimal(r["cost_usd"]) == expected_cost(r["model"], r["tokens"]) > 0
        assert run[name]["headers"]["x-aigw-cost-usd"] == r["cost_usd"]
        assert run[name]["headers"]["x-aigw-tokens-input"] == str(u["prompt_tokens"])
        assert run[name]["headers"]["x-aigw-tokens-output"] == str(u["completion_tokens"])
    s = recs["streamed"]
    assert s["stream"] is True and s["ttft_ms"] is not None and s["ttft_ms"] <= s["latency_ms"]
    assert s["tokens"]["input"] == run["streamed"]["usage"]["prompt_tokens"]
    assert Decimal(s["cost_usd"]) == expected_cost(SONNET, s["tokens"])
    # Refused and failed calls were billed nothing.
    for name in ("bad_key", "rate_limited", "all_failing"):
        assert recs[name]["tokens"] is None and recs[name]["cost_usd"] is None
    # The caller left while the provider worked: its prompt (estimated) is billed, by the same
    # rule the budget uses (README, "What a failed or partial call costs").
    ab = recs["aborted"]
    assert ab["tokens"]["input"] > 0 and ab["tokens"]["output"] == 0 and "usage_estimated" in ab["flags"]
    assert Decimal(ab["cost_usd"]) == expected_cost(SONNET, ab["tokens"]) > 0


def scrape(gateway):
    text = httpx.get(f"http://127.0.0.1:{gateway.admin_port}/stats/prometheus", timeout=5).text
    out = {}
    for line in text.splitlines():
        m = re.match(r"^((?:aigw|gen_ai)_\w+)(\{[^}]*\})? (\S+)$", line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(metrics, name, **labels):
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= set(ls))


def scrape_once(gateway, name, at_least, seconds=12):
    """The metrics, once `name` adds up to `at_least` (or after `seconds`): counters and
    histograms reach the admin endpoint at Envoy's stats flush (every 5 s)."""
    deadline = time.time() + seconds
    while True:
        m = scrape(gateway)
        if metric(m, name) >= at_least or time.time() > deadline:
            return m
        time.sleep(0.5)


def test_metrics_match_the_run(gateway, run):
    recs = gateway.audit_lines()
    m = scrape_once(gateway, "gen_ai_client_operation_duration_ms_count", 8)

    assert metric(m, "aigw_requests_total", provider="anthropic", model=SONNET, outcome="ok") == 5  # ok, 3 tiny, streamed
    assert metric(m, "aigw_requests_total", provider="openai", model=MINI, outcome="ok") == 1
    assert metric(m, "aigw_requests_total", provider="none", outcome="refused_auth") == 1
    assert metric(m, "aigw_requests_total", provider="none", outcome="refused_quota") == 1
    assert metric(m, "aigw_requests_total", provider="openai", outcome="upstream_error") == 1
    assert metric(m, "aigw_requests_total", provider="anthropic", outcome="client_aborted") == 1
    assert metric(m, "aigw_requests_total") == len(run)

    for kind in ("input", "output"):
        want = sum(r["tokens"][kind] for r in recs if r["tokens"])
        assert metric(m, "aigw_tokens_total", token_type=kind) == want > 0
    nano = sum((Decimal(r["cost_usd"]) * 10**9).to_integral_value(rounding="ROUND_HALF_UP") for r in recs if r["cost_usd"])
    assert metric(m, "aigw_cost_nano_usd_total") == nano > 0

    assert metric(m, "aigw_fallbacks_total", alias="chat") == 2  # fallback_ok and all_failing
    assert metric(m, "aigw_provider_errors_total", provider="anthropic", error_class="overloaded") == 2
    assert metric(m, "aigw_provider_errors_total", provider="openai", error_class="overloaded") == 1
    assert metric(m, "aigw_provider_errors_total", error_class="no_response") == 0  # the aborted call was cancelled, not failed

    # Attempts that reached the provider (the aborted call's was cancelled: not counted), and
    # errors per provider and model.
    assert metric(m, "aigw_provider_attempts_total", provider="anthropic", model=SONNET) == 7
    assert metric(m, "aigw_provider_attempts_total", provider="openai", model=MINI) == 2
    assert metric(m, "aigw_provider_errors_total", provider="anthropic", model=SONNET, error_class="overloaded") == 2
    # Quota refusals by the refusing bucket's code; tokens and cost per labelled tenant.
    assert metric(m, "aigw_quota_refusals_total", code="tenant_requests_per_minute") == 1
    assert metric(m, "aigw_quota_refusals_total") == 1
    tiny_cost = sum((Decimal(r["cost_usd"]) * 10**9).to_integral_value(rounding="ROUND_HALF_UP")
                    for r in recs if r["cost_usd"] and r["tenant"] == "tiny")
    assert metric(m, "aigw_tenant_cost_nano_usd_total", tenant="tiny") == tiny_cost > 0
    assert metric(m, "aigw_tenant_tokens_total", tenant="tiny", token_type="output") == \
        sum(r["tokens"]["output"] for r in recs if r["tokens"] and r["tenant"] == "tiny")
    assert metric(m, "aigw_tenant_requests_total", tenant="tiny", outcome="ok") == 3
    assert metric(m, "aigw_tenant_requests_total", tenant="tiny", outcome="refused_quota") == 1

    # Durations of the 8 calls that got past auth and quota; one time-to-first-token.
    assert metric(m, "gen_ai_client_operation_duration_ms_count") == 8
    assert metric(m, "gen_ai_server_time_to_first_token_ms_count", provider="anthropic") == 1


def report(*args):
    out = subprocess.run([str(REPORT), *map(str, args)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def table_rows(text):
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()[2:] if line.startswith("|")]


def test_report_spend_matches_hand_computed_costs(gateway, run):
    # Expected spend per (tenant, model), from what callers were told and the price book.
    want = defaultdict(lambda: [0, Decimal(0)])
    for name, call in run.items():
        if call["status"] == 200:
            u = call["body"]["usage"] if "body" in call else call["usage"]
            model = SONNET if name != "fallback_ok" else MINI
            tenant = "tiny" if name.startswith("tiny") else "acme"
            tokens = {"input": u["prompt_tokens"], "cached_input": 0, "cache_write": 0, "cache_write_1h": 0, "output": u["completion_tokens"], "reasoning": 0}
            want[(tenant, model)][0] += 1
            want[(tenant, model)][1] += expected_cost(model, tokens)
    # The aborted call's estimated prompt, as its record says.
    want[("acme", SONNET)][1] += Decimal(record_of(gateway, run["aborted"])[0]["cost_usd"])
    rows = table_rows(report("spend", "--by", "tenant,model", "--period", "all", gateway.access_log))
    got = {(r[1], r[2]): r for r in rows}
    for (tenant, model), (calls, cost) in want.items():
        r = got[(tenant, model)]
        assert Decimal(r[6]) == cost, (tenant, model, r)
    by_feature = {r[1]: r for r in table_rows(report("spend", "--by", "feature", "--period", "all", gateway.access_log))}
    ok_cost = expected_cost(SONNET, {"input": run["ok"]["body"]["usage"]["prompt_tokens"], "cached_input": 0,
                                     "output": run["ok"]["body"]["usage"]["completion_tokens"], "reasoning": 0})
    assert by_feature["search"][2] == "1" and Decimal(by_feature["search"][5]) == ok_cost
    # Calls that were refused or failed cost nothing and are counted under model "-".
    assert int(got[("acme", SONNET)][3]) == 3  # ok, streamed, aborted
    assert got[("acme", SONNET)][7] == "0"


def test_report_providers_and_privacy_proof(gateway, run, tmp_path):
    rows = {r[0]: r for r in table_rows(report("providers", gateway.access_log))}
    # Anthropic: ok, 3 tiny, fallback (529), all failing (503), streamed, aborted (cancelled,
    # not an error). OpenAI: the fallback's second attempt (200) and all failing (503).
    assert rows["anthropic"][1:3] == ["8", "2"]
    assert rows["openai"][1:3] == ["2", "1"]
    assert "overloaded=2" in rows["anthropic"][4]

    proof = report("privacy", "--zones", ROOT / "envoy" / "privacy-zones.json", gateway.access_log)
    assert proof.strip().endswith("0 rows"), proof

    # The same query on the same records finds the calls that left the EU under a stricter policy.
    strict = tmp_path / "zones.json"
    strict.write_text(json.dumps({"zones": {"global": ["eu-west-1"], "eu": ["eu-west-1"]}}))
    found = table_rows(report("privacy", "--zones", strict, gateway.access_log))
    assert sorted((r[3], r[4]) for r in found) == [("openai", "us-east-1"), ("openai", "us-east-1")]


def test_collector_example_is_a_valid_envoy_config():
    from conftest import ENVOY

    example = ROOT / "envoy" / "examples" / "audit-to-collector.yaml"
    out = subprocess.run([str(ENVOY), "--mode", "validate", "-c", str(example), "-l", "error"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout + out.stderr


@pytest.mark.parametrize("modules", ["one", "separate"])
def test_only_listed_tenants_get_their_own_label(fresh_gateway_factory, modules):
    """`metrics.tenant_labels` lists acme and tiny: beta's calls count as `other`, never under
    its own name (the label set stays bounded), and acme's under its own."""
    gw = fresh_gateway_factory(modules=modules)
    for key in (DEMO_KEYS["beta"], DEMO_KEYS["beta"], DEMO_KEYS["acme"]):
        r = gw.chat("hi", key=key)
        assert r.status_code == 200, r.text
    m = scrape_once(gw, "aigw_tenant_requests_total", 3)
    assert metric(m, "aigw_tenant_requests_total", tenant="other", outcome="ok") == 2
    assert metric(m, "aigw_tenant_requests_total", tenant="acme", outcome="ok") == 1
    assert metric(m, "aigw_tenant_requests_total", tenant="beta") == 0
    assert metric(m, "aigw_tenant_tokens_total", tenant="other", token_type="output") > 0
    assert not any(("tenant", "beta") in labels for (_, labels) in m)
