//! `GET /v1/models` and `GET /v1/models/{id}`: the model aliases the caller's key may use.
//!
//! Both SDKs' `models.list()` call the same path; only Anthropic's sends `anthropic-version`, so
//! that header picks Anthropic's shape (with its paging: `limit`, `after_id`, `before_id`), and
//! its absence OpenAI's. The gateway answers these itself: no provider is called, nothing is
//! charged, and the call is audited as one that cost nothing.

use crate::wire::write::{to_object, to_vec};

use super::RouteConfig;
use crate::auth::keys::KeyScope;
use crate::error::GatewayError;
use crate::text::Text;

pub const PATH: &str = "/v1/models";

/// The gateway knows no creation time for an alias: both shapes say the epoch.
const CREATED: u64 = 0;
const CREATED_AT: &str = "1970-01-01T00:00:00Z";
/// Anthropic's page size when the caller names none, and its largest.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

/// Whether `path` (without its query) asks for the model list or one model.
pub fn is_models_path(path: &str) -> bool {
    path == PATH || path.strip_prefix(PATH).is_some_and(|rest| rest.starts_with('/'))
}

/// The aliases `scope` lets a key use, sorted by name (no scope: every alias).
pub fn visible<'a>(cfg: &'a RouteConfig, scope: Option<&KeyScope>) -> Vec<&'a str> {
    // (Sorted once, with the configuration: `RouteConfig::compiled`.)
    cfg.alias_names.iter().map(String::as_str).filter(|a| scope.is_none_or(|s| s.allows(a))).collect()
}

struct OpenAiModel<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}
to_object!(OpenAiModel<'a> {
    id: "id" [],
    object: "object" [],
    created: "created" [],
    owned_by: "owned_by" [],
});

struct OpenAiList<'a> {
    object: &'static str,
    data: Vec<OpenAiModel<'a>>,
}
to_object!(OpenAiList<'a> {
    object: "object" [],
    data: "data" [],
});

struct AnthropicModel<'a> {
    kind: &'static str,
    id: &'a str,
    display_name: &'a str,
    created_at: &'static str,
}
to_object!(AnthropicModel<'a> {
    kind: "type" [],
    id: "id" [],
    display_name: "display_name" [],
    created_at: "created_at" [],
});

struct AnthropicPage<'a> {
    data: Vec<AnthropicModel<'a>>,
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}
to_object!(AnthropicPage<'a> {
    data: "data" [],
    has_more: "has_more" [],
    first_id: "first_id" [],
    last_id: "last_id" [],
});

fn openai(id: &str) -> OpenAiModel<'_> {
    OpenAiModel { id, object: "model", created: CREATED, owned_by: "gateway" }
}

fn anthropic(id: &str) -> AnthropicModel<'_> {
    AnthropicModel { kind: "model", id, display_name: id, created_at: CREATED_AT }
}

/// The answer to `GET path_and_query` for a key whose aliases are `names` (see [`visible`]), in
/// Anthropic's shape when `anthropic`: the JSON body, or the error to refuse with.
pub fn answer(names: &[&str], path_and_query: &str, anthropic_shape: bool) -> Result<Vec<u8>, GatewayError> {
    let (path, query) = path_and_query.cut(b'?').unwrap_or((path_and_query, ""));
    let one = path.strip_prefix(PATH).and_then(|r| r.strip_prefix('/')).filter(|id| !id.is_empty());
    let json = match (one, anthropic_shape) {
        (Some(id), _) => {
            let Some(id) = names.iter().copied().find(|n| *n == id) else {
                return Err(GatewayError::new(
                    404,
                    "invalid_request_error",
                    "model_not_found",
                    format!("The model `{id}` does not exist, or this key may not use it."),
                )
                .with_param("model"));
            };
            if anthropic_shape {
                to_vec(&anthropic(id))
            } else {
                to_vec(&openai(id))
            }
        }
        (None, false) => to_vec(&OpenAiList { object: "list", data: names.iter().map(|n| openai(n)).collect() }),
        (None, true) => to_vec(&page(names, query)?),
    };
    Ok(json)
}

/// One page of Anthropic's list: after `after_id` (or before `before_id`), at most `limit`.
fn page<'a>(names: &[&'a str], query: &str) -> Result<AnthropicPage<'a>, GatewayError> {
    let mut limit = DEFAULT_LIMIT;
    let (mut after, mut before) = (None, None);
    for pair in query.parts(b'&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.cut(b'=').unwrap_or((pair, ""));
        match k {
            "limit" => {
                limit = v.int_as().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                    GatewayError::bad_request("invalid_limit", format!("`limit` must be 1 to {MAX_LIMIT}."))
                        .with_param("limit")
                })?
            }
            "after_id" => after = Some(v),
            "before_id" => before = Some(v),
            _ => {}
        }
    }
    let position = |id: &str| names.iter().position(|n| *n == id);
    let (start, end) = match (after, before) {
        (Some(a), _) => (position(a).map_or(names.len(), |i| i + 1), names.len()),
        (None, Some(b)) => (0, position(b).unwrap_or(0)),
        (None, None) => (0, names.len()),
    };
    let all = names.get(start..end).unwrap_or_default();
    // Paging backwards takes the page that ends just before `before_id`.
    let taken = if before.is_some() && after.is_none() {
        all.get(all.len().saturating_sub(limit)..).unwrap_or_default()
    } else {
        all.get(..limit.min(all.len())).unwrap_or_default()
    };
    let has_more = taken.len() < all.len();
    Ok(AnthropicPage {
        data: taken.iter().map(|n| anthropic(n)).collect(),
        has_more,
        first_id: taken.first().copied(),
        last_id: taken.last().copied(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;
    use crate::wire::tree::Value;

    fn body(names: &[&str], path: &str, anthropic: bool) -> Value {
        crate::wire::from_slice(&answer(names, path, anthropic).unwrap()).unwrap()
    }

    #[test]
    fn the_openai_shape_lists_every_alias_given() {
        assert_eq!(
            body(&["chat", "chat-eu"], "/v1/models", false),
            json!({"object": "list", "data": [
                {"id": "chat", "object": "model", "created": 0, "owned_by": "gateway"},
                {"id": "chat-eu", "object": "model", "created": 0, "owned_by": "gateway"}]})
        );
        assert_eq!(body(&["chat"], "/v1/models/chat", false)["id"], "chat");
        let e = answer(&["chat"], "/v1/models/gpt-4o", false).unwrap_err();
        assert_eq!((e.status, e.code, e.param), (404, "model_not_found", Some("model")));
    }

    #[test]
    fn the_anthropic_shape_pages_forward_and_back() {
        let names = ["a", "b", "c", "d", "e"];
        let first = body(&names, "/v1/models?limit=2", true);
        assert_eq!(
            first["data"][0],
            json!({"type": "model", "id": "a", "display_name": "a", "created_at": CREATED_AT})
        );
        assert_eq!(
            (first["has_more"].clone(), first["first_id"].clone(), first["last_id"].clone()),
            (json!(true), json!("a"), json!("b"))
        );
        let next = body(&names, "/v1/models?limit=2&after_id=b", true);
        assert_eq!(
            (next["first_id"].clone(), next["last_id"].clone(), next["has_more"].clone()),
            (json!("c"), json!("d"), json!(true))
        );
        let last = body(&names, "/v1/models?limit=2&after_id=d", true);
        assert_eq!((last["first_id"].clone(), last["has_more"].clone()), (json!("e"), json!(false)));
        let back = body(&names, "/v1/models?limit=2&before_id=e", true);
        assert_eq!(
            (back["first_id"].clone(), back["last_id"].clone(), back["has_more"].clone()),
            (json!("c"), json!("d"), json!(true))
        );
        // Default page: up to 20, all here.
        assert_eq!(body(&names, "/v1/models", true)["data"].as_array().map(Vec::len), Some(5));
        let empty = body(&[], "/v1/models", true);
        assert_eq!(empty, json!({"data": [], "has_more": false, "first_id": null, "last_id": null}));
        assert_eq!(answer(&names, "/v1/models?limit=0", true).unwrap_err().param, Some("limit"));
        assert_eq!(answer(&names, "/v1/models?limit=lots", true).unwrap_err().status, 400);
    }

    #[test]
    fn only_the_models_paths_are_models_paths() {
        assert!(is_models_path("/v1/models") && is_models_path("/v1/models/chat"));
        assert!(!is_models_path("/v1/modelsx") && !is_models_path("/v1/model"));
    }
}
