//! Writing JSON text, without serde's serializers.
//!
//! `#[derive(Serialize)]` writes, for every struct, a serializer of its own over serde's
//! generic `Serializer` (and `serde_json` a second copy of `Value`'s for its `Display`). What the
//! gateway writes is a handful of shapes: objects of named members, arrays, strings, numbers and
//! trees. [`WriteJson`] writes each straight into the body's bytes, byte for byte as `serde_json`
//! writes them: the same escapes (`\n`, `\u001f`, nothing beyond ASCII), integers in plain decimal,
//! floats as `zmij` (`serde_json`'s writer) writes them ([`crate::wire::float`]), and a float that
//! is not finite as `null`.
//! [`to_object!`] writes a struct's members in order, skipping those its flags say.

use crate::wire::tree::{Map, Number, Value};
use std::borrow::Cow;

/// A value written as JSON text.
pub trait WriteJson {
    /// Appends the value's JSON text to `out`.
    fn write_json(&self, out: &mut Vec<u8>);
}

/// The JSON text of `v`.
pub fn to_vec<T: WriteJson + ?Sized>(v: &T) -> Vec<u8> {
    // (As serde_json's `to_vec` starts: fewer regrowths for a small object.)
    let mut out = Vec::with_capacity(128);
    v.write_json(&mut out);
    out
}

/// The JSON text of `v`, as a string (what `Value`'s `to_string` gave).
pub fn to_string<T: WriteJson + ?Sized>(v: &T) -> String {
    // Every byte written is UTF-8: strings are copied whole or split at ASCII bytes.
    String::from_utf8(to_vec(v)).unwrap_or_default()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string: quoted, with `"`, `\` and the control characters escaped
/// (`\b \t \n \f \r` by name, the others as `\u00XX`), everything else as it is.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    loop {
        let i = crate::wire::read::plain_run(bytes, run);
        out.extend_from_slice(&bytes[run..i]);
        let Some(&b) = bytes.get(i) else { break };
        let named = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            _ => b'u',
        };
        if named == b'u' {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(&[b'\\', named]);
        }
        run = i + 1;
    }
    out.push(b'"');
}

/// Appends an unsigned integer (the project's one decimal writer, `headers::push_decimal`).
pub fn unsigned(out: &mut Vec<u8>, n: u64) {
    crate::headers::push_decimal(out, n);
}

/// Appends a float as `serde_json` writes one (the shortest text that reads back the same);
/// `null` when it is not finite, as JSON has no such number.
pub fn float(out: &mut Vec<u8>, f: f64) {
    crate::wire::float::write(out, f);
}

fn number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        unsigned(out, u);
    } else if let Some(i) = n.as_i64() {
        out.push(b'-');
        unsigned(out, i.unsigned_abs());
    } else {
        float(out, n.as_f64().unwrap_or(f64::NAN));
    }
}

/// The members of an object being written: `{`, then `"key":value` pairs with commas, then `}`.
pub struct Members<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Members<'o> {
    /// Opens an object in `out`.
    #[inline(never)]
    pub fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Members { out, first: true }
    }

    /// Writes a member. `key` is the member's key written as JSON with its colon (`"id":`),
    /// as [`to_object!`] spells it out once at compile time. (Not inlined: one call per member
    /// is the least code a struct's writer can be.)
    #[inline(never)]
    pub fn member(&mut self, key: &str, value: &dyn WriteJson) {
        self.member_with(key, |out| value.write_json(out));
    }

    /// Writes a member whose value `write` appends itself.
    pub fn member_with(&mut self, key: &str, write: impl FnOnce(&mut Vec<u8>)) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        write(self.out);
    }

    /// Closes the object.
    #[inline(never)]
    pub fn close(self) {
        self.out.push(b'}');
    }
}

/// `()` is `null`, as serde writes it (`logprobs: null`).
impl WriteJson for () {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"null");
    }
}

impl WriteJson for str {
    fn write_json(&self, out: &mut Vec<u8>) {
        string(out, self);
    }
}

impl WriteJson for String {
    fn write_json(&self, out: &mut Vec<u8>) {
        string(out, self);
    }
}

impl WriteJson for Cow<'_, str> {
    fn write_json(&self, out: &mut Vec<u8>) {
        string(out, self);
    }
}

impl WriteJson for bool {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

macro_rules! write_unsigned {
    ($($t:ty),*) => {$(
        impl WriteJson for $t {
            fn write_json(&self, out: &mut Vec<u8>) {
                unsigned(out, u64::from(*self));
            }
        }
    )*};
}
write_unsigned!(u64, u32, u16, u8);

impl WriteJson for usize {
    fn write_json(&self, out: &mut Vec<u8>) {
        unsigned(out, *self as u64);
    }
}

impl WriteJson for f64 {
    fn write_json(&self, out: &mut Vec<u8>) {
        float(out, *self);
    }
}

impl WriteJson for Number {
    fn write_json(&self, out: &mut Vec<u8>) {
        number(out, self);
    }
}

impl WriteJson for Value {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => b.write_json(out),
            Value::Number(n) => number(out, n),
            Value::String(s) => string(out, s),
            Value::Array(items) => items.as_slice().write_json(out),
            Value::Object(m) => m.write_json(out),
        }
    }
}

impl WriteJson for Map<String, Value> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, k);
            out.push(b':');
            v.write_json(out);
        }
        out.push(b'}');
    }
}

impl<T: WriteJson> WriteJson for Option<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl<T: WriteJson> WriteJson for [T] {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            v.write_json(out);
        }
        out.push(b']');
    }
}

impl<T: WriteJson, const N: usize> WriteJson for [T; N] {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.as_slice().write_json(out);
    }
}

impl<T: WriteJson> WriteJson for Vec<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.as_slice().write_json(out);
    }
}

impl<T: WriteJson + ?Sized> WriteJson for &T {
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out);
    }
}

impl<T: WriteJson + ?Sized> WriteJson for Box<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out);
    }
}

/// `impl WriteJson` for a struct of named fields, written as an object in the order given:
///
/// ```ignore
/// to_object!(Attempt {
///     provider: "provider" [],
///     region: "region" [skip_none],
///     started_ms: "started_ms" [skip_zero],
/// });
/// ```
///
/// `skip_none` leaves out a `None`, `skip_empty` an empty list, `skip_zero` a zero (serde's
/// `skip_serializing_if`); [`from_object!`](crate::wire::object::from_object)'s flags
/// (`required`, `borrow`) are accepted and mean nothing here, so one list can serve both (see
/// [`json_object!`](crate::wire::object::json_object)).
macro_rules! to_object {
    ($name:ident $(<$lt:lifetime>)? { $($field:ident : $key:literal [$($flag:ident)*]),* $(,)? }) => {
        impl $(<$lt>)? $crate::wire::write::WriteJson for $name $(<$lt>)? {
            fn write_json(&self, out: &mut Vec<u8>) {
                let mut m = $crate::wire::write::Members::open(out);
                $($crate::wire::write::to_object!(@member m self.$field, concat!("\"", $key, "\":"), [$($flag)*]);)*
                m.close();
            }
        }
    };
    (@member $m:ident $v:expr, $key:expr, []) => { $m.member($key, &$v) };
    (@member $m:ident $v:expr, $key:expr, [skip_none $($rest:ident)*]) => {
        if $v.is_some() { $m.member($key, &$v) }
    };
    (@member $m:ident $v:expr, $key:expr, [skip_empty $($rest:ident)*]) => {
        if !$v.is_empty() { $m.member($key, &$v) }
    };
    (@member $m:ident $v:expr, $key:expr, [skip_zero $($rest:ident)*]) => {
        if $v != 0 { $m.member($key, &$v) }
    };
    (@member $m:ident $v:expr, $key:expr, [$other:ident $($rest:ident)*]) => {
        $crate::wire::write::to_object!(@member $m $v, $key, [$($rest)*])
    };
}
pub(crate) use to_object;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    /// What serde_json writes for `v`, to compare with.
    fn serde<T: serde::Serialize + ?Sized>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every = String::new();
        for c in (0u32..0x80).chain([0x7f, 0xa0, 0x2028, 0x1f600]) {
            every.push(char::from_u32(c).unwrap());
        }
        for s in [every.as_str(), "", "plain", "a\"b\\c/d", "é ü 日本", "\u{1}\u{1f}\u{7f}"] {
            assert_eq!(to_string(s), serde(s), "{s:?}");
        }
    }

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        for f in [0.0, -0.0, 1.0, 0.1, 1.5, -2.25, 1e20, 2e-7, 1.0e300, f64::MAX, f64::MIN_POSITIVE, 123456.789] {
            assert_eq!(to_string(&f), serde(&f), "{f}");
            assert_eq!(to_string(&json!(f)), serde(&json!(f)), "{f}");
        }
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(to_string(&f), "null");
            assert_eq!(serde(&f), "null");
        }
        for n in [json!(0), json!(u64::MAX), json!(-1), json!(i64::MIN), json!(7u8)] {
            assert_eq!(to_string(&n), serde(&n));
        }
        assert_eq!((to_string(&7u16), to_string(&9usize)), ("7".to_string(), "9".to_string()));
    }

    #[test]
    fn trees_are_written_as_serde_json_writes_them() {
        let v = json!({
            "b": [1, -2, 3.5, true, false, null, "s\n", {"x": {}}, []],
            "a": {"nested": [{"k": "v"}], "e": "\u{1}"},
            "z": "日本",
        });
        assert_eq!(to_string(&v), serde(&v));
        assert_eq!(to_string(&v), v.to_string());
        let raw = crate::wire::read::Raw::of(r#" {"k" : [1, 2]} "#).unwrap();
        assert_eq!(to_string(&raw), r#"{"k" : [1, 2]}"#);
        assert_eq!(to_string(&(None as Option<u64>)), "null");
        assert_eq!(to_string(&[Some("a"), None]), r#"["a",null]"#);
        assert_eq!(to_string(&Vec::<u64>::new()), "[]");
    }

    #[derive(Default)]
    struct Member<'a> {
        id: &'a str,
        n: u64,
        opt: Option<String>,
        list: Vec<u32>,
        zero: u64,
        tree: Value,
    }
    to_object!(Member<'a> {
        id: "id" [required],
        n: "n" [],
        opt: "opt" [skip_none],
        list: "list" [skip_empty],
        zero: "zero" [skip_zero],
        tree: "tree" [],
    });

    #[test]
    fn objects_write_their_members_in_order_and_skip_what_the_flags_say() {
        let m = Member { id: "a\"", n: 3, ..Default::default() };
        assert_eq!(to_string(&m), r#"{"id":"a\"","n":3,"tree":null}"#);
        let m = Member { opt: Some("o".into()), list: vec![1, 2], zero: 5, tree: json!({"k": [1]}), ..m };
        assert_eq!(to_string(&m), r#"{"id":"a\"","n":3,"opt":"o","list":[1,2],"zero":5,"tree":{"k":[1]}}"#);
    }
}
