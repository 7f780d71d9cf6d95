use std::collections::HashMap;
use std::rc::Rc;

use aigw_core::error::GatewayError;
use aigw_core::headers;
use aigw_core::keys::{check_scope, presented_credential, usable_at, CallIdentity, KeyEntry, KeyRing};
use aigw_core::route::Api;
use aigw_host as host;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use serde::Deserialize;

const CALLER_CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    keys: Vec<KeyEntry>,
    #[serde(default)]
    providers: HashMap<String, ProviderCredential>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderCredential {
    api: Api,
    /// Name of the environment variable (in the Wasm VM's environment) that holds the key.
    key_env: String,
}

enum Role {
    Downstream(KeyRing),
    Upstream(HashMap<String, (Api, String)>),
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
            let mut out = HashMap::new();
            for (name, p) in cfg.providers {
                let key = std::env::var(&p.key_env).ok().filter(|k| !k.is_empty()).ok_or_else(|| {
                    format!(
                        "auth-key-swap: provider {name:?}: environment variable {} is not set in the Wasm VM \
                         (list it in vm_config.environment_variables.host_env_keys)",
                        p.key_env
                    )
                })?;
                out.insert(name, (p.api, key));
            }
            Ok(Role::Upstream(out))
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
        self.role.clone().map(|role| Box::new(Stream { role }) as Box<dyn HttpContext>)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    role: Rc<Role>,
}

impl Context for Stream {}

fn refuse(err: &GatewayError) -> Action {
    host::set_property(headers::PROP_REFUSAL, "auth");
    host::send_error(err, &[]);
    Action::Pause
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
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
                        || CALLER_CREDENTIAL_HEADERS.contains(&n)
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
            Role::Upstream(providers) => {
                // Headers persist across attempts: drop whatever credential is there (a caller's,
                // or the key an earlier attempt injected for another provider).
                host::remove_request_headers(&host::request_headers(), |n| CALLER_CREDENTIAL_HEADERS.contains(&n));
                let provider = host::upstream_provider();
                match provider.as_deref().and_then(|p| providers.get(p)) {
                    Some((Api::Openai, key)) => {
                        host::set_request_header("authorization", Some(&format!("Bearer {key}")))
                    }
                    Some((Api::Anthropic, key)) => host::set_request_header("x-api-key", Some(key)),
                    None => host::warn(&format!(
                        "auth-key-swap: no credential configured for upstream provider {provider:?}; sending none"
                    )),
                }
                Action::Continue
            }
        }
    }
}

/// A new root context of this filter (what `proxy_wasm::set_root_context` needs).
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root { role: None })
}
