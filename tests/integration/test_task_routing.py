"""Benchmark-validated routing (README, "Benchmark-validated routing"): a route rule names a task
and a minimum score; the renderer resolves it from envoy/benchmarks.json to the cheapest alias
whose every step meets the score, and says which and why; callers name the task with
x-gateway-task within their key's scope; a changed benchmark table re-resolves the rule on the
next push; `aigw validate` resolves it again and warns about stale entries."""

import json
import subprocess
import sys
import time
import uuid

import pytest
from conftest import DEMO_KEYS, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import aigw_validate  # noqa: E402
import render_envoy  # noqa: E402

SHIPPED = json.loads((ROOT / "envoy" / "benchmarks.json").read_text())


def table(**scores):
    """The shipped table with some summarize scores changed (model=score)."""
    t = json.loads(json.dumps(SHIPPED))
    for model, score in scores.items():
        t["tasks"]["summarize"][model.replace("_", "-")]["score"] = score
    return t


def summarize(gw, key="acme", task="summarize"):
    rid = f"task-{uuid.uuid4()}"
    headers = {"x-request-id": rid}
    if task:
        headers["x-gateway-task"] = task
    r = gw.chat(f"Summarise this ({rid}): the quarterly numbers went up.", key=DEMO_KEYS[key], headers=headers)
    return r, rid


@pytest.fixture
def gw(gateway):
    """conftest's gateway: both layouts (the two gateway filters, and the design card's
    separate modules)."""
    return gateway


def test_a_task_call_goes_to_the_cheapest_alias_that_meets_the_score(gw):
    # Shipped table, summarize at >= 0.8 among chat, chat-openai-first, chat-gemini and
    # chat-bedrock: chat-openai-first (gpt-4o-mini first, then claude-haiku, both >= 0.8) is the
    # cheapest; chat (Claude Sonnet first) qualifies but costs 21x more at the typical call.
    r, rid = summarize(gw)
    assert r.status_code == 200, r.text
    assert r.headers["x-aigw-route"] == "summaries"
    assert r.headers["x-aigw-provider"] == "openai"
    assert r.json()["model"] == "gpt-4o-mini-2024-07-18"
    [rec] = gw.audit(rid)
    assert (rec["task"], rec["route"], rec["alias"], rec["model"]) == (
        "summarize", "summaries", "chat-openai-first", "gpt-4o-mini-2024-07-18")
    # The task header is the gateway's: it never reaches the provider.
    [seen] = gw.provider_requests("openai", containing=rid)
    assert "x-gateway-task" not in json.dumps(seen["headers"]).lower()
    # Without the task, the same call takes the alias it names.
    r, rid = summarize(gw, task=None)
    assert (r.status_code, r.headers["x-aigw-route"], r.headers["x-aigw-provider"]) == (200, "default", "anthropic")
    assert gw.audit(rid)[0]["task"] is None
    # Another task: no rule names it, so the default route.
    r, _ = summarize(gw, task="extract")
    assert (r.status_code, r.headers["x-aigw-route"]) == (200, "default")


def test_a_task_outside_the_keys_scope_is_refused(gw):
    # demo-beta lists no tasks: it may name none (as with features).
    r, rid = summarize(gw, key="beta")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "task_not_in_scope"
    [rec] = gw.audit(rid)
    assert (rec["outcome"], rec["error_code"]) == ("refused_auth", "task_not_in_scope")
    r, _ = summarize(gw, task="translate")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "task_not_in_scope")


def test_a_changed_benchmark_table_re_resolves_the_rule_on_push(fresh_gateway_factory, tmp_path):
    gw = fresh_gateway_factory()
    r, _ = summarize(gw)
    assert r.headers["x-aigw-provider"] == "openai"
    # A new evaluation run: Claude Haiku (chat-openai-first's fallback) now scores below 0.8, so
    # that chain no longer meets the score; chat-gemini (Gemini 2.5 Flash, then gpt-4o-mini) is
    # now the cheapest that does. The operator pushes, as the README says.
    new = tmp_path / "benchmarks.json"
    new.write_text(json.dumps(table(claude_haiku_4_5_20251001=0.74)))
    before = gw.reloads()
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_envoy.py"), "--push", str(gw.ecds_dir),
                          f"BENCHMARKS_FILE={new}"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # Which alias and why, printed by the push.
    assert "rule 'summaries' (task summarize, min_score 0.8) -> alias 'chat-gemini'" in out.stderr
    assert "not qualifying: 'chat-openai-first': claude-haiku-4-5-20251001 scores 0.74 < 0.8" in out.stderr
    assert "also qualifying, dearer: 'chat' (claude-sonnet-4-5-20250929" in out.stderr
    name = f"http_filter.{gw.filter_name('route_select')}"
    deadline = time.time() + 10
    while gw.reloads().get(name, 0) <= before.get(name, 0):
        assert time.time() < deadline, gw.reloads()
        time.sleep(0.05)
    r, rid = summarize(gw)
    assert r.status_code == 200, r.text
    assert (r.headers["x-aigw-route"], r.headers["x-aigw-provider"]) == ("summaries", "gemini")
    assert gw.audit(rid)[0]["alias"] == "chat-gemini"
    # A table under which nothing qualifies is refused; the running rule stays as it was.
    none = tmp_path / "none.json"
    none.write_text(json.dumps(table(gpt_4o_mini_2024_07_18=0.5)))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_envoy.py"), "--push", str(gw.ecds_dir),
                          f"BENCHMARKS_FILE={none}"], capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "no alias meets min_score 0.8 on 'summarize'" in out.stderr
    assert "'chat-gemini': gpt-4o-mini-2024-07-18 scores 0.5 < 0.8" in out.stderr
    assert summarize(gw)[0].headers["x-aigw-provider"] == "gemini"


def rendered(tmp_path, bench=None, name="envoy.json"):
    values = {"ACCESS_LOG": str(tmp_path / "audit.log")}
    if bench:
        values["BENCHMARKS_FILE"] = str(bench)
    cfg = render_envoy.combine(render_envoy.load(render_envoy.render(values), quiet=True))
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return str(path)


def test_the_validator_resolves_again_warns_of_stale_entries_and_of_a_stale_resolution(tmp_path):
    path = rendered(tmp_path)
    ps = aigw_validate.validate([path], now="2026-12-01T00:00:00Z", run_envoy=False)
    [note] = [p for p in ps if p["severity"] == "note"]
    assert note["path"].endswith("configuration.route.rules[1]")
    assert "-> alias 'chat-openai-first'" in note["message"] and "USD 0.00063 per typical call" in note["message"]
    assert not [p for p in ps if "benchmark" in p["message"] and p["severity"] != "note"]
    # Five months on, every entry is older than max_age_days (120): each is warned about.
    ps = aigw_validate.validate([path], now="2027-05-01T00:00:00Z", run_envoy=False)
    stale = [p for p in ps if p["severity"] == "warning" and "days old" in p["message"]]
    assert len(stale) == sum(len(m) for m in SHIPPED["tasks"].values())
    assert any(p["path"] == "tasks.summarize.gpt-4o-mini-2024-07-18" and "180 days old" in p["message"]
               for p in stale), stale
    # The table changed after the configuration was rendered: the validator says so.
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(table(claude_haiku_4_5_20251001=0.74)))
    ps = aigw_validate.validate([path], now="2026-12-01T00:00:00Z", run_envoy=False, bench_path=str(newer))
    [warn] = [p for p in ps if "re-render and push" in p["message"]]
    assert warn["severity"] == "warning" and "to 'chat-gemini'" in warn["message"]
    # A table under which no alias qualifies is an error.
    none = tmp_path / "none.json"
    none.write_text(json.dumps(table(gpt_4o_mini_2024_07_18=0.5)))
    ps = aigw_validate.validate([path], now="2026-12-01T00:00:00Z", run_envoy=False, bench_path=str(none))
    assert [p for p in ps if p["severity"] == "error" and "no alias meets min_score" in p["message"]]
