"""`aigw validate` (scripts/aigw, scripts/aigw_validate.py and the aigw-validate checker built from
aigw-core): the shipped configurations pass; each kind of mistake an operator can push is found,
named by file and path; `render_envoy.py --push` refuses a configuration with errors."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import aigw_validate  # noqa: E402
import render_envoy  # noqa: E402

CHAT = '"chat": {"chain": "chain_chat", "steps": ['
NOW = "2026-12-01T00:00:00Z"


def rendered(tmp_path, edit=None, layout="gateway", name="envoy.json"):
    """The template rendered (then edited, as an operator's change), as Envoy would load it."""
    text = render_envoy.render({"LAYOUT": layout, "ACCESS_LOG": str(tmp_path / "audit.log")})
    if edit:
        text = edit(text)
    cfg = render_envoy.load(text, quiet=True)
    if layout == "gateway":
        cfg = render_envoy.combine(cfg)
    path = tmp_path / name
    path.write_text(json.dumps(cfg, indent=1))
    return str(path)


def problems(path, **kw):
    return aigw_validate.validate([path], now=NOW, run_envoy=kw.pop("run_envoy", False), **kw)


def errors(ps):
    return [p for p in ps if p["severity"] == "error"]


def test_every_shipped_configuration_and_example_passes_through_the_command(tmp_path):
    out = subprocess.run([str(ROOT / "scripts" / "aigw"), "validate", "--json", "--now", NOW],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    found = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert all(p["severity"] in ("warning", "note") for p in found)
    # The demo's task rule, resolved again from envoy/benchmarks.json: a note in each layout.
    assert sum(p["severity"] == "note" and "rule 'summaries'" in p["message"] for p in found) == 2, found
    # The demo's zones list real regions its fakes are not in: warned, named by path.
    assert any(p["path"].endswith("route.zones.in") and "ap-south-1" in p["message"] for p in found), found


@pytest.mark.parametrize("layout", ["gateway", "filters"])
def test_an_unpriced_model_a_chain_reaches_is_an_error_unless_allowed(tmp_path, layout):
    edit = lambda t: t.replace('"model": "claude-sonnet-4-5-20250929"}', '"model": "claude-unpriced-9"}', 1)  # noqa: E731
    path = rendered(tmp_path, edit, layout)
    es = errors(problems(path))
    assert len(es) == 1, es
    assert es[0]["file"] == path and es[0]["path"].endswith(".aliases.chat.steps[0].model")
    assert "claude-unpriced-9" in es[0]["message"] and "price book" in es[0]["message"]
    assert errors(problems(path, allow_unpriced=["claude-unpriced-9"])) == []
    # The demo's fake embedder is unpriced on purpose: envoy/validate.json says so, and why.
    without_policy = errors(aigw_validate.validate([path], now=NOW, run_envoy=False, policy=None,
                                                   allow_unpriced=["claude-unpriced-9"]))
    assert without_policy and all("fake-ngram-embed" in p["message"] for p in without_policy)


def test_a_retired_model_needs_a_live_successor_which_must_be_priced(tmp_path):
    def edit(t):
        assert '"zones": {"' in t
        return t.replace('"zones": {"', '"deprecations": {"claude-sonnet-4-5-20250929": {"sunset": "2026-11-01", '
                                        '"successor": ""}, "gpt-4o-mini-2024-07-18": {"sunset": "2026-11-02", '
                                        '"successor": "gpt-9-unpriced"}}, "zones": {"', 1)
    es = errors(problems(rendered(tmp_path, edit)))
    by_path = {p["path"].split("configuration.")[-1]: p["message"] for p in es}
    assert "retired on 2026-11-01 and has no successor" in by_path["route.deprecations.claude-sonnet-4-5-20250929.successor"]
    assert any("gpt-9-unpriced" in m for m in by_path.values()), by_path
    # Before the sunset, no error.
    assert errors(aigw_validate.validate([rendered(tmp_path, edit)], now="2026-10-01T00:00:00Z", run_envoy=False)) \
        == [p for p in es if "gpt-9-unpriced" in p["message"]]


def test_keys_expired_or_not_yet_valid_are_warned_and_a_duplicate_digest_is_an_error(tmp_path):
    def edit(t):
        t = t.replace('{"id": "demo-tiny", "tenant": "tiny",',
                      '{"id": "demo-tiny", "not_after": "2026-11-15", "tenant": "tiny",', 1)
        return t.replace('{"id": "demo-beta", "tenant": "beta",',
                         '{"id": "demo-beta", "not_before": "2027-01-01", "tenant": "beta",', 1)
    ps = problems(rendered(tmp_path, edit))
    assert errors(ps) == []
    warned = {p["path"].split("configuration.")[-1]: p["message"] for p in ps}
    assert "expired on 2026-11-15" in warned["auth.keys[1].not_after"]
    assert "not valid until 2027-01-01" in warned["auth.keys[2].not_before"]
    dup = rendered(tmp_path, lambda t: t.replace('"sha256": "' + render_envoy.render({}).split(
        '"id": "demo-tiny", "tenant": "tiny", "zone": "eu", "sha256": "')[1].split('"')[0] + '"',
        '"sha256": "' + "ab" * 32 + '"'), name="dup.json")
    assert errors(problems(dup)) == []  # (the edit replaced one digest: no duplicate yet)
    text = open(dup).read()
    acme = json.loads(text)
    g = next(f for f in acme["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
             ["http_filters"] if f["name"] == "aigw.gateway")
    conf = json.loads(g["typed_config"]["config"]["configuration"]["value"])
    conf["auth"]["keys"][2]["sha256"] = conf["auth"]["keys"][1]["sha256"]
    g["typed_config"]["config"]["configuration"]["value"] = json.dumps(conf)
    (tmp_path / "dup.json").write_text(json.dumps(acme))
    es = errors(problems(str(tmp_path / "dup.json")))
    assert len(es) == 1 and es[0]["path"].endswith("configuration.auth.keys[2].sha256"), es
    assert "the same digest is configured twice" in es[0]["message"]


def test_zones_are_checked_against_the_endpoints_regions(tmp_path):
    # A typo in a zone's region (eu-west-1, where the demo's Anthropic endpoint is): a warning,
    # and the EU key is warned that `chat` (Anthropic, then OpenAI in us-east-1) can no longer
    # serve it, while `chat-eu` (Azure in westeurope) still can.
    edit = lambda t: t.replace('"eu-west-1"', '"eu-wset-1"', 1)  # noqa: E731
    ps = problems(rendered(tmp_path, edit))
    zone_warnings = [p for p in ps if p["severity"] == "warning" and "eu-wset-1" in p["message"]]
    assert zone_warnings and zone_warnings[0]["path"].endswith("route.zones.eu"), ps
    key = [p for p in ps if p["path"].endswith("auth.keys[1].zone")]
    assert key and "may use chat," in key[0]["message"] and "always refused" in key[0]["message"], key
    assert "chat-eu" not in key[0]["message"]
    before = [p for p in problems(rendered(tmp_path, name="before.json")) if p["path"].endswith("auth.keys[1].zone")]
    assert before and "may use chat," not in before[0]["message"]


def test_quota_limits_that_can_never_admit_a_call_are_errors(tmp_path):
    def edit(t):
        return (t.replace('"tiny":{"requests_per_minute":3,', '"tiny":{"requests_per_minute":3,"tokens_per_minute":500,', 1)
                 .replace('"daily_usd":"1.00"', '"daily_usd":"0.000001"', 1))
    es = errors(problems(rendered(tmp_path, edit)))
    paths = {p["path"].split("configuration.")[-1]: p["message"] for p in es}
    assert "tokens burst of 500 can never admit a call" in paths["quota.tenants.tiny.tokens_burst"]
    assert "daily budget of USD 0.000001" in paths["quota.tenants.tiny.budget.daily_usd"]
    assert len(es) == 2, es


def test_what_the_filters_refuse_is_an_error_named_by_path(tmp_path):
    edit = lambda t: t.replace(CHAT, '"chat": {"chain": "chain_chat", "canary": {"alias": "nope", "percent": 5}, "steps": [', 1)  # noqa: E731
    for layout in ("gateway", "filters"):
        es = errors(problems(rendered(tmp_path, edit, layout, name=f"{layout}.json")))
        assert es and all(p["path"].endswith("aliases.chat.canary.alias") for p in es), es
        assert '"nope" is not another alias' in es[0]["message"]


def test_a_chain_that_does_not_match_its_cluster_and_an_invalid_bootstrap_are_errors(tmp_path):
    swapped = lambda t: t.replace("clusters: [provider_anthropic, provider_openai]", "clusters: [provider_openai, provider_anthropic]", 1)  # noqa: E731
    es = errors(problems(rendered(tmp_path, swapped)))
    assert any("chain 'chain_chat' tries ['openai', 'anthropic']" in p["message"] for p in es), es
    broken = lambda t: t.replace("connect_timeout: 2s", "connect_timeout: soon", 1)  # noqa: E731
    es = errors(problems(rendered(tmp_path, broken, name="broken.json"), run_envoy=True))
    assert any(p["message"].startswith("envoy --mode validate") for p in es), es


@pytest.mark.parametrize("layout", ["gateway", "filters"])
def test_a_forwarded_header_that_envoy_removes_first_is_an_error(tmp_path, layout):
    # Envoy's request_headers_to_remove runs before the per-attempt filter: a name the operator
    # forwards must not be on it, or it would never reach the provider.
    edit = lambda t: t.replace('"forward_request_headers": ["x-fake-fault"]',  # noqa: E731
                               '"forward_request_headers": ["x-fake-fault", "User-Agent"]', 1)
    es = errors(problems(rendered(tmp_path, edit, layout)))
    assert len(es) == 1 and "'User-Agent'" in es[0]["message"] and "request_headers_to_remove" in es[0]["message"], es
    assert not errors(problems(rendered(tmp_path, None, layout, name="shipped.json")))


@pytest.mark.parametrize("layout", ["gateway", "filters"])
def test_envoy_removes_what_no_one_is_sent_where_the_filters_never_need_it(tmp_path, layout):
    # Envoy's removals only save the per-attempt filter work; placed wrong they would break calls
    # (a response filter before the attempt's would remove nothing it reads; on the request path a
    # removal after it would drop the credential it sets). In every chain: the native
    # header_mutation sits after the gateway's filters and before the codec, and only touches
    # the answer; the virtual host's list never names a header the gateway sets per attempt.
    cfg = json.loads(open(rendered(tmp_path, None, layout)).read())
    chains = [c for c in cfg["static_resources"]["clusters"]
              if c.get("cluster_type", {}).get("name") == "envoy.clusters.aggregate"]
    assert chains
    for c in chains:
        names = [f["name"] for f in c["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]]
        assert names[-2:] == ["envoy.filters.http.header_mutation", "envoy.filters.http.upstream_codec"], names
        assert all(n.startswith("aigw.") for n in names[:-2]), names
        hm = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
            "http_filters"][-2]["typed_config"]["mutations"]
        assert set(hm) == {"response_mutations"}, hm
        removed = [m.get("remove") or m["remove_on_match"]["key_matcher"]["prefix"] for m in hm["response_mutations"]]
        # What the attempt reads of an answer stays: its status, type, request id and Bedrock's.
        for kept in ("content-type", "request-id", "x-request-id", "x-amzn-errortype", "retry-after", "x-aigw-"):
            assert not any(kept.startswith(r) for r in removed), (kept, removed)
    [vh] = [vh for li in cfg["static_resources"]["listeners"] for fc in li["filter_chains"] for nf in fc["filters"]
            for vh in nf.get("typed_config", {}).get("route_config", {}).get("virtual_hosts", [])]
    assert {"authorization", "x-api-key", "x-stainless-lang", "user-agent"} <= set(vh["request_headers_to_remove"])
    assert not {":path", "content-type", "content-length", "x-fake-fault"} & set(vh["request_headers_to_remove"])


def test_a_push_with_errors_is_refused_and_changes_nothing(tmp_path):
    ecds = tmp_path / "ecds"
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_envoy.py"), "--push", str(ecds),
                          'QUOTA_FLEET={"cluster": "aigw_fleet", "expected_replicas": 0}'],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert "refusing to push an invalid configuration" in bad.stderr and "quota.fleet.expected_replicas" in bad.stderr
    assert not ecds.exists()
    good = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_envoy.py"), "--push", str(ecds)],
                          capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    assert sorted(p.name for p in ecds.iterdir()) == ["aigw.gateway.json", "aigw.gateway_upstream.json"]


def test_a_shadowed_alias_needs_a_shadow_key_for_its_candidate_and_a_shadow_budget(tmp_path):
    # Without a key that is a shadow key: every leg would be refused.
    no_key = lambda t: t.replace('"shadow": true, "aliases": ["chat-openai-first"]', '"aliases": ["chat-openai-first"]', 1)  # noqa: E731
    es = errors(problems(rendered(tmp_path, no_key)))
    assert [p["path"].split("configuration.")[-1] for p in es] == ["route.aliases.chat-shadowed.shadow"], es
    assert "no key with \"shadow\": true may use chat-openai-first" in es[0]["message"]
    # The shadow tenant without a daily budget: a warning (legs bounded only by rate limits).
    no_budget = lambda t: t.replace('"shadow":{"budget":{"daily_usd":"5.00","monthly_usd":"50.00","soft_percent":80}}',  # noqa: E731
                                    '"shadow":{"requests_per_minute":100}', 1)
    ps = problems(rendered(tmp_path, no_budget, name="nb.json"))
    assert not errors(ps)
    assert any(p["severity"] == "warning" and "shadow key's tenant \"shadow\" has no daily budget" in p["message"]
               for p in ps), ps
