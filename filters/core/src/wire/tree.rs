//! JSON trees: [`Value`], [`Map`] and [`Number`], the gateway's own (they were `serde_json`'s).
//!
//! The same shapes and the same answers as `serde_json`'s types, with one difference in how a
//! map holds its members: a vector kept sorted by key, not a B-tree. The order is the same
//! (a tree is written byte for byte as before, keys in byte order), a lookup is a binary search
//! over one allocation, and each lookup, insert or removal is a call: `serde_json`'s map
//! methods are `#[inline]`, so every `get("key")` in the gateway compiled a B-tree search of
//! its own. A map read from text is built once (its members sorted, a repeated key's last
//! value kept), not member by member.
//!
//! Where `serde_json` panics (indexing into a value that is not an object or array to
//! assign), these do not: a `Value` that is not an object becomes an empty one.

use crate::text::Text;
use std::borrow::Cow;
use std::fmt;

/// Any JSON value.
#[derive(Debug, Default, PartialEq)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map<String, Value>),
}

static NULL: Value = Value::Null;

/// A copy of the tree (one function: a derived `clone` is inlined where it is called).
impl Clone for Value {
    #[inline(never)]
    fn clone(&self) -> Value {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(*b),
            Value::Number(n) => Value::Number(*n),
            Value::String(s) => Value::String(s.own()),
            Value::Array(a) => Value::Array(a.clone()),
            Value::Object(m) => Value::Object(m.clone()),
        }
    }
}

/// A JSON number: an unsigned or a negative integer, or a finite float (as `serde_json` keeps
/// one: `1` and `1.0` are different numbers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Number(N);

#[derive(Clone, Copy, Debug, PartialEq)]
enum N {
    PosInt(u64),
    NegInt(i64),
    Float(f64),
}

impl Number {
    /// A float as a number; `None` when it is not finite (JSON has no such number).
    pub fn from_f64(f: f64) -> Option<Number> {
        f.is_finite().then_some(Number(N::Float(f)))
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self.0 {
            N::PosInt(n) => Some(n),
            N::NegInt(_) | N::Float(_) => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.0 {
            N::PosInt(n) => i64::try_from(n).ok(),
            N::NegInt(n) => Some(n),
            N::Float(_) => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        Some(match self.0 {
            N::PosInt(n) => n as f64,
            N::NegInt(n) => n as f64,
            N::Float(f) => f,
        })
    }

    pub fn is_u64(&self) -> bool {
        matches!(self.0, N::PosInt(_))
    }

    pub fn is_i64(&self) -> bool {
        self.as_i64().is_some()
    }

    pub fn is_f64(&self) -> bool {
        matches!(self.0, N::Float(_))
    }
}

impl From<u64> for Number {
    fn from(n: u64) -> Number {
        Number(N::PosInt(n))
    }
}

impl From<i64> for Number {
    fn from(n: i64) -> Number {
        if n < 0 {
            Number(N::NegInt(n))
        } else {
            Number(N::PosInt(n as u64))
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::wire::write::to_string(self))
    }
}

/// A JSON object: members sorted by key, each key once.
#[derive(Clone, Debug, PartialEq)]
pub struct Map<K = String, V = Value> {
    members: Vec<(K, V)>,
}

impl Default for Map<String, Value> {
    fn default() -> Self {
        Map::new()
    }
}

impl Map<String, Value> {
    pub fn new() -> Self {
        Map { members: Vec::new() }
    }

    /// An empty map with room for `n` members.
    #[inline(never)]
    pub fn with_capacity(n: usize) -> Self {
        Map { members: Vec::with_capacity(n) }
    }

    /// Where `key` is, or where it would go.
    #[inline(never)]
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.members.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    #[inline(never)]
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.find(key).ok().and_then(|i| self.members.get(i)).map(|(_, v)| v)
    }

    #[inline(never)]
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        let i = self.find(key).ok()?;
        self.members.get_mut(i).map(|(_, v)| v)
    }

    #[inline(never)]
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; the value it had, if any.
    #[inline(never)]
    pub fn insert(&mut self, key: String, value: Value) -> Option<Value> {
        match self.find(&key) {
            Ok(i) => self.members.get_mut(i).map(|(_, v)| std::mem::replace(v, value)),
            Err(i) => {
                self.members.insert(i, (key, value));
                None
            }
        }
    }

    /// Sets `key` to `value` (what [`obj!`](crate::wire::obj) builds an object with).
    #[inline(never)]
    pub fn with(&mut self, key: &str, value: Value) {
        self.insert(key.to_owned(), value);
    }

    #[inline(never)]
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.find(key).ok()?;
        Some(self.members.remove(i).1)
    }

    /// The value at `key`, inserted as `null` when absent.
    #[inline(never)]
    pub fn slot(&mut self, key: &str) -> &mut Value {
        let i = match self.find(key) {
            Ok(i) => i,
            Err(i) => {
                self.members.insert(i, (key.to_owned(), Value::Null));
                i
            }
        };
        match self.members.get_mut(i) {
            Some((_, v)) => v,
            // (Unreachable: `i` was found or inserted just now.)
            None => unreachable_slot(),
        }
    }

    /// The members in key order.
    pub fn iter(&self) -> Iter<'_> {
        self.members.iter().map(pair)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Value)> {
        self.members.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.members.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.members.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.members.iter_mut().map(|(_, v)| v)
    }

    /// Keeps the members `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut Value) -> bool) {
        self.members.retain_mut(|(k, v)| keep(k, v));
    }

    /// A map of `members` in any order (a repeated key's last value kept), sorted once.
    pub fn from_members(mut members: Vec<(String, Value)>) -> Self {
        if members.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)) {
            return Map { members };
        }
        // Positions ordered by (key, position), so a repeated key's last comes last of its run.
        let mut order: Vec<usize> = (0..members.len()).collect();
        crate::sort::sort_by(&mut order, |&a, &b| {
            let (ka, kb) = (members.get(a).map(|m| &m.0), members.get(b).map(|m| &m.0));
            (ka, a) < (kb, b)
        });
        let mut out: Vec<(String, Value)> = Vec::with_capacity(members.len());
        for (n, &i) in order.iter().enumerate() {
            let Some(m) = members.get_mut(i).map(std::mem::take) else { continue };
            let repeated = order.get(n + 1).and_then(|&j| members.get(j)).is_some_and(|next| next.0 == m.0);
            if !repeated {
                out.push(m);
            }
        }
        Map { members: out }
    }
}

#[cold]
fn unreachable_slot() -> ! {
    std::process::abort()
}

type Pair<'a> = (&'a String, &'a Value);

fn pair(m: &(String, Value)) -> Pair<'_> {
    (&m.0, &m.1)
}

/// A map's members in key order, by reference.
pub type Iter<'a> = std::iter::Map<std::slice::Iter<'a, (String, Value)>, fn(&'a (String, Value)) -> Pair<'a>>;

impl<'a> IntoIterator for &'a Map<String, Value> {
    type Item = Pair<'a>;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Map<String, Value> {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.members.into_iter()
    }
}

impl Extend<(String, Value)> for Map<String, Value> {
    fn extend<I: IntoIterator<Item = (String, Value)>>(&mut self, members: I) {
        for (k, v) in members {
            self.insert(k, v);
        }
    }
}

impl FromIterator<(String, Value)> for Map<String, Value> {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(members: I) -> Self {
        Map::from_members(members.into_iter().collect())
    }
}

/// `map["key"]`: the value, or `null` when absent (`serde_json` panics).
impl std::ops::Index<&str> for Map<String, Value> {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NULL)
    }
}

impl std::ops::IndexMut<&str> for Map<String, Value> {
    fn index_mut(&mut self, key: &str) -> &mut Value {
        self.slot(key)
    }
}

/// What a value is indexed by: a key (`str`, `String`) or a position (`usize`).
pub trait Index {
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value>;
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value>;
    /// The value at this index, made to exist: `null` inserted at an absent key, a value that
    /// is not an object made an empty one; an array's position past its end is `null`s added.
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value;
}

impl Index for str {
    #[inline(never)]
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        match v {
            Value::Object(m) => m.get(self),
            _ => None,
        }
    }
    #[inline(never)]
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        match v {
            Value::Object(m) => m.get_mut(self),
            _ => None,
        }
    }
    #[inline(never)]
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        match v {
            Value::Object(m) => m.slot(self),
            _ => unreachable_slot(),
        }
    }
}

impl Index for String {
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        self.as_str().index_into(v)
    }
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        self.as_str().index_into_mut(v)
    }
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
        self.as_str().index_or_insert(v)
    }
}

impl Index for usize {
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        match v {
            Value::Array(a) => a.get(*self),
            _ => None,
        }
    }
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        match v {
            Value::Array(a) => a.get_mut(*self),
            _ => None,
        }
    }
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
        if !v.is_array() {
            *v = Value::Array(Vec::new());
        }
        match v {
            Value::Array(a) => {
                if a.len() <= *self {
                    a.resize(*self + 1, Value::Null);
                }
                match a.get_mut(*self) {
                    Some(item) => item,
                    None => unreachable_slot(),
                }
            }
            _ => unreachable_slot(),
        }
    }
}

impl<T: Index + ?Sized> Index for &T {
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        (**self).index_into(v)
    }
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        (**self).index_into_mut(v)
    }
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
        (**self).index_or_insert(v)
    }
}

impl<I: Index> std::ops::Index<I> for Value {
    type Output = Value;
    /// The value at `index`, or `null` when there is none.
    fn index(&self, index: I) -> &Value {
        index.index_into(self).unwrap_or(&NULL)
    }
}

impl<I: Index> std::ops::IndexMut<I> for Value {
    fn index_mut(&mut self, index: I) -> &mut Value {
        index.index_or_insert(self)
    }
}

impl Value {
    pub fn get<I: Index>(&self, index: I) -> Option<&Value> {
        index.index_into(self)
    }

    pub fn get_mut<I: Index>(&mut self, index: I) -> Option<&mut Value> {
        index.index_into_mut(self)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_boolean(&self) -> bool {
        matches!(self, Value::Bool(_))
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Value::Number(_))
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Value::String(_))
    }

    pub fn is_array(&self) -> bool {
        matches!(self, Value::Array(_))
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    pub fn is_u64(&self) -> bool {
        matches!(self, Value::Number(n) if n.is_u64())
    }

    pub fn is_i64(&self) -> bool {
        matches!(self, Value::Number(n) if n.is_i64())
    }

    pub fn is_f64(&self) -> bool {
        matches!(self, Value::Number(n) if n.is_f64())
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        self.as_number().and_then(Number::as_u64)
    }

    pub fn as_i64(&self) -> Option<i64> {
        self.as_number().and_then(Number::as_i64)
    }

    pub fn as_f64(&self) -> Option<f64> {
        self.as_number().and_then(Number::as_f64)
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_array_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map<String, Value>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Map<String, Value>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The value, leaving `null` in its place.
    pub fn take(&mut self) -> Value {
        std::mem::take(self)
    }

    /// The value a JSON Pointer (RFC 6901: `/choices/0/message`, `~1` for `/`, `~0` for `~`)
    /// names; `""` is the value itself.
    #[inline(never)]
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        let mut v = self;
        for token in tokens(pointer)? {
            v = step(v, &token)?;
        }
        Some(v)
    }

    #[inline(never)]
    pub fn pointer_mut(&mut self, pointer: &str) -> Option<&mut Value> {
        let mut v = self;
        for token in tokens(pointer)? {
            v = match v {
                Value::Object(m) => m.get_mut(&token)?,
                Value::Array(a) => a.get_mut(array_index(&token)?)?,
                _ => return None,
            };
        }
        Some(v)
    }
}

/// A pointer's reference tokens, unescaped; `None` for a pointer that is neither empty nor
/// starts with `/`.
fn tokens(pointer: &str) -> Option<impl Iterator<Item = Cow<'_, str>>> {
    let rest = match pointer {
        "" => None,
        p => Some(p.strip_prefix('/')?),
    };
    Some(rest.into_iter().flat_map(|r| r.parts(b'/')).map(|t| {
        if t.contains('~') {
            Cow::Owned(t.replace_all("~1", "/").replace_all("~0", "~"))
        } else {
            Cow::Borrowed(t)
        }
    }))
}

fn step<'v>(v: &'v Value, token: &str) -> Option<&'v Value> {
    match v {
        Value::Object(m) => m.get(token),
        Value::Array(a) => a.get(array_index(token)?),
        _ => None,
    }
}

/// A pointer token as an array position: digits, no sign, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.int_as()
}

impl fmt::Display for Value {
    /// The value's JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::wire::write::to_string(self))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<Cow<'_, str>> for Value {
    fn from(s: Cow<'_, str>) -> Value {
        Value::String(s.into_owned())
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Value {
        Value::Number(n)
    }
}

impl From<Map<String, Value>> for Value {
    fn from(m: Map<String, Value>) -> Value {
        Value::Object(m)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Value {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// A float as a number; `null` when it is not finite.
impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// (One copy: built at each of some 180 places, a number cost 35 bytes there.)
impl From<u64> for Value {
    #[inline(never)]
    fn from(n: u64) -> Value {
        Value::Number(Number::from(n))
    }
}

macro_rules! from_unsigned {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Value {
                Value::from(n as u64)
            }
        }
    )*};
}
from_unsigned!(u32, u16, u8, usize);

macro_rules! from_signed {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Value {
                Value::Number(Number::from(n as i64))
            }
        }
    )*};
}
from_signed!(i64, i32);

impl<T: Into<Value>> FromIterator<T> for Value {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Value {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

impl PartialEq<str> for Value {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for Value {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl PartialEq<String> for Value {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == Some(other.as_str())
    }
}

impl PartialEq<Value> for str {
    fn eq(&self, other: &Value) -> bool {
        other == self
    }
}

impl PartialEq<Value> for &str {
    fn eq(&self, other: &Value) -> bool {
        other == *self
    }
}

impl PartialEq<Value> for String {
    fn eq(&self, other: &Value) -> bool {
        other == self.as_str()
    }
}

impl PartialEq<bool> for Value {
    fn eq(&self, other: &bool) -> bool {
        self.as_bool() == Some(*other)
    }
}

macro_rules! eq_numbers {
    ($($t:ty => $as:ident as $w:ty),*) => {$(
        impl PartialEq<$t> for Value {
            fn eq(&self, other: &$t) -> bool {
                self.$as() == Some(*other as $w)
            }
        }
        impl PartialEq<Value> for $t {
            fn eq(&self, other: &Value) -> bool {
                other == self
            }
        }
    )*};
}
eq_numbers!(u64 => as_u64 as u64, u32 => as_u64 as u64, usize => as_u64 as u64,
    i64 => as_i64 as i64, i32 => as_i64 as i64, f64 => as_f64 as f64);

/// The test oracle's trees (`serde_json::json!`), converted, and compared across the two types.
#[cfg(test)]
mod oracle {
    use super::{Map, Number, Value};

    impl From<serde_json::Value> for Value {
        fn from(v: serde_json::Value) -> Value {
            match v {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::Bool(b) => Value::Bool(b),
                serde_json::Value::Number(n) => Value::Number(match (n.as_u64(), n.as_i64(), n.as_f64()) {
                    (Some(u), _, _) => Number::from(u),
                    (None, Some(i), _) => Number::from(i),
                    (_, _, f) => Number::from_f64(f.unwrap_or(0.0)).unwrap_or(Number::from(0u64)),
                }),
                serde_json::Value::String(s) => Value::String(s),
                serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
                serde_json::Value::Object(m) => {
                    Value::Object(Map::from_members(m.into_iter().map(|(k, v)| (k, Value::from(v))).collect()))
                }
            }
        }
    }

    impl From<&Value> for serde_json::Value {
        fn from(v: &Value) -> serde_json::Value {
            match v {
                Value::Null => serde_json::Value::Null,
                Value::Bool(b) => serde_json::Value::Bool(*b),
                Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                    (Some(u), _, _) => u.into(),
                    (None, Some(i), _) => i.into(),
                    (_, _, f) => f.into(),
                },
                Value::String(s) => serde_json::Value::String(s.clone()),
                Value::Array(a) => serde_json::Value::Array(a.iter().map(serde_json::Value::from).collect()),
                Value::Object(m) => {
                    serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v))).collect())
                }
            }
        }
    }

    impl PartialEq<serde_json::Value> for Value {
        #[allow(clippy::cmp_owned)] // (The conversion is the comparison.)
        fn eq(&self, other: &serde_json::Value) -> bool {
            serde_json::Value::from(self) == *other
        }
    }

    impl PartialEq<Value> for serde_json::Value {
        #[allow(clippy::cmp_owned)]
        fn eq(&self, other: &Value) -> bool {
            *self == serde_json::Value::from(other)
        }
    }

    impl<'de> serde::Deserialize<'de> for Value {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
            serde_json::Value::deserialize(d).map(Value::from)
        }
    }

    impl serde::Serialize for Value {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serde_json::Value::from(self).serialize(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Map, Value};

    fn tree(json: &str) -> Value {
        crate::wire::from_str(json).unwrap()
    }

    #[test]
    fn a_map_is_read_sorted_with_a_repeated_keys_last_value() {
        let v = tree(r#"{"b":1,"a":2,"c":3,"a":4,"b":5}"#);
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!((v["a"].as_u64(), v["b"].as_u64(), v["c"].as_u64()), (Some(4), Some(5), Some(3)));
        // As serde_json's map holds the same text.
        let serde: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":2,"c":3,"a":4,"b":5}"#).unwrap();
        assert_eq!(v, serde);
        assert_eq!(crate::wire::write::to_string(&v), serde.to_string());
    }

    #[test]
    fn a_large_unsorted_map_is_read_as_serde_reads_it() {
        let members: Vec<String> = (0..2000u32).map(|i| format!("\"k{}\":{i}", (i * 7919) % 1000)).collect();
        let text = format!("{{{}}}", members.join(","));
        let v = tree(&text);
        let serde: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1000);
        assert_eq!(crate::wire::write::to_string(&v), serde.to_string());
    }

    #[test]
    fn inserts_and_removals_keep_the_order_and_one_value_per_key() {
        let mut m = Map::new();
        for k in ["m", "c", "x", "a", "c"] {
            m.insert(k.to_string(), Value::from(k));
        }
        assert_eq!(m.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "c", "m", "x"]);
        assert_eq!(m.insert("c".into(), Value::Null), Some(Value::from("c")));
        assert_eq!(m.remove("m"), Some(Value::from("m")));
        assert_eq!(m.remove("m"), None);
        assert!(m.contains_key("x") && !m.contains_key("m"));
        assert_eq!(crate::wire::write::to_string(&Value::Object(m)), r#"{"a":"a","c":null,"x":"x"}"#);
    }

    #[test]
    fn indexing_never_panics() {
        let mut v = tree(r#"{"a":[1,{"b":"x"}],"s":"t"}"#);
        assert_eq!(v["a"][1]["b"], "x");
        assert!(v["missing"][3]["z"].is_null());
        assert!(v["s"]["not an object"].is_null());
        v["new"]["deep"] = Value::from(true);
        assert_eq!(v.pointer("/new/deep"), Some(&Value::Bool(true)));
        // A string indexed to assign becomes an object, where serde_json panics.
        v["s"]["k"] = Value::from(1u64);
        assert_eq!(v["s"], tree(r#"{"k":1}"#));
        v["a"][3] = Value::from("end");
        assert_eq!(v["a"], tree(r#"[1,{"b":"x"},null,"end"]"#));
    }

    #[test]
    fn pointers_as_rfc_6901_reads_them() {
        let v = tree(r#"{"a/b":{"m~n":[10,20]},"":{"0":"zero"}}"#);
        assert_eq!(v.pointer(""), Some(&v));
        assert_eq!(v.pointer("/a~1b/m~0n/1"), Some(&Value::from(20u64)));
        assert_eq!(v.pointer("//0"), Some(&Value::from("zero")));
        for bad in ["a", "/a~1b/m~0n/01", "/a~1b/m~0n/+1", "/a~1b/m~0n/2", "/x"] {
            assert_eq!(v.pointer(bad), None, "{bad}");
        }
        let s: serde_json::Value = serde_json::from_str(r#"{"a/b":{"m~n":[10,20]},"":{"0":"zero"}}"#).unwrap();
        for p in ["", "/a~1b/m~0n/1", "//0", "a", "/a~1b/m~0n/01", "/a~1b/m~0n/2"] {
            assert_eq!(v.pointer(p).map(serde_json::Value::from), s.pointer(p).cloned(), "{p}");
        }
    }

    #[test]
    fn numbers_compare_as_serde_jsons_do() {
        let v = tree(r#"[1,-1,1.0,18446744073709551615]"#);
        assert_eq!((v[0] == 1u64, v[1] == -1i64, v[2] == 1.0, v[2] == 1u64), (true, true, true, false));
        assert_eq!(v[3].as_u64(), Some(u64::MAX));
        assert_eq!(v[3].as_i64(), None);
        assert_eq!(Value::from(f64::NAN), Value::Null);
    }
}
