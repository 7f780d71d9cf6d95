use super::*;
use crate::auth::keys::digest_hex;
use crate::host::FakeHost;

const NOW: u64 = 1_800_000_000_000;

fn ring() -> KeyRing {
    let cfg: AuthConfig = crate::config::from_str(&format!(
        r#"{{"keys": [
            {{"id": "k-acme", "tenant": "acme", "zone": "eu", "sha256": "{}", "features": ["search"], "agents": ["helper"], "tasks": ["summarize"], "aliases": ["chat"]}},
            {{"id": "k-old", "tenant": "old", "sha256": "{}", "status": "revoked"}},
            {{"id": "k-late", "tenant": "late", "sha256": "{}", "not_after": "2020-01-01"}}]}}"#,
        digest_hex("aigw_sk_acme"),
        digest_hex("aigw_sk_old"),
        digest_hex("aigw_sk_late")
    ))
    .unwrap();
    compile_keys(&cfg).unwrap()
}

fn call(headers: &[(&str, &str)]) -> FakeHost {
    let h = FakeHost::new().with_request_header(":path", "/v1/chat/completions");
    h.now.set(NOW);
    for (k, v) in headers {
        h.request_headers.borrow_mut().push((k.to_string(), v.to_string()));
    }
    h
}

fn error_code(h: &FakeHost) -> (u16, String) {
    let r = h.reply().unwrap();
    let v: crate::wire::tree::Value = crate::wire::from_slice(&r.body).unwrap();
    (r.status, v["error"]["code"].as_str().unwrap_or_default().to_string())
}

#[test]
fn a_good_key_becomes_the_identity_and_leaves_no_credential_behind() {
    let h = call(&[
        ("authorization", "Bearer aigw_sk_acme"),
        ("x-api-key", "sk-ant-callers-own"),
        ("x-aigw-chain", "chain_evil"),
        ("x-gateway-feature", "search"),
        ("x-gateway-agent", "helper"),
        ("x-gateway-task", "summarize"),
    ]);
    let id = authenticate(&h, &ring()).unwrap();
    assert_eq!(
        (id.tenant.as_str(), id.feature.as_deref(), id.agent.as_deref(), id.task.as_deref()),
        ("acme", Some("search"), Some("helper"), Some("summarize"))
    );
    assert!(h.reply().is_none());
    let left: Vec<String> = h.request_headers().into_iter().map(|(k, _)| k).collect();
    assert_eq!(left, vec![":path".to_string()]);
    let stored = CallIdentity::parse(&h.property(&[headers::PROP_IDENTITY]).unwrap()).unwrap();
    assert_eq!(stored, id);
    assert_eq!(stored.alias_scope, "chat");
}

#[test]
fn every_refusal_is_a_401_or_403_with_its_own_code() {
    for (headers, status, code) in [
        (vec![], 401, "missing_api_key"),
        (vec![("authorization", "Basic abc")], 401, "missing_api_key"),
        (vec![("authorization", "Bearer\u{e9}x")], 401, "missing_api_key"),
        (vec![("authorization", "Bearer nope")], 401, "invalid_api_key"),
        (vec![("x-api-key", "aigw_sk_old")], 401, "revoked_api_key"),
        (vec![("api-key", "aigw_sk_late")], 401, "expired_api_key"),
        (vec![("authorization", "Bearer aigw_sk_acme"), ("x-gateway-feature", "billing")], 403, "feature_not_in_scope"),
        (vec![("authorization", "Bearer aigw_sk_acme"), ("x-gateway-agent", "bot")], 403, "agent_not_in_scope"),
        (vec![("authorization", "Bearer aigw_sk_acme"), ("x-gateway-task", "translate")], 403, "task_not_in_scope"),
    ] {
        let h = call(&headers);
        assert!(authenticate(&h, &ring()).is_err(), "{headers:?}");
        assert_eq!(error_code(&h), (status, code.to_string()), "{headers:?}");
        assert_eq!(h.property_string(&[headers::PROP_REFUSAL]).as_deref(), Some("auth"));
    }
    // A known key that may not be used now still names its owner for the audit record.
    let h = call(&[("x-api-key", "aigw_sk_old")]);
    let _ = authenticate(&h, &ring());
    let id = CallIdentity::parse(&h.property(&[headers::PROP_IDENTITY]).unwrap()).unwrap();
    assert_eq!(id.tenant, "old");
    // An unknown key names nobody.
    let h = call(&[("x-api-key", "aigw_sk_who")]);
    let _ = authenticate(&h, &ring());
    assert!(h.property(&[headers::PROP_IDENTITY]).is_none());
}

#[test]
fn refusals_on_the_messages_door_are_in_anthropics_shape() {
    let h = FakeHost::new().with_request_header(":path", "/v1/messages?beta=true");
    assert!(authenticate(&h, &ring()).is_err());
    let r = h.reply().unwrap();
    let v: crate::wire::tree::Value = crate::wire::from_slice(&r.body).unwrap();
    assert_eq!(
        (r.status, v["type"].as_str(), v["error"]["type"].as_str()),
        (401, Some("error"), Some("authentication_error"))
    );
}

fn plane() -> CredentialPlane {
    let cfg: AuthConfig = crate::config::from_str(
        r#"{"providers": {
            "openai": {"api": "openai", "key_env": "OPENAI"},
            "anthropic": {"api": "anthropic", "credentials": [
                {"name": "eu", "key_env": "ANT_EU", "region": "eu-west-1"},
                {"name": "main", "key_env": "ANT_MAIN"},
                {"name": "spare", "key_env": "ANT_SPARE"}]},
            "gemini": {"api": "gemini", "key_env": "GEM"},
            "azure": {"api": "azure", "key_env": "AZ"},
            "bedrock": {"api": "bedrock", "key_env": "AWS_ID", "secret_env": "AWS_SECRET"}},
           "bad_credential_ttl_s": 60}"#,
    )
    .unwrap();
    let env = |n: &str| Some(format!("key-of-{n}"));
    compile_credentials(cfg, &env).unwrap()
}

#[test]
fn each_provider_gets_its_own_scheme_and_no_earlier_credential() {
    let p = plane();
    for (provider, header, value) in [
        ("openai", "authorization", "Bearer key-of-OPENAI"),
        ("anthropic", "x-api-key", "key-of-ANT_MAIN"),
        ("gemini", "x-goog-api-key", "key-of-GEM"),
        ("azure", "api-key", "key-of-AZ"),
    ] {
        // The request still carries the caller's key and an earlier attempt's credential.
        let h = call(&[("authorization", "Bearer callers"), ("x-api-key", "earlier"), ("x-goog-api-key", "earlier")]);
        let used = inject(&h, &p, provider, Some("us-east-1"), false).unwrap();
        assert_eq!(used.provider, provider);
        let auth: Vec<(String, String)> =
            h.request_headers().into_iter().filter(|(k, _)| PROVIDER_AUTH_HEADERS.contains(&k.as_str())).collect();
        assert_eq!(auth, vec![(header.to_string(), value.to_string())], "{provider}");
    }
    // A region-bound credential serves its region first.
    let h = call(&[]);
    inject(&h, &p, "anthropic", Some("eu-west-1"), false).unwrap();
    assert_eq!(h.request_header("x-api-key").as_deref(), Some("key-of-ANT_EU"));
    // No credential for an unknown provider: none is sent, and it is logged.
    let h = call(&[("authorization", "Bearer callers")]);
    assert!(inject(&h, &p, "mistral", None, false).is_none());
    assert!(h.request_header("authorization").is_none() && !h.logs.borrow().is_empty());
}

#[test]
fn a_rejected_credential_is_skipped_by_every_worker_until_its_mark_expires() {
    let p = plane();
    let h = call(&[]);
    let used = inject(&h, &p, "anthropic", None, false).unwrap();
    h.response_headers.borrow_mut().push((":status".into(), "401".into()));
    assert_eq!(p.after_answer(&h, &used), 401);
    assert!(h.property(&[headers::PROP_CREDENTIAL]).is_some());
    // Another worker's next call uses the next credential ...
    let other = h.worker();
    other.now.set(NOW + 1_000);
    inject(&other, &p, "anthropic", None, false).unwrap();
    assert_eq!(other.request_header("x-api-key").as_deref(), Some("key-of-ANT_SPARE"));
    // ... until the mark expires.
    other.now.set(NOW + 61_000);
    inject(&other, &p, "anthropic", None, false).unwrap();
    assert_eq!(other.request_header("x-api-key").as_deref(), Some("key-of-ANT_MAIN"));
    // A 200 marks nothing.
    let h = call(&[]);
    let used = inject(&h, &p, "openai", None, false).unwrap();
    h.response_headers.borrow_mut().push((":status".into(), "200".into()));
    assert_eq!(p.after_answer(&h, &used), 200);
    assert!(h.shared.borrow().keys().all(|k| !k.contains("openai")));
}

#[test]
fn bedrock_is_signed_over_the_body_as_sent() {
    let p = plane();
    let h = call(&[(":method", "POST"), (":authority", "bedrock-runtime.us-east-1.amazonaws.com")]);
    h.set_request_header(":path", Some("/model/m/converse"));
    let used = inject(&h, &p, "bedrock", Some("us-east-1"), false).unwrap();
    assert!(h.request_header("authorization").is_none(), "signed only once the body is here");
    p.sign(&h, &used, Some("us-east-1"), br#"{"messages":[]}"#);
    let auth = h.request_header("authorization").unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=key-of-AWS_ID/"), "{auth}");
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"));
    assert!(auth.contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date"));
    assert_eq!(h.request_header("x-amz-content-sha256").unwrap(), sigv4::sha256_hex(br#"{"messages":[]}"#));
}

#[test]
fn credential_config_errors_name_the_problem() {
    let cfg = |j: &str| crate::config::from_str::<AuthConfig>(j).unwrap();
    let none = |_: &str| None;
    let e = compile_credentials(cfg(r#"{"providers": {"openai": {"api": "openai", "key_env": "X"}}}"#), &none);
    let e = e.err().unwrap();
    assert_eq!(e.field, "providers.openai.key_env");
    assert!(e.problem.contains("environment variable X is not set"), "{e}");
    let some = |_: &str| Some("k".to_string());
    let e = compile_credentials(cfg(r#"{"providers": {"bedrock": {"api": "bedrock", "key_env": "X"}}}"#), &some);
    assert_eq!(e.err().unwrap().field, "providers.bedrock.secret_env");
    let listed = r#"{"providers": {"openai": {"api": "openai", "credentials": [
        {"name": "a", "key_env": "A"}, {"name": "b", "key_env": "B", "not_after": "later"}]}}}"#;
    assert_eq!(
        compile_credentials(cfg(listed), &some).err().unwrap().field,
        "providers.openai.credentials[1].not_after"
    );
    let e = compile_credentials(cfg(r#"{"providers": {"openai": {"api": "openai"}}}"#), &some);
    let e = e.err().unwrap();
    assert_eq!(e.field, "providers.openai");
    assert!(e.problem.contains("has no credential"), "{e}");
    let e = compile_keys(&cfg("{}")).unwrap_err();
    assert_eq!(e.to_string(), "auth-key-swap: invalid configuration at `keys`: no gateway keys are configured");
}
