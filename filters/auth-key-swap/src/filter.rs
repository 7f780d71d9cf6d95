//! The credential plane in Envoy: a thin adapter that runs `aigw_core::auth`'s stages in
//! proxy-wasm callbacks. `auth_key_swap` (listener) runs the auth stage; `auth_key_swap_upstream`
//! (per attempt) runs the credential stage.

use std::rc::Rc;

use aigw_core::auth::keys::KeyRing;
use aigw_core::auth::{self, AttemptCredential, AuthConfig, CredentialPlane};
use aigw_core::call_state::{Side, Stateful, Writers};
use aigw_core::error::ConfigError;
use aigw_core::headers;
use aigw_core::host::{Callbacks, Flow, Host};
use aigw_core::route::Api;
use aigw_host::{self as host, Forward, HttpContext, RootContext};

enum Role {
    Downstream(KeyRing),
    Upstream(CredentialPlane),
}

fn compile(root_id: &str, cfg: AuthConfig) -> Result<Role, ConfigError> {
    match root_id {
        "auth_key_swap" => auth::compile_keys(&cfg).map(Role::Downstream),
        "auth_key_swap_upstream" => {
            auth::compile_credentials(cfg, &|name| std::env::var(name).ok()).map(Role::Upstream)
        }
        other => Err(ConfigError::new(
            "auth-key-swap",
            "",
            format!("unknown root_id {other:?}; use auth_key_swap (listener) or auth_key_swap_upstream (cluster)"),
        )),
    }
}

struct Root {
    role: Option<Rc<Role>>,
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.role = host::configure("auth-key-swap", |cfg| compile(&host::root_id(), cfg)).map(Rc::new);
        self.role.is_some()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let role = self.role.clone()?;
        let side = match &*role {
            Role::Downstream(_) => Side::Listener,
            Role::Upstream(_) => Side::Attempt,
        };
        let stream = Stream { role, used: None, status: 0 };
        Some(Box::new(Forward(Stateful::new(stream, side, Writers::Many))))
    }
}

struct Stream {
    role: Rc<Role>,
    /// Upstream: the credential this attempt carries.
    used: Option<AttemptCredential>,
    status: u16,
}

impl Callbacks for Stream {
    fn on_request_headers<H: Host>(&mut self, h: &H, eos: bool) -> Flow {
        match &*self.role {
            Role::Downstream(ring) => match auth::authenticate(h, ring) {
                Ok(_) => Flow::Continue,
                Err(()) => Flow::Refused,
            },
            Role::Upstream(plane) => {
                let provider = h.upstream_metadata(headers::METADATA_PROVIDER).unwrap_or_default();
                let region = h.upstream_metadata(headers::METADATA_REGION);
                self.used = auth::inject(h, plane, &provider, region.as_deref(), false);
                if self.used.as_ref().is_some_and(|u| u.api == Api::Bedrock) {
                    // SigV4 covers the body as it will be sent (translated by route-select):
                    // sign once it is all here.
                    if eos {
                        self.sign(h, &[]);
                        return Flow::Continue;
                    }
                    return Flow::Pause;
                }
                Flow::Continue
            }
        }
    }

    fn on_request_body<H: Host>(&mut self, h: &H, size: usize, eos: bool) -> Flow {
        if !self.used.as_ref().is_some_and(|u| u.api == Api::Bedrock) {
            return Flow::Continue;
        }
        if !eos {
            return Flow::Pause;
        }
        self.sign(h, &h.request_body(size));
        Flow::Continue
    }

    fn on_response_headers<H: Host>(&mut self, h: &H, _eos: bool) -> Flow {
        if let (Role::Upstream(plane), Some(used)) = (&*self.role, &self.used) {
            self.status = plane.after_answer(h, used);
        }
        Flow::Continue
    }

    fn on_response_body<H: Host>(&mut self, h: &H, size: usize, _eos: bool) -> Flow {
        // Gemini says "invalid API key" with a 400 whose body names API_KEY_INVALID.
        if let (Role::Upstream(plane), Some(used)) = (&*self.role, &self.used) {
            if used.api == Api::Gemini
                && self.status == 400
                && size > 0
                && aigw_core::provider::gemini::is_invalid_key(&h.response_body(size))
            {
                plane.mark_bad(h, used, "400 API_KEY_INVALID");
            }
        }
        Flow::Continue
    }
}

impl Stream {
    fn sign(&self, h: &impl Host, body: &[u8]) {
        if let (Role::Upstream(plane), Some(used)) = (&*self.role, &self.used) {
            let region = h.upstream_metadata(headers::METADATA_REGION);
            plane.sign(h, used, region.as_deref(), body);
        }
    }
}

/// A new root context of this filter (what `aigw_host::main!` needs).
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root { role: None })
}
