//! Policy core of the AI gateway.
//!
//! Everything here is plain Rust with no proxy-wasm dependency, so it is unit-tested natively.
//! The filter crates are thin adapters that move bytes between Envoy and these functions.

use crate::text::{Put, Text};

/// Implements `sse::Translate` for a stream translator by its own `push` and `finish`.
macro_rules! impl_translate {
    ($t:ty) => {
        impl crate::wire::sse::Translate for $t {
            fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
                <$t>::push(self, chunk)
            }

            fn finish(&mut self) -> Vec<u8> {
                <$t>::finish(self)
            }
        }
    };
}

pub mod audit;
pub mod auth;
pub mod cache;
pub mod call_state;
pub mod case;
pub mod codec;
pub mod config;
pub mod error;
pub mod guard;
pub mod headers;
pub mod host;
pub mod pipeline;
pub mod provider;
pub mod quota;
pub mod route;
pub mod sort;
pub mod text;
pub mod time;
pub mod wire;

/// A JSON tree in the tests: `serde_json::json!`'s, as the gateway's [`wire::tree::Value`].
#[cfg(test)]
macro_rules! json {
    ($($t:tt)+) => {
        $crate::wire::tree::Value::from(serde_json::json!($($t)+))
    };
}
#[cfg(test)]
pub(crate) use json;

/// Parses a filter configuration, naming the filter, the field and the problem on failure.
///
/// The JSON is parsed once into a `Value` (where it is not JSON, the field is found from where
/// the parser stopped, [`json_path_at`]); the configuration's types are then read from it by
/// hand ([`config`]), each error naming its own path. (Tracking the path in serde's
/// deserializer, `serde_path_to_error`, cost an eighth of the module's size; derived
/// deserialisers cost more than the readers that replaced them.)
pub fn parse_config<T: config::FromConfig>(filter: &str, raw: &[u8]) -> Result<T, error::ConfigError> {
    let value = config_tree(filter, raw)?;
    T::read(&value, &config::At::Root).map_err(|e| {
        let (path, problem) = e.into_parts();
        error::ConfigError::new(filter, path, problem)
    })
}

/// The configuration's text as a tree, refused with the place when it is not one JSON object
/// without repeated keys (one function for every type a configuration is read as).
#[inline(never)]
fn config_tree(filter: &str, raw: &[u8]) -> Result<crate::wire::tree::Value, error::ConfigError> {
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(error::ConfigError::new(filter, "", "the configuration is empty; a JSON object is required"));
    }
    let value: crate::wire::tree::Value = crate::wire::from_slice(raw).map_err(|e| {
        let path = json_path_at(raw, byte_offset(raw, e.line(), e.column()));
        let msg = e.to_string();
        // "... at line 1 column 42": the field names the place better.
        // (The last " at line ": a value quoted in the message may hold one.)
        let (mut end, mut from) = (msg.len(), 0);
        while let Some(i) = msg.get(from..).and_then(|m| m.find_str(" at line ")) {
            end = from + i;
            from = end + 1;
        }
        let msg = msg.get(..end).unwrap_or_default();
        error::ConfigError::new(filter, path, msg)
    })?;
    if let Some((key, path)) = duplicate_key_at(raw) {
        return Err(error::ConfigError::new(filter, path, format!("duplicate field `{key}`")));
    }
    Ok(value)
}

/// The byte offset of a 1-based line and column (as `serde_json` reports them).
fn byte_offset(raw: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match raw.get(start..).and_then(|r| r.iter().position(|&b| b == b'\n')) {
            Some(i) => start += i + 1,
            None => return raw.len(),
        }
    }
    start.saturating_add(column).min(raw.len())
}

/// The path (`tenants.*.requests_per_minute`, `keys[0].sha256`) of the JSON value being read at
/// byte `offset` of `raw`: the keys and indices of the objects and arrays open there.
pub fn json_path_at(raw: &[u8], offset: usize) -> String {
    path_of(&scan_keys(raw, offset, false).0)
}

/// The first key given twice in one object of `raw`, if any, and its path: a parsed `Value`
/// keeps the last silently, and a configuration should say what it means once.
pub fn duplicate_key_at(raw: &[u8]) -> Option<(String, String)> {
    let (stack, twice) = scan_keys(raw, raw.len(), true);
    twice.map(|k| {
        let mut path = path_of(&stack);
        if !path.is_empty() {
            path.push('.');
        }
        path.put(&k);
        (k, path)
    })
}

/// An object or array open at a place in the JSON text: the object's current key and (when
/// duplicates are looked for) every key it had, the array's index. The keys are kept in the
/// JSON parser's own map type (a tree map, whose code the module has anyway) rather than in a
/// hash set compiled for this one use.
enum Frame {
    Object(Option<String>, crate::wire::tree::Map<String, crate::wire::tree::Value>),
    Array(usize),
}

/// The objects and arrays open at byte `offset` of `raw`; with `duplicates`, stopping early at a
/// key its object already had (returned too).
fn scan_keys(raw: &[u8], offset: usize, duplicates: bool) -> (Vec<Frame>, Option<String>) {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let end = offset.min(raw.len());
    while i < end {
        match raw[i] {
            b'{' => stack.push(Frame::Object(None, crate::wire::tree::Map::new())),
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object(k, _)) => *k = None,
                Some(Frame::Array(n)) => *n += 1,
                None => {}
            },
            b'"' => {
                // A string: a key when an object waits for one.
                let mut j = i + 1;
                let mut s = Vec::new();
                while j < raw.len() && raw[j] != b'"' {
                    if raw[j] == b'\\' {
                        j += 1;
                    }
                    if let Some(&c) = raw.get(j) {
                        s.push(c);
                    }
                    j += 1;
                }
                if let Some(Frame::Object(k @ None, seen)) = stack.last_mut() {
                    let key = String::from_utf8_lossy(&s).into_owned();
                    if duplicates && seen.insert(key.clone(), crate::wire::tree::Value::Null).is_some() {
                        return (stack, Some(key));
                    }
                    *k = Some(key);
                }
                i = j;
            }
            _ => {}
        }
        i += 1;
    }
    (stack, None)
}

fn path_of(stack: &[Frame]) -> String {
    let mut path = String::new();
    for f in stack {
        match f {
            Frame::Object(Some(k), _) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.put(k);
            }
            Frame::Object(None, _) => {}
            Frame::Array(n) => path.put(&format!("[{n}]")),
        }
    }
    path
}

/// For tests: the values the stages hand on in filter state, written as JSON here for
/// readability and encoded as the stages encode them ([`codec`]).
#[cfg(test)]
pub(crate) mod handed {
    /// A [`crate::auth::keys::CallIdentity`] given as JSON.
    pub fn identity(json: &str) -> Vec<u8> {
        crate::wire::from_str::<crate::auth::keys::CallIdentity>(json).unwrap().encode()
    }

    /// A call's [`crate::audit::Attempt`]s given as a JSON array.
    pub fn attempts(json: &str) -> Vec<u8> {
        crate::audit::encode_attempts(&crate::wire::from_str::<Vec<crate::audit::Attempt>>(json).unwrap())
    }

    /// [`crate::wire::usage::Usage`] given as JSON.
    pub fn usage(json: &str) -> Vec<u8> {
        crate::wire::from_str::<crate::wire::usage::Usage>(json).unwrap().encode()
    }

    /// [`crate::wire::facts::AnswerFacts`] given as JSON.
    pub fn facts(json: &str) -> Vec<u8> {
        crate::wire::from_str::<crate::wire::facts::AnswerFacts>(json).unwrap().encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::{At, FromConfig, Obj, Read};
    use crate::wire::tree::Value;

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Inner {
        n: u64,
    }

    impl FromConfig for Inner {
        fn read(v: &Value, at: &At) -> Read<Self> {
            let o = Obj::new(v, at, "Inner", None)?;
            Ok(Inner { n: o.req("n")? })
        }
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    impl FromConfig for Outer {
        fn read(v: &Value, at: &At) -> Read<Self> {
            let o = Obj::new(v, at, "Outer", None)?;
            Ok(Outer { inner: o.req("inner")? })
        }
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Listed {
        keys: Vec<Key>,
        tenants: crate::config::NameMap<Inner>,
    }

    impl FromConfig for Listed {
        fn read(v: &Value, at: &At) -> Read<Self> {
            let o = Obj::new(v, at, "Listed", Some(&["keys", "tenants"]))?;
            Ok(Listed { keys: o.req("keys")?, tenants: o.req("tenants")? })
        }
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Key {
        id: String,
        sha256: String,
    }

    impl FromConfig for Key {
        fn read(v: &Value, at: &At) -> Read<Self> {
            let o = Obj::new(v, at, "Key", Some(&["id", "sha256"]))?;
            Ok(Key { id: o.req("id")?, sha256: o.req("sha256")? })
        }
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = parse_config::<Outer>("f", br#"{"inner": {"n": "x"}}"#).unwrap_err();
        assert_eq!((e.filter.as_str(), e.field.as_str()), ("f", "inner.n"));
        assert!(e.to_string().starts_with("f: invalid configuration at `inner.n`: invalid type: string \"x\""), "{e}");
        let e = parse_config::<Outer>("f", b"  ").unwrap_err();
        assert!(e.field.is_empty() && e.problem.contains("empty"), "{e}");
        let cases: [(&str, &str); 7] = [
            // Across lines, in a map, after earlier entries.
            (
                "{\n \"keys\": [],\n \"tenants\": {\"a\": {\"n\": 1}, \"*\": {\"n\": -1}}}",
                "at `tenants.*.n`: invalid value",
            ),
            // In an array, with strings that hold brackets, commas and escaped quotes.
            (
                r#"{"keys": [{"id": "a,]}\"", "sha256": "x"}, {"id": "b", "sha256": 5}], "tenants": {}}"#,
                "at `keys[1].sha256`: invalid type: integer",
            ),
            (r#"{"keys": [{"id": "a", "sha": "x"}], "tenants": {}}"#, "at `keys[0].sha`: unknown field `sha`"),
            (r#"{"keys": [{"id": "a"}], "tenants": {}}"#, "at `keys[0]`: missing field `sha256`"),
            (r#"{"keys": [], "tenants": {}, "extra": 1}"#, "at `extra`: unknown field `extra`"),
            (r#"{"keys": [}"#, "at `keys"),
            // A key given twice in one object (a parsed value would keep the last silently);
            // the same key in two objects is not one.
            (
                r#"{"keys": [{"id": "a", "sha256": "x", "id": "b"}], "tenants": {}}"#,
                "at `keys[0].id`: duplicate field `id`",
            ),
        ];
        for (raw, want) in cases {
            let e = parse_config::<Listed>("f", raw.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{raw}: {e}");
            assert!(!e.contains(" at line "), "{e}");
        }
        assert!(parse_config::<Listed>("f", br#"{"keys": [{"id": "a", "sha256": "x"}, {"id": "b", "sha256": "y"}], "tenants": {"a": {"n": 1}, "b": {"n": 1}}}"#).is_ok());
        // Text that is not JSON is placed where the parser stopped, a key given twice before it
        // notwithstanding.
        let e = parse_config::<Listed>("f", br#"{"keys": [], "keys": [], "tenants": {"a": {"n": x}}}"#).unwrap_err();
        assert_eq!(e.field, "tenants.a.n", "{e}");
        // Many keys in one object are checked for copies in one pass (a set, not a list).
        let many: String = (0..20_000).map(|i| format!("\"t{i}\": {{\"n\": 1}}")).collect::<Vec<_>>().join(",");
        let raw = format!("{{\"keys\": [], \"tenants\": {{{many}, \"t7\": {{\"n\": 2}}}}}}");
        assert_eq!(duplicate_key_at(raw.as_bytes()), Some(("t7".into(), "tenants.t7".into())));
        // Nothing a caller could send makes the path finder panic.
        for raw in [&b"{\"a\": \"\\"[..], b"]]]}}", b"\"", b"{\"a\":[[[", b"\xff\xfe{\""] {
            let _ = json_path_at(raw, raw.len());
            let _ = json_path_at(raw, usize::MAX);
            let _ = duplicate_key_at(raw);
        }
    }
}
