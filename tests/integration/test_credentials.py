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
