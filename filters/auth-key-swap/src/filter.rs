use std::collections::HashMap;
use std::rc::Rc;

use aigw_core::credentials::{bad_mark_key, choose, Credential};
use aigw_core::error::GatewayError;
use aigw_core::headers;
use aigw_core::keys::{check_scope, presented_credential, usable_at, CallIdentity, KeyEntry, KeyRing};
use aigw_core::route::Api;
use aigw_core::sigv4;
use aigw_host as host;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use serde::Deserialize;

/// Every header that carries a provider credential or signature; none of a caller's reach a
/// provider, and each attempt starts without the previous attempt's.
const PROVIDER_AUTH_HEADERS: [&str; 7] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    keys: Vec<KeyEntry>,
    #[serde(default)]
    providers: HashMap<String, ProviderConfig>,
    /// How long a credential a provider rejected (401/403) is skipped, in seconds.
    #[serde(default = "default_bad_ttl")]
    bad_credential_ttl_s: u64,
}

fn default_bad_ttl() -> u64 {
    300
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfig {
    api: Api,
    /// Shorthand for one credential: the environment variable (in the Wasm VM's environment)
    /// that holds the key.
    #[serde(default)]
    key_env: Option<String>,
    /// With `key_env`, for Bedrock: the AWS secret access key.
    #[serde(default)]
    secret_env: Option<String>,
    /// Several credentials, tried in order (see `aigw_core::credentials::choose`).
    #[serde(default)]
    credentials: Vec<CredentialConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialConfig {
    name: String,
    /// The key (for Bedrock, the AWS access key id).
    key_env: String,
    /// Bedrock: the AWS secret access key.
    #[serde(default)]
    secret_env: Option<String>,
    /// Bedrock with temporary credentials: the session token.
    #[serde(default)]
    session_token_env: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
}

struct Provider {
    api: Api,
    credentials: Vec<Credential>,
}

enum Role {
    Downstream(KeyRing),
    Upstream { providers: HashMap<String, Provider>, bad_ttl_ms: u64 },
}

fn env(provider: &str, name: &str) -> Result<String, String> {
    std::env::var(name).ok().filter(|k| !k.is_empty()).ok_or_else(|| {
        format!(
            "auth-key-swap: provider {provider:?}: environment variable {name} is not set in the Wasm VM \
             (list it in vm_config.environment_variables.host_env_keys)"
        )
    })
}

fn credential(provider: &str, api: Api, c: CredentialConfig) -> Result<Credential, String> {
    let key = env(provider, &c.key_env)?;
    let secret = c.secret_env.as_deref().map(|n| env(provider, n)).transpose()?;
    let session_token = c.session_token_env.as_deref().map(|n| env(provider, n)).transpose()?;
    if api == Api::Bedrock && secret.is_none() {
        return Err(format!(
            "auth-key-swap: provider {provider:?}: credential {:?} needs `secret_env` (the AWS secret access key) \
             to sign requests",
            c.name
        ));
    }
    let when = |field: &str, v: Option<String>| -> Result<Option<u64>, String> {
        v.map(|s| {
            aigw_core::time::parse_utc_ms(&s).ok_or_else(|| {
                format!(
                    "auth-key-swap: provider {provider:?}: credential {:?}: {field} {s:?} is not a UTC time",
                    c.name
                )
            })
        })
        .transpose()
    };
    Ok(Credential {
        not_before_ms: when("not_before", c.not_before)?,
        not_after_ms: when("not_after", c.not_after)?,
        name: c.name,
        key,
        secret,
        session_token,
        region: c.region,
    })
}

fn compile(root_id: &str, cfg: Config) -> Result<Role, String> {
    match root_id {
        "auth_key_swap" => {
            if cfg.keys.is_empty() {
                return Err("auth-key-swap: no gateway keys configured (`keys` is empty)".into());
            }
            KeyRing::compile(&cfg.keys).map(Role::Downstream).map_err(|e| format!("auth-key-swap: {e}"))
        }
        "auth_key_swap_upstream" => {
            if cfg.providers.is_empty() {
                return Err("auth-key-swap: no provider credentials configured (`providers` is empty)".into());
            }
            let mut providers = HashMap::new();
            for (name, p) in cfg.providers {
                let mut list = p.credentials;
                if let Some(env) = p.key_env {
                    list.insert(
                        0,
                        CredentialConfig {
                            name: "default".into(),
                            key_env: env,
                            secret_env: p.secret_env.clone(),
                            session_token_env: None,
                            region: None,
                            not_before: None,
                            not_after: None,
                        },
                    );
                }
                if list.is_empty() {
                    return Err(format!(
                        "auth-key-swap: provider {name:?} has no credential (`key_env` or `credentials`)"
                    ));
                }
                let credentials =
                    list.into_iter().map(|c| credential(&name, p.api, c)).collect::<Result<Vec<_>, _>>()?;
                providers.insert(name, Provider { api: p.api, credentials });
            }
            Ok(Role::Upstream { providers, bad_ttl_ms: cfg.bad_credential_ttl_s.saturating_mul(1000) })
        }
        other => Err(format!(
            "auth-key-swap: unknown root_id {other:?}; use auth_key_swap (listener) or auth_key_swap_upstream (cluster)"
        )),
    }
}

struct Root {
    role: Option<Rc<Role>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.role = host::configure("auth-key-swap", |cfg| compile(&host::root_id(), cfg)).map(Rc::new);
        self.role.is_some()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn proxy_wasm::traits::HttpContext>> {
        self.role
            .clone()
            .map(|role| Box::new(Stream { role, used: None, api: None, status: 0 }) as Box<dyn HttpContext>)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    role: Rc<Role>,
    /// Upstream: the provider and credential this attempt used.
    used: Option<(String, usize)>,
    api: Option<Api>,
    status: u16,
}

fn is_marked_bad(provider: &str, c: &Credential, now: u64) -> bool {
    match host::shared_get(&bad_mark_key(provider, &c.name)) {
        Ok((Some(b), _)) => {
            b.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).is_some_and(|until| until > now)
        }
        _ => false,
    }
}

impl Context for Stream {}

fn refuse(err: &GatewayError) -> Action {
    host::set_property(headers::PROP_REFUSAL, "auth");
    host::send_error(err, &[]);
    Action::Pause
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, eos: bool) -> Action {
        match &*self.role {
            Role::Downstream(ring) => {
                // One host call for all headers; only headers that are present are removed.
                let all = host::request_headers();
                let get = |name: &str| all.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
                let presented = presented_credential(get("authorization"), get("x-api-key"), get("api-key"));
                let feature = get(headers::CALLER_FEATURE).filter(|v| !v.is_empty());
                let agent = get(headers::CALLER_AGENT).filter(|v| !v.is_empty());
                let result = presented.map(|p| ring.authenticate(p));
                host::remove_request_headers(&all, |n| {
                    headers::is_internal(n)
                        || PROVIDER_AUTH_HEADERS.contains(&n)
                        || n == headers::CALLER_FEATURE
                        || n == headers::CALLER_AGENT
                });
                let id = match result {
                    None => return refuse(&GatewayError::new(
                        401,
                        "invalid_request_error",
                        "missing_api_key",
                        "No gateway key was presented. Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
                    )),
                    Some(Err(e)) => return refuse(&e),
                    Some(Ok(id)) => id,
                };
                // The identity of a known key is recorded even when the call is refused (revoked,
                // expired, outside its scope), so the audit record says whose key it was.
                let mut call = CallIdentity::of(id);
                if let Err(e) = usable_at(id, host::now_ms()) {
                    host::set_property(headers::PROP_IDENTITY, &call.to_json());
                    return refuse(&e);
                }
                let checks = [("feature", &id.features, feature), ("agent", &id.agents, agent)];
                for (what, scope, asked) in checks {
                    if let Some(name) = asked {
                        if let Err(e) = check_scope(what, scope, name) {
                            host::set_property(headers::PROP_IDENTITY, &call.to_json());
                            return refuse(&e);
                        }
                    }
                }
                call.feature = feature.map(str::to_string);
                call.agent = agent.map(str::to_string);
                host::set_property(headers::PROP_IDENTITY, &call.to_json());
                Action::Continue
            }
            Role::Upstream { providers, .. } => {
                // Headers persist across attempts: drop whatever credential is there (a caller's,
                // or the key an earlier attempt injected for another provider).
                host::remove_request_headers(&host::request_headers(), |n| PROVIDER_AUTH_HEADERS.contains(&n));
                let provider = host::upstream_provider().unwrap_or_default();
                let Some(p) = providers.get(&provider) else {
                    host::warn(&format!(
                        "auth-key-swap: no credential configured for upstream provider {provider:?}; sending none"
                    ));
                    return Action::Continue;
                };
                let now = host::now_ms();
                let region = host::upstream_metadata(headers::METADATA_REGION);
                let Some(c) = choose(&p.credentials, region.as_deref(), now, |c| is_marked_bad(&provider, c, now))
                else {
                    host::warn(&format!(
                        "auth-key-swap: provider {provider:?} has no credential valid now for region {region:?}"
                    ));
                    return Action::Continue;
                };
                let index = p.credentials.iter().position(|x| x.name == c.name).unwrap_or(0);
                let api = p.api;
                match api {
                    Api::Openai => host::set_request_header("authorization", Some(&format!("Bearer {}", c.key))),
                    Api::Anthropic => host::set_request_header("x-api-key", Some(&c.key)),
                    Api::Azure => host::set_request_header("api-key", Some(&c.key)),
                    Api::Gemini => host::set_request_header("x-goog-api-key", Some(&c.key)),
                    Api::Bedrock => {}
                }
                self.used = Some((provider, index));
                self.api = Some(api);
                if api == Api::Bedrock {
                    // SigV4 covers the body as it will be sent (translated by route-select):
                    // sign once it is all here.
                    if eos {
                        self.sign(&[]);
                        return Action::Continue;
                    }
                    return Action::Pause;
                }
                Action::Continue
            }
        }
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        if self.api != Some(Api::Bedrock) {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        self.sign(&host::request_body(size));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.after_provider_answered();
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, _eos: bool) -> Action {
        // Gemini says "invalid API key" with a 400 whose body names API_KEY_INVALID.
        if self.api == Some(Api::Gemini)
            && self.status == 400
            && size > 0
            && aigw_core::gemini::is_invalid_key(&host::response_body(size))
        {
            self.mark_bad("400 API_KEY_INVALID");
        }
        Action::Continue
    }
}

impl Stream {
    /// Upstream: a provider that rejects a credential gets the next one from now on.
    fn after_provider_answered(&mut self) {
        let (Role::Upstream { providers, .. }, Some((provider, index))) = (&*self.role, &self.used) else {
            return;
        };
        let Some(c) = providers.get(provider).and_then(|p| p.credentials.get(*index)) else { return };
        host::set_response_header(headers::CREDENTIAL, Some(&c.fingerprint()));
        let status = host::response_header(":status").unwrap_or_default();
        self.status = status.parse().unwrap_or(0);
        if status == "401" || status == "403" {
            // Not retried (a 401 is not a fallback trigger); later calls use the next credential.
            self.mark_bad(&status);
        }
    }

    /// Marks this attempt's credential bad for every worker, so later calls use the next one.
    fn mark_bad(&self, why: &str) {
        let (Role::Upstream { providers, bad_ttl_ms }, Some((provider, index))) = (&*self.role, &self.used) else {
            return;
        };
        let Some(c) = providers.get(provider).and_then(|p| p.credentials.get(*index)) else { return };
        let until = host::now_ms().saturating_add(*bad_ttl_ms);
        let _ = host::shared_set(&bad_mark_key(provider, &c.name), &until.to_le_bytes(), None);
        host::warn(&format!(
            "auth-key-swap: provider {provider:?} rejected credential {:?} ({why}); skipping it for {} s",
            c.name,
            bad_ttl_ms / 1000
        ));
    }

    /// Signs this attempt's request with AWS SigV4 (Bedrock), over the body as sent.
    fn sign(&self, body: &[u8]) {
        let (Role::Upstream { providers, .. }, Some((provider, index))) = (&*self.role, &self.used) else {
            return;
        };
        let Some(c) = providers.get(provider).and_then(|p| p.credentials.get(*index)) else { return };
        let Some(secret) = c.secret.as_deref() else { return };
        let region = c
            .region
            .clone()
            .or_else(|| host::upstream_metadata(headers::METADATA_REGION))
            .unwrap_or_else(|| "us-east-1".into());
        let date = sigv4::amz_date(host::now_ms());
        let hash = sigv4::sha256_hex(body);
        let full_path = host::request_header(":path").unwrap_or_else(|| "/".into());
        let (path, query) = full_path.split_once('?').unwrap_or((&full_path, ""));
        let authority = host::request_header(":authority").unwrap_or_default();
        let content_type = host::request_header("content-type").unwrap_or_else(|| "application/json".into());
        host::set_request_header("content-type", Some(&content_type));
        host::set_request_header("x-amz-date", Some(&date));
        host::set_request_header("x-amz-content-sha256", Some(&hash));
        let mut signed = vec![
            ("content-type", content_type.as_str()),
            ("host", authority.as_str()),
            ("x-amz-content-sha256", hash.as_str()),
            ("x-amz-date", date.as_str()),
        ];
        if let Some(t) = c.session_token.as_deref() {
            host::set_request_header("x-amz-security-token", Some(t));
            signed.push(("x-amz-security-token", t));
        }
        let method = host::request_header(":method").unwrap_or_else(|| "POST".into());
        let request = sigv4::Request { method: &method, path, query, headers: &signed, body };
        let key = sigv4::Key { access_key_id: &c.key, secret, region: &region, service: "bedrock" };
        host::set_request_header("authorization", Some(&sigv4::authorization(&request, &key, &date)));
    }
}

/// A new root context of this filter (what `proxy_wasm::set_root_context` needs).
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root { role: None })
}
