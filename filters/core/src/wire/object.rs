//! Reading a JSON object into a struct, with less code than serde's derive.
//!
//! `#[derive(Deserialize)]` writes, for every struct, a reader for the struct as an object, a
//! second one for the struct as an array (serde_json takes either), and a reader of its keys of
//! its own. [`from_object!`] writes the object's reader only and reads every key through one
//! shared reader ([`Key`]): what the gateway reads are objects. Unknown keys are skipped, a
//! repeated key's last value is kept (as `serde_json::Value` keeps it), and a missing field is its
//! type's default unless it is marked `required` (serde's "missing field" error).

use serde::de::{Deserialize, Deserializer, Visitor};
use std::borrow::Cow;
use std::fmt;

/// A key, or any string, borrowed from the JSON text where it has no escapes.
pub struct Key<'de>(pub Cow<'de, str>);

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor).map(Key)
    }
}

/// A string field read borrowed from the JSON text where it can be (serde's
/// `#[serde(borrow)]`, which borrows a `Cow<str>` but not an `Option` of one).
pub struct Borrowed<T>(pub T);

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<Cow<'a, str>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor).map(Borrowed)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<Option<Cow<'a, str>>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<Key<'de>>::deserialize(d).map(|k| Borrowed(k.map(|k| k.0)))
    }
}

/// `impl Deserialize` for a struct of named fields, read from a JSON object only:
///
/// ```ignore
/// from_object!(AnswerBlock<'a> {
///     kind: "type" [required borrow],
///     text: "text" [borrow],
///     input: "input" [],
/// });
/// ```
///
/// `borrow` reads a `Cow<str>` (or an `Option` of one) borrowed where it can be; `required`
/// refuses an object without the key; any other field is its type's default when absent.
macro_rules! from_object {
    ($name:ident $(<$lt:lifetime>)? { $($field:ident : $key:literal [$($flag:ident)*]),* $(,)? }) => {
        impl<'de $(: $lt, $lt)?> serde::Deserialize<'de> for $name $(<$lt>)? {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V $(<$lt>)? (std::marker::PhantomData<($(&$lt (),)?)>);
                impl<'de $(: $lt, $lt)?> serde::de::Visitor<'de> for V $(<$lt>)? {
                    type Value = $name $(<$lt>)?;

                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!("struct ", stringify!($name)))
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                        $(let mut $field = None;)*
                        while let Some(key) = map.next_key::<$crate::wire::object::Key<'de>>()? {
                            match &*key.0 {
                                $($key => $field = Some($crate::wire::object::from_object!(@read map [$($flag)*])),)*
                                _ => {
                                    map.next_value::<serde::de::IgnoredAny>()?;
                                }
                            }
                        }
                        Ok($name { $($field: $crate::wire::object::from_object!(@end $field $key [$($flag)*]),)* })
                    }
                }
                d.deserialize_map(V(std::marker::PhantomData))
            }
        }
    };
    (@read $map:ident []) => { $map.next_value()? };
    (@read $map:ident [borrow $($rest:ident)*]) => { $map.next_value::<$crate::wire::object::Borrowed<_>>()?.0 };
    (@read $map:ident [required $($rest:ident)*]) => {
        $crate::wire::object::from_object!(@read $map [$($rest)*])
    };
    (@end $field:ident $key:literal [required $($rest:ident)*]) => {
        $field.ok_or_else(|| <A::Error as serde::de::Error>::missing_field($key))?
    };
    (@end $field:ident $key:literal [borrow $($rest:ident)*]) => {
        $crate::wire::object::from_object!(@end $field $key [$($rest)*])
    };
    (@end $field:ident $key:literal []) => { $field.unwrap_or_default() };
    // The writer's flags (`to_object!`) mean nothing to the reader.
    (@read $map:ident [$other:ident $($rest:ident)*]) => {
        $crate::wire::object::from_object!(@read $map [$($rest)*])
    };
    (@end $field:ident $key:literal [$other:ident $($rest:ident)*]) => {
        $crate::wire::object::from_object!(@end $field $key [$($rest)*])
    };
}
pub(crate) use from_object;

/// A struct read and written as the same JSON object: [`from_object!`] and
/// [`to_object!`](crate::wire::write::to_object) from one list of members.
macro_rules! json_object {
    ($($t:tt)*) => {
        $crate::wire::object::from_object!($($t)*);
        $crate::wire::write::to_object!($($t)*);
    };
}
pub(crate) use json_object;

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    #[derive(Debug, PartialEq)]
    struct Inner {
        n: u64,
    }
    from_object!(Inner { n: "n"[required] });

    #[derive(Debug)]
    struct Outer<'a> {
        kind: Cow<'a, str>,
        text: Option<Cow<'a, str>>,
        count: u64,
        inner: Option<Inner>,
        list: Vec<Inner>,
        raw: Option<&'a serde_json::value::RawValue>,
    }
    from_object!(Outer<'a> {
        kind: "type" [required borrow],
        text: "text" [borrow],
        count: "countOf" [],
        inner: "inner" [],
        list: "list" [],
        raw: "raw" [],
    });

    fn read(json: &str) -> Result<Outer<'_>, String> {
        crate::wire::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_named_keys_and_skips_the_others() {
        let o = read(
            r#"{"type":"a","other":{"x":[1,2,{"y":null}]},"text":"t","countOf":3,"inner":{"n":1,"z":2},
            "list":[{"n":2},{"n":3}],"raw":{"k": [1]}}"#,
        )
        .unwrap();
        assert_eq!(o.kind, "a");
        assert_eq!(o.text.as_deref(), Some("t"));
        assert_eq!((o.count, o.inner), (3, Some(Inner { n: 1 })));
        assert_eq!(o.list, [Inner { n: 2 }, Inner { n: 3 }]);
        assert_eq!(o.raw.map(|r| r.get()), Some(r#"{"k": [1]}"#));
    }

    #[test]
    fn absent_fields_are_defaults_and_null_is_none() {
        let o = read(r#"{"type":"a","text":null,"inner":null}"#).unwrap();
        assert_eq!((o.text, o.count, o.inner, o.list.len(), o.raw.is_none()), (None, 0, None, 0, true));
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let o = read(r#"{"type":"plain","text":"a\nb"}"#).unwrap();
        assert!(matches!(o.kind, Cow::Borrowed("plain")));
        assert!(matches!(o.text, Some(Cow::Owned(ref t)) if t == "a\nb"));
        // An escaped key is still its key.
        let o = read(r#"{"\u0074ype":"x"}"#).unwrap();
        assert_eq!(o.kind, "x");
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        assert_eq!(read(r#"{"type":"a","countOf":1,"countOf":2}"#).unwrap().count, 2);
    }

    #[test]
    fn errors_say_what_serde_says() {
        assert_eq!(read(r#"{"text":"t"}"#).unwrap_err(), "missing field `type` at line 1 column 12");
        assert_eq!(read(r#"{"type":"a","inner":{}}"#).unwrap_err(), "missing field `n` at line 1 column 22");
        // (Derived readers took an array too, its items as the fields in order.)
        assert!(read(r#"[1]"#).unwrap_err().starts_with("invalid type: sequence, expected struct Outer"));
        assert_eq!(read(r#""x""#).unwrap_err(), "invalid type: string \"x\", expected struct Outer at line 1 column 3");
        assert!(read(r#"{"type":1}"#).unwrap_err().starts_with("invalid type: integer `1`, expected a string"));
        assert!(read(r#"{"type":"a","countOf":"1"}"#)
            .unwrap_err()
            .starts_with("invalid type: string \"1\", expected u64"));
    }

    #[test]
    fn reads_from_a_tree_too() {
        let v = serde_json::json!({"type": "a", "countOf": 4, "list": [{"n": 5}]});
        let o: Outer<'static> = serde::Deserialize::deserialize(v).unwrap();
        assert_eq!((o.kind.as_ref(), o.count, o.list), ("a", 4, vec![Inner { n: 5 }]));
    }
}
