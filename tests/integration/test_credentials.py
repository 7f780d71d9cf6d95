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
        [str(KEYGEN), "--id", "minted-1", "--tenant", "gamma", "--features", "search", "--json"],
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
    with gw.client.stream("POST", "/v1/chat/completions", headers={"authorization": f"Bearer {acme}"},
                          json={"model": "chat", "stream": True, "messages": [{"role": "user", "content": "s"}]}) as r:
        seen.append(json.dumps(dict(r.headers)))
        seen.append("".join(r.iter_text()))
    gw.audit(json.loads(seen[0])["x-aigw-request-id"])  # records flushed
    import time
    time.sleep(0.3)
    text = "\n".join(seen) + gw.access_log.read_text() + gw.envoy_log.read_text()
    assert len(gw.audit_lines()) == 11
    for secret in [*PROVIDER_KEYS.values(), *DEMO_KEYS.values()]:
        assert secret not in text, f"a key leaked: {secret[:8]}…"


def test_a_rejected_provider_credential_is_skipped_in_favour_of_the_next(fresh_gateway_factory):
    from conftest import PROVIDER_KEYS

    stale = "sk-ant-stale-rotated-out-0000"

    def edit(text):
        text = text.replace("host_env_keys: [OPENAI_API_KEY, ANTHROPIC_API_KEY]",
                            "host_env_keys: [OPENAI_API_KEY, ANTHROPIC_API_KEY, ANTHROPIC_API_KEY_STALE]")
        return text.replace('"anthropic": {"api": "anthropic", "key_env": "ANTHROPIC_API_KEY"}',
                            '"anthropic": {"api": "anthropic", "credentials": ['
                            '{"name": "stale", "key_env": "ANTHROPIC_API_KEY_STALE"},'
                            '{"name": "current", "key_env": "ANTHROPIC_API_KEY"}]}')

    gw = fresh_gateway_factory(edit, extra_env={"ANTHROPIC_API_KEY_STALE": stale})
    fp = lambda k: sha(k)[:12]  # noqa: E731

    # 1. The stale key is tried first; Anthropic rejects it, the call moves on and is served.
    first = gw.chat(f"one {uuid.uuid4().hex[:6]}")
    assert first.status_code == 200, first.text
    assert first.headers["x-aigw-provider"] == "openai"
    assert "x-aigw-retry" not in first.headers and "x-aigw-credential" not in first.headers
    [rec] = gw.audit(first.headers["x-aigw-request-id"])
    assert [(a["provider"], a["status"], a["error_class"], a["credential"]) for a in rec["attempts"]] == [
        ("anthropic", 401, "auth", fp(stale)), ("openai", 200, None, fp(PROVIDER_KEYS["openai"]))]

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
