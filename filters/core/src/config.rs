//! Hand-written readers of the configuration's types, over a `crate::wire::tree::Value`.
//!
//! A derived `Deserialize` costs each type a visitor of its own (field matching by string and by
//! bytes, a sequence form, a slot per field) monomorphised for the parser: on average 2.6 KB of
//! the module per type ("What holds the size" in the README). A type read here costs one call
//! per field, to readers shared by every type: [`Obj::req`], [`Obj::opt`] and [`Obj::or`].
//!
//! [`crate::parse_config`] parses a filter's configuration into a `Value` once (code the module
//! has anyway) and reads its type from it. Errors say what serde's did, with the exact path of
//! the value refused (`tenants.acme.concurrent`, `keys[0]`).
//!
//! A type's reader starts from its `Default` and sets each member in turn
//! (`#[allow(clippy::field_reassign_with_default)]`): a member refused then drops the value
//! whole, by one call, where a struct literal of `?`s drops the members read so far one by one
//! at each of them (4 KB of the module over the 20 readers).

use crate::text::{Joined, Put, Text};
use std::fmt::Write as _;

use crate::wire::tree::{Map, Value};

/// Where a value is, from the value a reader started at: its keys and indices, outermost first,
/// as a chain on the stack (built into a string only for an error).
#[derive(Clone, Copy)]
pub enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    /// The path as [`crate::json_path_at`] writes it: `tenants.acme.concurrent`, `keys[0].sha256`.
    pub fn path(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            At::Root => {}
            At::Key(parent, k) => {
                parent.write(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.put(k);
            }
            At::Index(parent, i) => {
                parent.write(out);
                let _ = write!(out, "[{i}]");
            }
        }
    }
}

/// A configuration value refused: where (relative to where reading started) and why, in serde's
/// words.
///
/// Boxed: a `Result` of a configuration read then carries a pointer, not two strings, through
/// every `?` of the readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(Box<ReadErrorParts>);

/// What [`ReadError`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadErrorParts {
    pub path: String,
    pub problem: String,
}

impl std::ops::Deref for ReadError {
    type Target = ReadErrorParts;
    fn deref(&self) -> &ReadErrorParts {
        &self.0
    }
}

impl ReadError {
    #[cold]
    #[inline(never)]
    pub fn new(at: &At, problem: impl Into<String>) -> ReadError {
        ReadError(Box::new(ReadErrorParts { path: at.path(), problem: problem.into() }))
    }

    /// Its path and problem, taken out.
    pub fn into_parts(self) -> (String, String) {
        let r = *self.0;
        (r.path, r.problem)
    }

    /// serde's "invalid type: string \"x\", expected u64".
    #[cold]
    #[inline(never)]
    pub fn invalid_type(at: &At, v: &Value, expected: &str) -> ReadError {
        ReadError::new(at, format!("invalid type: {}, expected {expected}", unexpected(v)))
    }
}

/// How serde names a value it did not expect.
fn unexpected(v: &Value) -> String {
    match v {
        Value::Null => "null".own(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => format!("integer `{u}`"),
            (None, Some(i)) => format!("integer `{i}`"),
            // As serde_json writes a float (`1.0`, not `1`; `2e+20`, where serde writes every
            // digit): core's float formatting would be linked for this alone.
            _ => format!("floating point `{n}`"),
        },
        // Quoted as JSON quotes it (not `Debug`: that links Unicode tables for this alone).
        Value::String(_) => format!("string {}", crate::wire::write::to_string(v)),
        Value::Array(_) => "sequence".own(),
        Value::Object(_) => "map".own(),
    }
}

/// serde's list of what was expected: "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => "there are none".own(),
        [a] => format!("`{a}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("one of {}", quoted.joined(", "))
        }
    }
}

pub type Read<T> = Result<T, ReadError>;

/// A type read from a configuration value.
pub trait FromConfig: Sized {
    fn read(v: &Value, at: &At) -> Read<Self>;
}

impl FromConfig for String {
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        match v {
            Value::String(s) => Ok(s.own()),
            _ => Err(ReadError::invalid_type(at, v, "a string")),
        }
    }
}

/// Kept as it is (for tools that look at a configuration's JSON).
impl FromConfig for Value {
    fn read(v: &Value, _at: &At) -> Read<Self> {
        Ok(v.clone())
    }
}

impl FromConfig for bool {
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        v.as_bool().ok_or_else(|| ReadError::invalid_type(at, v, "a boolean"))
    }
}

/// An unsigned integer up to `max`: serde's "invalid type" for what is not an integer,
/// "invalid value" for one out of range.
#[inline(never)]
fn unsigned(v: &Value, at: &At, max: u64, name: &str) -> Read<u64> {
    match v {
        Value::Number(n) if n.is_u64() || n.is_i64() => match n.as_u64() {
            Some(u) if u <= max => Ok(u),
            _ => Err(ReadError::new(at, format!("invalid value: {}, expected {name}", unexpected(v)))),
        },
        _ => Err(ReadError::invalid_type(at, v, name)),
    }
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl FromConfig for $t {
            fn read(v: &Value, at: &At) -> Read<Self> {
                unsigned(v, at, <$t>::MAX as u64, stringify!($t)).map(|u| u as $t)
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64, usize);

impl FromConfig for f64 {
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        v.as_f64().ok_or_else(|| ReadError::invalid_type(at, v, "f64"))
    }
}

impl<T: FromConfig> FromConfig for Option<T> {
    fn read(v: &Value, at: &At) -> Read<Self> {
        match v {
            Value::Null => Ok(None),
            _ => T::read(v, at).map(Some),
        }
    }
}

impl<T: FromConfig> FromConfig for Vec<T> {
    fn read(v: &Value, at: &At) -> Read<Self> {
        let Value::Array(items) = v else { return Err(ReadError::invalid_type(at, v, "a sequence")) };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(T::read(item, &At::Index(at, i))?);
        }
        Ok(out)
    }
}

impl<T: FromConfig> FromConfig for NameMap<T> {
    fn read(v: &Value, at: &At) -> Read<Self> {
        let Value::Object(m) = v else { return Err(ReadError::invalid_type(at, v, "a map")) };
        let mut out = NameMap::default();
        for (k, item) in m {
            out.insert(k.own(), T::read(item, &At::Key(at, k))?);
        }
        Ok(out)
    }
}

/// The configuration's tables (aliases, providers, tenants, prices, …): values by name, the
/// names kept sorted and found by binary search. Unlike a `HashMap`, whose table code is
/// compiled again for every value type (about 2-5 KB of the module each), all but a few lines
/// here are one copy for every table; a lookup compares a few names instead of hashing one,
/// and iteration goes in name order.
#[derive(Debug, Clone, PartialEq)]
pub struct NameMap<T> {
    names: Vec<String>,
    values: Vec<T>,
}

impl<T> Default for NameMap<T> {
    fn default() -> Self {
        NameMap { names: Vec::new(), values: Vec::new() }
    }
}

/// Where `name` is in the sorted `names`, or where it would go.
#[inline(never)]
fn search(names: &[String], name: &str) -> Result<usize, usize> {
    names.binary_search_by(|n| n.as_str().cmp(name))
}

impl<T> NameMap<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<&T> {
        search(&self.names, name).ok().and_then(|i| self.values.get(i))
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        search(&self.names, name).ok().and_then(|i| self.values.get_mut(i))
    }

    pub fn contains_key(&self, name: &str) -> bool {
        search(&self.names, name).is_ok()
    }

    /// Puts `value` under `name`; returns the value it replaced.
    pub fn insert(&mut self, name: String, value: T) -> Option<T> {
        match search(&self.names, &name) {
            Ok(i) => self.values.get_mut(i).map(|v| std::mem::replace(v, value)),
            Err(i) => {
                self.names.insert(i, name);
                self.values.insert(i, value);
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn keys(&self) -> std::slice::Iter<'_, String> {
        self.names.iter()
    }

    pub fn values(&self) -> std::slice::Iter<'_, T> {
        self.values.iter()
    }

    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.values.iter_mut()
    }

    pub fn iter(&self) -> std::iter::Zip<std::slice::Iter<'_, String>, std::slice::Iter<'_, T>> {
        self.names.iter().zip(self.values.iter())
    }
}

impl<'a, T> IntoIterator for &'a NameMap<T> {
    type Item = (&'a String, &'a T);
    type IntoIter = std::iter::Zip<std::slice::Iter<'a, String>, std::slice::Iter<'a, T>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T> IntoIterator for NameMap<T> {
    type Item = (String, T);
    type IntoIter = std::iter::Zip<std::vec::IntoIter<String>, std::vec::IntoIter<T>>;
    fn into_iter(self) -> Self::IntoIter {
        self.names.into_iter().zip(self.values)
    }
}

/// A later value under a name already given replaces the earlier one, as in a `HashMap`.
impl<T> FromIterator<(String, T)> for NameMap<T> {
    fn from_iter<I: IntoIterator<Item = (String, T)>>(iter: I) -> Self {
        let mut out = NameMap::default();
        for (k, v) in iter {
            out.insert(k, v);
        }
        out
    }
}

/// A unit enum named by a string (serde's `rename_all`): the variant whose name matches.
pub fn variant<T: Copy>(v: &Value, at: &At, variants: &[(&str, T)]) -> Read<T> {
    let Value::String(s) = v else { return Err(ReadError::invalid_type(at, v, "a string")) };
    match variants.iter().find(|(n, _)| n == s) {
        Some((_, t)) => Ok(*t),
        None => {
            let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
            Err(ReadError::new(at, format!("unknown variant `{s}`, expected {}", one_of(&names))))
        }
    }
}

/// The members of a configuration object, read by name.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    at: &'a At<'a>,
}

impl<'a> Obj<'a> {
    /// The object at `v`; with `fields`, a member not among them is refused (serde's
    /// `deny_unknown_fields`), without, ignored. `name` is the type's, for a value that is not an
    /// object ("expected struct LimitSpec").
    #[inline(never)]
    pub fn new(v: &'a Value, at: &'a At<'a>, name: &str, fields: Option<&[&str]>) -> Read<Obj<'a>> {
        let Value::Object(map) = v else { return Err(ReadError::invalid_type(at, v, &format!("struct {name}"))) };
        if let Some(fields) = fields {
            if let Some(k) = map.keys().find(|k| !fields.contains(&k.as_str())) {
                return Err(ReadError::new(
                    &At::Key(at, k),
                    format!("unknown field `{k}`, expected {}", one_of(fields)),
                ));
            }
        }
        Ok(Obj { map, at })
    }

    #[inline(never)]
    fn member(&self, k: &str) -> Option<&'a Value> {
        self.map.get(k)
    }

    /// A member that must be there.
    #[inline(never)]
    pub fn req<T: FromConfig>(&self, k: &str) -> Read<T> {
        match self.member(k) {
            Some(v) => T::read(v, &At::Key(self.at, k)),
            None => Err(ReadError::new(self.at, format!("missing field `{k}`"))),
        }
    }

    /// A member that may be absent (serde's `default` on an `Option`): absent and `null` are
    /// `None`.
    #[inline(never)]
    pub fn opt<T: FromConfig>(&self, k: &str) -> Read<Option<T>> {
        match self.member(k) {
            Some(v) => Option::<T>::read(v, &At::Key(self.at, k)),
            None => Ok(None),
        }
    }

    /// A member that takes `default()` when absent (serde's `default`); `null` is read as a
    /// value (and refused unless the type takes it). (A function, not a value: a default made
    /// and dropped unused when the member is there cost each type read this way its drop.)
    #[inline(never)]
    pub fn or<T: FromConfig>(&self, k: &str, default: fn() -> T) -> Read<T> {
        match self.member(k) {
            Some(v) => T::read(v, &At::Key(self.at, k)),
            None => Ok(default()),
        }
    }
}

/// Reads a type from JSON text (tools and tests; filters use [`crate::parse_config`], which
/// names the filter too).
pub fn from_str<T: FromConfig>(json: &str) -> Result<T, String> {
    // (Read as bytes, as every JSON read is: see `crate::wire::from_str`.)
    let v: Value = crate::wire::from_slice(json.as_bytes()).map_err(|e| e.to_string())?;
    T::read(&v, &At::Root).map_err(|e| e.to_string())
}

/// Reads a type from a JSON value (tools and tests).
pub fn from_value<T: FromConfig>(v: Value) -> Result<T, String> {
    T::read(&v, &At::Root).map_err(|e| e.to_string())
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "at `{}`: {}", self.path, self.problem)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[derive(Debug, PartialEq)]
    struct Pair {
        a: u64,
        b: Option<String>,
        c: Vec<u8>,
    }

    impl FromConfig for Pair {
        fn read(v: &Value, at: &At) -> Read<Self> {
            let o = Obj::new(v, at, "Pair", Some(&["a", "b", "c"]))?;
            Ok(Pair { a: o.req("a")?, b: o.opt("b")?, c: o.or("c", Vec::new)? })
        }
    }

    fn read(v: Value) -> Read<NameMap<Vec<Pair>>> {
        FromConfig::read(&v, &At::Root)
    }

    #[test]
    fn reads_members_and_names_the_path_of_what_it_refuses() {
        let got = read(json!({"x": [{"a": 1}, {"a": 2, "b": "s", "c": [3]}]})).unwrap();
        assert_eq!(got.get("x").unwrap()[1], Pair { a: 2, b: Some("s".into()), c: vec![3] });
        assert_eq!(got.get("x").unwrap()[0], Pair { a: 1, b: None, c: vec![] });
        let e = |v| read(v).unwrap_err();
        assert_eq!(e(json!({"x": [{"a": 1}, {}]})).path, "x[1]");
        assert_eq!(e(json!({"x": [{"a": 1}, {}]})).problem, "missing field `a`");
        let unknown = e(json!({"x": [{"a": 1, "d": 0}]}));
        assert_eq!(
            (unknown.path.as_str(), unknown.problem.as_str()),
            ("x[0].d", "unknown field `d`, expected one of `a`, `b`, `c`")
        );
        assert_eq!(e(json!({"x": [{"a": "1"}]})).problem, "invalid type: string \"1\", expected u64");
        assert_eq!(e(json!({"x": [{"a": -1}]})).problem, "invalid value: integer `-1`, expected u64");
        assert_eq!(e(json!({"x": [{"a": 1.5}]})).problem, "invalid type: floating point `1.5`, expected u64");
        // Large floats as serde_json writes them (serde writes `200000000000000000000.0`).
        assert_eq!(e(json!({"x": [{"a": 2e20}]})).problem, "invalid type: floating point `2e+20`, expected u64");
        assert_eq!(e(json!({"x": [{"a": 3.0}]})).problem, "invalid type: floating point `3.0`, expected u64");
        assert_eq!(e(json!({"x": [{"a": 1, "c": [300]}]})).problem, "invalid value: integer `300`, expected u8");
        assert_eq!(e(json!({"x": [{"a": 1, "c": [300]}]})).path, "x[0].c[0]");
        assert_eq!(e(json!({"x": [{"a": 1, "c": null}]})).problem, "invalid type: null, expected a sequence");
        assert_eq!(e(json!({"x": [7]})).problem, "invalid type: integer `7`, expected struct Pair");
        // A sequence is not a struct (serde's derived readers took `[1]` as the first field).
        assert_eq!(e(json!({"x": [[1]]})).problem, "invalid type: sequence, expected struct Pair");
        assert_eq!(e(json!({"x": [[1]]})).path, "x[0]");
    }

    #[test]
    fn names_variants_as_serde_does() {
        let vs = [("local", 1), ("closed", 2), ("open", 3)];
        assert_eq!(variant(&json!("closed"), &At::Root, &vs), Ok(2));
        assert_eq!(
            variant(&json!("shut"), &At::Root, &vs).unwrap_err().problem,
            "unknown variant `shut`, expected one of `local`, `closed`, `open`"
        );
        assert_eq!(one_of(&["a", "b"]), "`a` or `b`");
    }
}
