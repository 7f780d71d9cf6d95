//! The guard stage, on the listener, after route (it applies the alias's or rule's policy) and
//! before the cache and quota: on the request, masks, refuses or flags what the policy names,
//! before any provider (and any translation for one) sees it; on the answer, puts masked values
//! back when the policy says so.

use std::rc::Rc;

use super::{apply, Restorer};
use crate::error::GatewayError;
use crate::headers;
use crate::host::{messages_door, Flow, Host};
use crate::route::RouteConfig;

pub struct GuardCall {
    route: Rc<RouteConfig>,
    restorer: Option<Restorer>,
    /// Restoring a JSON answer: held until complete.
    holding: bool,
}

impl GuardCall {
    pub fn new(route: Rc<RouteConfig>) -> GuardCall {
        GuardCall { route, restorer: None, holding: false }
    }

    /// The request, complete and routed. `Flow::Refused`: refused (the answer is sent).
    pub fn on_request(&mut self, h: &impl Host) -> Flow {
        let (Some(alias), Some(route)) =
            (h.property_string(&[headers::PROP_ALIAS]), h.property_string(&[headers::PROP_ROUTE]))
        else {
            return Flow::Continue;
        };
        let Some(policy) = self.route.guard_policy(&alias, &route) else { return Flow::Continue };
        // The body as routed (the Messages door's is the unified request by now).
        let body = h.request_body(usize::MAX);
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) else { return Flow::Continue };
        let applied = apply(policy, &mut v);
        let flags = applied.flags();
        if !flags.is_empty() {
            h.set_property(headers::PROP_COMPLIANCE, &flags.join(","));
            let alias = crate::audit::stage::label(&alias);
            for ((c, a), n) in &applied.counts {
                h.counter_add(
                    &format!("aigw_guard_detections_total.category.{}.action.{a}.alias.{alias}", c.as_str()),
                    u64::from(*n),
                );
            }
        }
        if !applied.rejected.is_empty() {
            let names: Vec<&str> = applied.rejected.iter().map(|c| c.as_str()).collect();
            let secret = applied.rejected.contains(&super::detect::Category::Secret);
            let err = GatewayError::bad_request(
                if secret { "secret_detected" } else { "pii_detected" },
                format!(
                    "The request carries values this route does not accept: {}. Remove them and retry.",
                    names.join(", ")
                ),
            );
            h.set_property(headers::PROP_REFUSAL, "guard");
            h.send_error(&err, messages_door(h), &[]);
            return Flow::Refused;
        }
        if applied.changed {
            if let Ok(masked) = serde_json::to_vec(&v) {
                h.replace_request_body(body.len(), &masked);
                h.set_request_header("content-length", Some(&masked.len().to_string()));
            }
            // The cache keys on the masked request: what was masked keys it too, so two calls
            // that differ only in a masked value never share an answer.
            let mut originals = applied.masked.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join("\u{0}");
            originals.insert(0, '#');
            h.set_property(headers::PROP_GUARD_KEY, &crate::auth::keys::digest_hex(&originals));
            if policy.restore {
                self.restorer = Some(Restorer::new(&applied.masked));
            }
        }
        Flow::Continue
    }

    pub fn on_response_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        if self.restorer.is_none() || eos {
            return Flow::Continue;
        }
        let ct = h.response_header("content-type").unwrap_or_default();
        h.set_response_header("content-length", None);
        if ct.starts_with("text/event-stream") {
            return Flow::Continue;
        }
        self.holding = true;
        Flow::Pause
    }

    /// Returns the flow and the body's size after this stage.
    pub fn on_response_body(&mut self, h: &impl Host, size: usize, eos: bool) -> (Flow, usize) {
        let Some(r) = &mut self.restorer else { return (Flow::Continue, size) };
        if self.holding {
            if !eos {
                return (Flow::Pause, size);
            }
            let mut out = r.push(&h.response_body(size));
            out.extend(r.finish());
            h.replace_response_body(size, &out);
            return (Flow::Continue, out.len());
        }
        let mut out = r.push(&h.response_body(size));
        if eos {
            out.extend(r.finish());
        }
        h.replace_response_body(size, &out);
        (Flow::Continue, out.len())
    }
}
