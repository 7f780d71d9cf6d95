"""SQL over the audit log (scripts/audit-sql, DuckDB over the JSON lines): each shipped query in
reports/ run on the audit log of the observability module's mixed run, checked against
aigw-report's figures and against the records themselves."""

import json
import subprocess
from collections import Counter, defaultdict
from decimal import Decimal

from conftest import ROOT, access_log_records
from test_observability import report, run, table_rows  # noqa: F401  (the module's mixed run)

AUDIT_SQL = ROOT / "scripts" / "audit-sql"


def sql(query, *logs, zones=None):
    args = [str(AUDIT_SQL), "--format", "json", *(["--zones", str(zones)] if zones else []), query, *map(str, logs)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_spend_matches_aigw_report_to_the_picodollar(gateway, run):
    rows = sql("spend", gateway.access_log)
    assert rows and all(set(r) >= {"period", "tenant", "feature", "agent", "cost_usd"} for r in rows)
    summed = defaultdict(lambda: [0, 0, 0, Decimal(0), 0])
    for r in rows:  # over agents
        s = summed[(r["period"], r["tenant"], r["feature"])]
        for i, k in enumerate(("calls", "input_tokens", "output_tokens")):
            s[i] += int(r[k])
        s[3] += Decimal(r["cost_usd"])
        s[4] += int(r["unpriced_calls"])
    want = {tuple(r[:3]): r[3:] for r in table_rows(report("spend", "--by", "tenant,feature", "--period", "month",
                                                             gateway.access_log))}
    assert set(summed) == set(want)
    for key, (calls, inp, outp, cost, unpriced) in summed.items():
        w = want[key]
        assert [calls, inp, outp, unpriced] == [int(w[0]), int(w[1]), int(w[2]), int(w[4])], key
        assert cost == Decimal(w[3]), (key, cost, w[3])
    assert sum(c[3] for c in summed.values()) > 0


def test_provider_health_matches_aigw_report(gateway, run):
    got = {r["provider"]: r for r in sql("providers", gateway.access_log)}
    want = {r[0]: r for r in table_rows(report("providers", gateway.access_log))}
    assert set(got) == set(want) == {"anthropic", "openai"}
    for name, w in want.items():
        g = got[name]
        assert [str(g["attempts"]), str(g["errors"]), f"{g['error_rate_pct']:.1f}%", g["errors_by_class"],
                str(g["p50_ms"]), str(g["p95_ms"])] == w[1:], (g, w)


def test_the_privacy_proof_has_zero_rows_and_finds_what_a_stricter_policy_forbids(gateway, run, tmp_path):
    assert sql("privacy", gateway.access_log) == []
    strict = tmp_path / "zones.json"
    strict.write_text(json.dumps({"zones": {"global": ["eu-west-1"], "eu": ["eu-west-1"]}}))
    found = sql("privacy", gateway.access_log, zones=strict)
    want = table_rows(report("privacy", "--zones", strict, gateway.access_log))
    assert sorted((r["request_id"], r["provider"], r["region"], r["why"]) for r in found) == \
        sorted((w[0], w[3], w[4], w[5]) for w in want)
    assert [(r["provider"], r["region"]) for r in found] == [("openai", "us-east-1")] * 2


def test_top_keys_and_refusals_agree_with_the_records(gateway, run):
    records = gateway.audit_lines()
    cost = defaultdict(Decimal)
    for r in records:
        cost[r["key_id"] or "-"] += Decimal(r["cost_usd"] or 0)
    top = sql("top-keys", gateway.access_log)
    assert [(r["key_id"], Decimal(r["cost_usd"])) for r in top] == \
        sorted(cost.items(), key=lambda kv: (-kv[1], kv[0]))
    assert abs(sum(r["share_pct"] or 0 for r in top) - 100) < 0.5

    refusals = {(r["outcome"], r["status"], r["error_code"]): r["calls"] for r in sql("refusals", gateway.access_log)}
    want = Counter((r["outcome"], r["status"], r["error_code"] or "-") for r in records
                   if r["outcome"].startswith("refused_") or r["error_code"])
    assert refusals == dict(want)
    # The run's refusals, by the code their callers got.
    assert refusals[("refused_auth", 401, "invalid_api_key")] == 1
    assert refusals[("refused_quota", 429, "tenant_requests_per_minute")] == 1


def test_ad_hoc_sql_reads_every_field_and_many_logs_as_one(gateway, run, tmp_path):
    # Two replicas' logs holding the same records: one snapshot of the live log's whole lines
    # (Envoy may be flushing it as the test reads), copied twice.
    text = gateway.access_log.read_bytes()
    text = text[: text.rfind(b"\n") + 1]
    logs = [tmp_path / "replica1.log", tmp_path / "replica2.log"]
    for log in logs:
        log.write_bytes(text)
    records = access_log_records(logs[0])
    rows = sql("SELECT count(*) AS n, count(DISTINCT request_id) AS ids, sum(len(attempts)) AS a, "
               "max(error_code) AS e FROM audit", *logs)
    n = len(records)
    assert rows == [{"n": 2 * n, "ids": n, "a": rows[0]["a"], "e": rows[0]["e"]}] and rows[0]["e"]
    assert rows[0]["a"] == 2 * sum(len(r["attempts"]) for r in records)
