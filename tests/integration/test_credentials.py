"""Credential plane: the gateway-key lifecycle through the real Envoy."""

import hashlib
import json
import subprocess
import uuid

from conftest import ROOT

KEYGEN = ROOT / "target" / "release" / "aigw-keygen"


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


def test_minted_key_works_and_revoked_expired_future_keys_get_their_own_401(fresh_gateway_factory):
    minted = json.loads(subprocess.run(
        [str(KEYGEN), "--id", "minted-1", "--tenant", "gamma", "--features", "search", "--workload-class", "batch",
         "--json"],
        capture_output=True, text=True, check=True).stdout)
    assert minted["key"].startswith("aigw_sk_")
    extra = [
        minted["entry"],
        {"id": "old", "tenant": "gamma", "sha256": sha("aigw_sk_revoked-one"), "status": "revoked"},
        {"id": "done", "tenant": "gamma", "sha256": sha("aigw_sk_expired-one"), "not_after": "2020-01-01T00:00:00Z"},
        {"id": "later", "tenant": "gamma", "sha256": sha("aigw_sk_future-one"), "not_before": "2999-01-01"},
    ]
    add = ",".join(json.dumps(e) for e in extra)
    gw = fresh_gateway_factory(lambda text: text.replace('{"keys": [', '{"keys": [' + add + ",", 1))

    msg = f"minted {uuid.uuid4().hex[:8]}"
    ok = gw.chat(msg, key=minted["key"], headers={"x-gateway-feature": "search"})
    assert ok.status_code == 200, ok.text
    [rec] = gw.audit(ok.headers["x-aigw-request-id"])
    assert (rec["tenant"], rec["key_id"], rec["feature"]) == ("gamma", "minted-1", "search")
    assert rec["workload_class"] == "batch"  # carried by the key, never by the caller
    assert rec["key_fingerprint"] == sha(minted["key"])[:12]
    assert minted["key"] not in gw.access_log.read_text()

    for key, code, key_id in [("aigw_sk_revoked-one", "revoked_api_key", "old"),
                              ("aigw_sk_expired-one", "expired_api_key", "done"),
                              ("aigw_sk_future-one", "api_key_not_yet_valid", "later"),
                              ("aigw_sk_never-issued", "invalid_api_key", None)]:
        msg = f"refused {uuid.uuid4().hex[:8]}"
        r = gw.chat(msg, key=key)
        assert r.status_code == 401, (key, r.text)
        err = r.json()["error"]
        assert err["code"] == code
        # No hint about other keys: no tenant, key id or digest in the message.
        for other in ("gamma", "minted-1", "old", "done", "later", sha(key)[:12]):
            assert other not in err["message"], (other, err)
        assert gw.provider_requests("anthropic", containing=msg) == []
        assert gw.provider_requests("openai", containing=msg) == []
        [rec] = gw.audit(r.headers["x-aigw-request-id"])
        assert rec["outcome"] == "refused_auth"
        # A known key is named in the audit record (by id and fingerprint, never the key).
        assert rec["key_id"] == key_id and rec["tenant"] == ("gamma" if key_id else None)


def test_no_key_leaks_into_responses_logs_or_audit_lines(fresh_gateway_factory):
    from conftest import DEMO_KEYS, PROVIDER_KEYS

    gw = fresh_gateway_factory()
    seen = []

    def keep(r):
        seen.append(json.dumps(dict(r.headers)))
        seen.append(r.text)

    acme = DEMO_KEYS["acme"]
    keep(gw.chat("plain"))
    keep(gw.chat("via openai", model="chat-openai-first"))
    keep(gw.chat("fallback", headers={"x-fake-fault": "anthropic=529"}))
    keep(gw.chat("all fail", headers={"x-fake-fault": "*=503"}))
    keep(gw.chat("provider 500", headers={"x-fake-fault": "anthropic=500,openai=500"}))
    keep(gw.chat("bad key", key="aigw_sk_" + acme))  # a wrong key that contains a real one
    keep(gw.chat("no key", key=None))
    keep(gw.chat("scope", headers={"x-gateway-feature": "billing"}))
    keep(gw.chat("unknown model", model="gpt-17"))
    keep(gw.chat("x-api-key style", key=None, headers={"x-api-key": acme}))
    for alias in ("chat-azure", "chat-gemini", "chat-bedrock"):
        keep(gw.chat(f"via {alias}", model=alias))
    with gw.client.stream("POST", "/v1/chat/completions", headers={"authorization": f"Bearer {acme}"},
                          json={"model": "chat", "stream": True, "messages": [{"role": "user", "content": "s"}]}) as r:
        seen.append(json.dumps(dict(r.headers)))
        seen.append("".join(r.iter_text()))
    gw.audit(json.loads(seen[0])["x-aigw-request-id"])  # records flushed
    import time
    time.sleep(0.3)
    text = "\n".join(seen) + gw.access_log.read_text() + gw.envoy_log.read_text()
    assert len(gw.audit_lines()) == 14
    from conftest import PROVIDER_ENV
    for secret in [*PROVIDER_KEYS.values(), *PROVIDER_ENV.values(), *DEMO_KEYS.values()]:
        assert secret not in text, f"a key leaked: {secret[:8]}…"


def test_a_rejected_provider_credential_is_skipped_in_favour_of_the_next(fresh_gateway_factory):
    from conftest import PROVIDER_ENV, PROVIDER_KEYS

    stale = "sk-ant-stale-rotated-out-0000"

    def edit(text):
        return text.replace('"anthropic": {"api": "anthropic", "key_env": "ANTHROPIC_API_KEY"}',
                            '"anthropic": {"api": "anthropic", "credentials": ['
                            '{"name": "stale", "key_env": "ANTHROPIC_API_KEY_STALE"},'
                            '{"name": "current", "key_env": "ANTHROPIC_API_KEY"}]}')

    gw = fresh_gateway_factory(edit, extra_env={"ANTHROPIC_API_KEY_STALE": stale},
                               values={"PROVIDER_ENV_KEYS": ", ".join([*PROVIDER_ENV, "ANTHROPIC_API_KEY_STALE"])})
    fp = lambda k: sha(k)[:12]  # noqa: E731

    # 1. The stale key is tried first; Anthropic rejects it. A 401 is not a fallback trigger, so
    #    this call fails, as a 502 that says the gateway's credential (not the caller's key) was
    #    refused.
    msg = f"one {uuid.uuid4().hex[:6]}"
    first = gw.chat(msg)
    assert first.status_code == 502, first.text
    err = first.json()["error"]
    assert err["code"] == "upstream_authentication" and "Your key is fine" in err["message"]
    assert "x-aigw-credential" not in first.headers
    assert gw.provider_requests("openai", containing=msg) == []
    [rec] = gw.audit(first.headers["x-aigw-request-id"])
    assert [(a["provider"], a["status"], a["error_class"], a["credential"]) for a in rec["attempts"]] == [
        ("anthropic", 401, "auth", fp(stale))]

    # 2. From now on every worker skips it (the mark is in shared data): Anthropic serves with
    #    the current key. Each call on a new connection, so the calls spread over both workers.
    import httpx

    for _ in range(4):
        with httpx.Client(base_url=gw.url, timeout=20) as fresh:
            r = fresh.post("/v1/chat/completions", headers={"authorization": "Bearer aigw-demo-key-acme"},
                           json={"model": "chat", "messages": [{"role": "user", "content": f"next {uuid.uuid4().hex[:6]}"}]})
        assert r.status_code == 200 and r.headers["x-aigw-provider"] == "anthropic", r.text
        [rec] = gw.audit(r.headers["x-aigw-request-id"])
        assert [a["credential"] for a in rec["attempts"]] == [fp(PROVIDER_KEYS["anthropic"])]
    keys_sent = [q["headers"]["x-api-key"] for q in gw.provider_requests("anthropic")]
    assert keys_sent == [stale] + [PROVIDER_KEYS["anthropic"]] * 4

    log = gw.envoy_log.read_text()
    assert 'rejected credential "stale"' in log and stale not in log
    assert stale not in gw.access_log.read_text()


def test_rotation_of_gateway_and_provider_keys_under_steady_load_with_no_restart(fresh_gateway_factory):
    """Provider key: the provider issues the next key, the gateway is pushed the next key
    (first) and the current one, the provider revokes the old one, the gateway is pushed the next
    key alone. Gateway key: a new key is pushed, callers switch to it, the old one is pushed as
    revoked. Calls run all along; none may fail, none may be served by a fallback provider."""
    import threading
    import time

    import httpx
    from conftest import DEMO_KEYS, PROVIDER_KEYS

    old_provider, next_provider = PROVIDER_KEYS["anthropic"], "sk-ant-fake-next-5e6f7a"
    gw = fresh_gateway_factory(extra_env={"ANTHROPIC_API_KEY_NEXT": next_provider})
    anthropic_keys = f"{gw.fakes['anthropic']}/__fake/keys"
    new_gateway_key = "aigw_sk_rotated-acme-2026-12"
    caller_key = {"key": DEMO_KEYS["acme"]}
    results, stop = [], threading.Event()

    def load():
        with httpx.Client(base_url=gw.url, timeout=20) as c:
            while not stop.is_set():
                r = c.post("/v1/chat/completions",
                           headers={"authorization": f"Bearer {caller_key['key']}"},
                           json={"model": "chat", "messages": [{"role": "user", "content": "rotate"}]})
                results.append((r.status_code, r.headers.get("x-aigw-provider"), r.headers.get("x-aigw-request-id")))
                time.sleep(0.02)  # steady, and under the demo tenant's 600 a minute

    workers = [threading.Thread(target=load) for _ in range(3)]
    for t in workers:
        t.start()
    current = '"anthropic": {"api": "anthropic", "key_env": "ANTHROPIC_API_KEY"}'
    both = ('"anthropic": {"api": "anthropic", "credentials": [{"name": "next", "key_env": "ANTHROPIC_API_KEY_NEXT"},'
            ' {"name": "current", "key_env": "ANTHROPIC_API_KEY"}]}')
    only_next = '"anthropic": {"api": "anthropic", "credentials": [{"name": "next", "key_env": "ANTHROPIC_API_KEY_NEXT"}]}'
    new_entry = json.dumps({"id": "acme-2026-12", "tenant": "acme", "zone": "global", "sha256": sha(new_gateway_key),
                            "features": ["search", "support-bot"], "agents": ["*"]})
    add_key = lambda t: t.replace('{"keys": [', '{"keys": [' + new_entry + ",", 1)  # noqa: E731
    revoke_old = lambda t: add_key(t).replace('{"id": "demo-acme",', '{"id": "demo-acme", "status": "revoked",', 1)  # noqa: E731
    try:
        time.sleep(0.5)
        httpx.put(anthropic_keys, json=[old_provider, next_provider], timeout=5).raise_for_status()
        gw.push(lambda t: add_key(t.replace(current, both)))
        time.sleep(0.5)
        caller_key["key"] = new_gateway_key  # callers move to the new gateway key
        httpx.put(anthropic_keys, json=[next_provider], timeout=5).raise_for_status()  # old one revoked
        time.sleep(0.3)
        gw.push(lambda t: revoke_old(t.replace(current, only_next)))
        time.sleep(0.5)
    finally:
        stop.set()
        for t in workers:
            t.join()
    assert len(results) > 30
    assert all(status == 200 for status, _, _ in results), [r for r in results if r[0] != 200][:5]
    assert {provider for _, provider, _ in results} == {"anthropic"}  # no call needed a fallback
    # The provider saw both keys in turn, and only the next key at the end.
    seen = [r["headers"]["x-api-key"] for r in gw.provider_requests("anthropic", containing="rotate")]
    assert seen[0] == old_provider and seen[-1] == next_provider and set(seen) == {old_provider, next_provider}
    # The old gateway key is revoked now; the new one works.
    old = gw.chat("after", key=DEMO_KEYS["acme"])
    assert old.status_code == 401 and "revoked" in old.json()["error"]["message"]
    assert gw.chat("after", key=new_gateway_key).status_code == 200
    # Nothing was restarted: one Envoy process, and its filters took the pushes.
    assert gw.envoy.poll() is None
    assert gw.reloads()[f"http_filter.{gw.filter_name('auth_key_swap')}"] >= 3
