//! The credential plane as two stages: `auth` on the listener (who is calling: the gateway key
//! becomes the call's identity) and `credential` per upstream attempt (the provider's key, or its
//! SigV4 signature, replaces whatever credential the request carries).
//!
//! Both are plain functions of the [`Host`], the compiled configuration and the call; the
//! proxy-wasm filter only moves them into Envoy's callbacks.

pub mod credentials;
pub mod keys;
pub mod marks;
pub mod sigv4;

use crate::config::NameMap;

use crate::auth::credentials::{bad_mark_key, choose, Credential};
use crate::auth::keys::{check_scope, presented_credential, usable_at, CallIdentity, KeyEntry, KeyRing};
use crate::error::{ConfigError, GatewayError};
use crate::headers;
use crate::host::{messages_door, Host};
use crate::route::Api;
use crate::text::Text;

/// Every header that carries a provider credential or signature; none of a caller's reach a
/// provider, and each attempt starts without the previous attempt's.
pub const PROVIDER_AUTH_HEADERS: [&str; 7] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// The filter configuration of `auth_key_swap` (listener: `keys`) and `auth_key_swap_upstream`
/// (per attempt: `providers`).
pub struct AuthConfig {
    pub keys: Vec<KeyEntry>,
    /// The providers' credentials; in the `gateway` filter's configuration, its one
    /// `providers` table instead.
    pub providers: NameMap<crate::provider::ProviderConfig>,
    /// How long a credential a provider rejected (401/403) is skipped, in seconds.
    pub bad_credential_ttl_s: u64,
}

fn default_bad_ttl() -> u64 {
    300
}

#[derive(Debug, Clone, Default)]
pub struct CredentialConfig {
    pub name: String,
    /// The key (for Bedrock, the AWS access key id).
    pub key_env: String,
    /// Bedrock: the AWS secret access key.
    pub secret_env: Option<String>,
    /// Bedrock with temporary credentials: the session token.
    pub session_token_env: Option<String>,
    pub region: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
}

/// One provider's compiled credentials.
pub struct ProviderCredentials {
    pub api: Api,
    pub credentials: Vec<Credential>,
}

/// The compiled per-attempt configuration.
pub struct CredentialPlane {
    pub providers: NameMap<ProviderCredentials>,
    pub bad_ttl_ms: u64,
}

fn refused(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::new("auth-key-swap", field, problem)
}

impl TryFrom<&AuthConfig> for KeyRing {
    type Error = ConfigError;

    /// The listener half: the key ring.
    fn try_from(cfg: &AuthConfig) -> Result<KeyRing, ConfigError> {
        if cfg.keys.is_empty() {
            return Err(refused("keys", "no gateway keys are configured"));
        }
        KeyRing::compile(&cfg.keys)
    }
}

/// Compiles the listener half: the key ring.
pub fn compile_keys(cfg: &AuthConfig) -> Result<KeyRing, ConfigError> {
    KeyRing::try_from(cfg)
}

/// Compiles the per-attempt half, reading keys through `env` (the Wasm VM's environment).
pub fn compile_credentials(
    cfg: AuthConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CredentialPlane, ConfigError> {
    if cfg.providers.is_empty() {
        return Err(refused("providers", "no provider credentials are configured"));
    }
    let mut providers = NameMap::new();
    for (name, p) in cfg.providers {
        // Each credential with the path of the object that configures it.
        let mut list: Vec<(String, CredentialConfig)> = p
            .credentials
            .into_iter()
            .enumerate()
            .map(|(i, c)| (format!("providers.{name}.credentials[{i}]"), c))
            .collect();
        if let Some(key_env) = p.key_env {
            let secret_env = p.secret_env.clone();
            list.insert(
                0,
                (
                    format!("providers.{name}"),
                    CredentialConfig {
                        name: "default".own(),
                        key_env,
                        secret_env,
                        session_token_env: None,
                        region: None,
                        not_before: None,
                        not_after: None,
                    },
                ),
            );
        }
        if list.is_empty() {
            return Err(refused(format!("providers.{name}"), "has no credential (`key_env` or `credentials`)"));
        }
        let credentials =
            list.into_iter().map(|(at, c)| credential(&at, p.api, c, env)).collect::<Result<Vec<_>, _>>()?;
        providers.insert(name, ProviderCredentials { api: p.api, credentials });
    }
    Ok(CredentialPlane { providers, bad_ttl_ms: cfg.bad_credential_ttl_s.saturating_mul(1000) })
}

/// Compiles the credential configured at `at`.
fn credential(
    at: &str,
    api: Api,
    c: CredentialConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credential, ConfigError> {
    let var = |field: &str, name: &str| {
        env(name).filter(|k| !k.is_empty()).ok_or_else(|| {
            refused(
                format!("{at}.{field}"),
                format!(
                    "environment variable {name} is not set in the Wasm VM (list it in \
                     vm_config.environment_variables.host_env_keys)"
                ),
            )
        })
    };
    let key = var("key_env", &c.key_env)?;
    let secret = c.secret_env.as_deref().map(|n| var("secret_env", n)).transpose()?;
    let session_token = c.session_token_env.as_deref().map(|n| var("session_token_env", n)).transpose()?;
    if api == Api::Bedrock && secret.is_none() {
        return Err(refused(
            format!("{at}.secret_env"),
            format!("credential {:?} needs it (the AWS secret access key) to sign requests", c.name),
        ));
    }
    let when = |field: &str, v: Option<String>| -> Result<Option<u64>, ConfigError> {
        v.map(|s| {
            crate::time::parse_utc_ms(&s)
                .ok_or_else(|| refused(format!("{at}.{field}"), format!("{s:?} is not a UTC time")))
        })
        .transpose()
    };
    Ok(Credential {
        not_before_ms: when("not_before", c.not_before)?,
        not_after_ms: when("not_after", c.not_after)?,
        name: c.name,
        fingerprint: Credential::fingerprint_of(&key),
        key,
        secret,
        session_token,
        region: c.region,
    })
}

/// The auth stage (listener, request headers): the presented gateway key becomes the call's
/// identity, in filter state; the caller's credentials, internal headers and attribution
/// headers are removed. `Err(())`: the call was refused (a 401 or 403 in the caller's shape,
/// already sent; a known key's identity is still recorded, so the audit record says whose key it
/// was).
#[allow(clippy::result_unit_err)]
pub fn authenticate(h: &impl Host, ring: &KeyRing) -> Result<CallIdentity, ()> {
    // One host call for all headers, read in place; only headers that are present are removed.
    let (result, feature, agent, task, shadow_of, shadow_zone) = h.with_request_headers(|all| {
        let get = |name: &str| all.get(name);
        let given = |name: &str| get(name).filter(|v| !v.is_empty()).map(str::to_string);
        let presented = presented_credential(get("authorization"), get("x-api-key"), get("api-key"));
        (
            presented.map(|p| ring.authenticate(p)),
            given(headers::CALLER_FEATURE),
            given(headers::CALLER_AGENT),
            given(headers::CALLER_TASK),
            given(headers::SHADOW_OF),
            given(headers::SHADOW_ZONE),
        )
    });
    let door = messages_door(h);
    h.remove_request_headers_where(&|n| {
        headers::is_internal(n)
            || PROVIDER_AUTH_HEADERS.contains(&n)
            || n == headers::CALLER_FEATURE
            || n == headers::CALLER_AGENT
            || n == headers::CALLER_TASK
    });
    let refuse = |err: &GatewayError| {
        h.set_property(headers::PROP_REFUSAL, "auth");
        h.send_error(err, door, &[]);
    };
    let id = match result {
        None => {
            refuse(&GatewayError::new(
                401,
                "invalid_request_error",
                "missing_api_key",
                "No gateway key was presented. Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
            ));
            return Err(());
        }
        Some(Err(e)) => {
            refuse(&e);
            return Err(());
        }
        Some(Ok(id)) => id,
    };
    let mut call = CallIdentity::of(id);
    if let Err(e) = usable_at(id, h.now_ms()) {
        h.set_property_bytes(headers::PROP_IDENTITY, &call.encode());
        refuse(&e);
        return Err(());
    }
    for (what, scope, asked) in
        [("feature", &id.features, &feature), ("agent", &id.agents, &agent), ("task", &id.tasks, &task)]
    {
        if let Some(name) = asked {
            if let Err(e) = check_scope(what, scope, name) {
                h.set_property_bytes(headers::PROP_IDENTITY, &call.encode());
                refuse(&e);
                return Err(());
            }
        }
    }
    call.feature = feature;
    call.agent = agent;
    call.task = task;
    // Only the gateway's own shadow key makes shadow legs; from any other key it is dropped.
    call.shadow_of = shadow_of.filter(|_| id.shadow);
    if call.shadow_of.is_some() && shadow_zone.is_some() {
        // The leg keeps to the privacy zone of the call it copies, whatever the shadow key's.
        call.zone = shadow_zone;
    }
    h.set_property_bytes(headers::PROP_IDENTITY, &call.encode());
    Ok(call)
}

/// The credential an attempt carries: the provider, the index of its credential, and its API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptCredential {
    pub provider: String,
    pub index: usize,
    pub api: Api,
}

/// Whether `c` of `provider` was marked bad (by any worker) until after `now`.
fn is_marked_bad(h: &impl Host, provider: &str, c: &Credential, now: u64) -> bool {
    match h.shared_get(&bad_mark_key(provider, &c.name)) {
        Ok((Some(b), _)) => {
            b.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).is_some_and(|until| until > now)
        }
        _ => false,
    }
}

/// The credential stage (per attempt, request headers): removes whatever credential the request
/// carries (a caller's, or the key an earlier attempt injected for another provider) and
/// injects the key of the provider this attempt goes to (`provider`, `region` from the
/// endpoint's metadata). Bedrock is signed later, over the body as sent ([`sign`]). `None`: no
/// credential is configured for this provider (the attempt goes without one, with a warning).
/// `headers_clean`: an earlier stage of this attempt already removed every credential header.
pub fn inject(
    h: &impl Host,
    plane: &CredentialPlane,
    provider: &str,
    region: Option<&str>,
    headers_clean: bool,
) -> Option<AttemptCredential> {
    if !headers_clean {
        h.remove_request_headers_where(&|n| PROVIDER_AUTH_HEADERS.contains(&n));
    }
    let Some(p) = plane.providers.get(provider) else {
        h.warn(&format!("auth-key-swap: no credential configured for upstream provider {provider:?}; sending none"));
        return None;
    };
    let now = h.now_ms();
    let Some(c) = choose(&p.credentials, region, now, |c| is_marked_bad(h, provider, c, now)) else {
        h.warn(&format!("auth-key-swap: provider {provider:?} has no credential valid now for region {region:?}"));
        return None;
    };
    let index = p.credentials.iter().position(|x| x.name == c.name).unwrap_or(0);
    // Each API's own scheme; one that signs instead (Bedrock) is signed once its body is here.
    if let Some((name, value)) = crate::provider::credential_header(p.api, &c.key) {
        h.set_request_header(name, Some(&value));
    }
    Some(AttemptCredential { provider: provider.own(), index, api: p.api })
}

impl CredentialPlane {
    fn credential(&self, used: &AttemptCredential) -> Option<&Credential> {
        self.providers.get(&used.provider).and_then(|p| p.credentials.get(used.index))
    }

    /// After the provider answered (response headers): names the credential in the response
    /// for the attempt record (by fingerprint), and marks it bad for every worker when the
    /// provider rejected it (401, 403), so later calls use the next one. Returns the status.
    pub fn after_answer(&self, h: &impl Host, used: &AttemptCredential) -> u16 {
        let status: u16 = h.response_header(":status").and_then(|s| s.int_as()).unwrap_or(0);
        let Some(c) = self.credential(used) else { return status };
        h.set_property(headers::PROP_CREDENTIAL, &c.fingerprint);
        if status == 401 || status == 403 {
            // Not retried (a 401 is not a fallback trigger); later calls use the next credential.
            self.mark_bad(h, used, &crate::headers::decimal(u64::from(status)));
        }
        status
    }

    /// Marks this attempt's credential bad for every worker, so later calls use the next one.
    pub fn mark_bad(&self, h: &impl Host, used: &AttemptCredential, why: &str) {
        let Some(c) = self.credential(used) else { return };
        let until = h.now_ms().saturating_add(self.bad_ttl_ms);
        let _ = h.shared_set(&bad_mark_key(&used.provider, &c.name), &until.to_le_bytes(), None);
        // For the fleet (fleet mode sends it to every replica; see `auth::marks`).
        marks::queue(h, &used.provider, &c.name, until);
        h.warn(&format!(
            "auth-key-swap: provider {:?} rejected credential {:?} ({why}); skipping it for {} s",
            used.provider,
            c.name,
            self.bad_ttl_ms / 1000
        ));
    }

    /// Signs the attempt's request with AWS SigV4 (Bedrock), over `body` exactly as it is sent.
    pub fn sign(&self, h: &impl Host, used: &AttemptCredential, region: Option<&str>, body: &[u8]) {
        let request = SignedRequest {
            method: &h.request_header(":method").unwrap_or_else(|| "POST".own()),
            path: &h.request_header(":path").unwrap_or_else(|| "/".own()),
            authority: &h.request_header(":authority").unwrap_or_default(),
            content_type: &h.request_header("content-type").unwrap_or_else(|| "application/json".own()),
            body,
        };
        for (name, value) in self.signature(used, region, &request, h.now_ms()) {
            h.set_request_header(name, Some(&value));
        }
    }

    /// The headers that sign `request` with AWS SigV4 (Bedrock) with this attempt's credential,
    /// `content-type` among them; none when the credential has no secret.
    pub fn signature(
        &self,
        used: &AttemptCredential,
        region: Option<&str>,
        request: &SignedRequest,
        now_ms: u64,
    ) -> Vec<(&'static str, String)> {
        let Some(c) = self.credential(used) else { return Vec::new() };
        let Some(secret) = c.secret.as_deref() else { return Vec::new() };
        let region = c.region.as_deref().or(region).unwrap_or("us-east-1");
        let date = sigv4::amz_date(now_ms);
        let hash = sigv4::sha256_hex(request.body);
        let (path, query) = request.path.cut(b'?').unwrap_or((request.path, ""));
        let mut signed = vec![
            ("content-type", request.content_type),
            ("host", request.authority),
            ("x-amz-content-sha256", hash.as_str()),
            ("x-amz-date", date.as_str()),
        ];
        if let Some(t) = c.session_token.as_deref() {
            signed.push(("x-amz-security-token", t));
        }
        let req = sigv4::Request { method: request.method, path, query, headers: &signed, body: request.body };
        let key = sigv4::Key { access_key_id: &c.key, secret, region, service: "bedrock" };
        let authorization = sigv4::authorization(&req, &key, &date);
        let mut out = vec![
            ("content-type", request.content_type.own()),
            ("x-amz-date", date.own()),
            ("x-amz-content-sha256", hash.own()),
        ];
        if let Some(t) = c.session_token.as_deref() {
            out.push(("x-amz-security-token", t.own()));
        }
        out.push(("authorization", authorization));
        out
    }
}

/// A request as SigV4 signs it.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// With its query, if any.
    pub path: &'a str,
    pub authority: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// The headers a SigV4 signature sets (a request signed anew drops them first).
pub const SIGNATURE_HEADERS: [&str; 4] =
    ["authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"];

// Read by hand (`crate::config`), not derived: see its module comment.

impl crate::config::FromConfig for AuthConfig {
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(v, at, "AuthConfig", Some(&["keys", "providers", "bad_credential_ttl_s"]))?;
        Ok(AuthConfig {
            keys: o.or("keys", Default::default)?,
            providers: o.or("providers", Default::default)?,
            bad_credential_ttl_s: o.or("bad_credential_ttl_s", default_bad_ttl)?,
        })
    }
}

impl crate::config::FromConfig for CredentialConfig {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "CredentialConfig",
            Some(&["name", "key_env", "secret_env", "session_token_env", "region", "not_before", "not_after"]),
        )?;
        let mut x = CredentialConfig::default();
        x.name = o.req("name")?;
        x.key_env = o.req("key_env")?;
        x.secret_env = o.opt("secret_env")?;
        x.session_token_env = o.opt("session_token_env")?;
        x.region = o.opt("region")?;
        x.not_before = o.opt("not_before")?;
        x.not_after = o.opt("not_after")?;
        Ok(x)
    }
}

#[cfg(test)]
mod tests;
