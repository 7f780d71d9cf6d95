//! Reading a JSON object into a struct: [`from_object!`].
//!
//! What the gateway reads are objects of named members. [`from_object!`] writes a struct's
//! reader over [`Reader`](crate::wire::read::Reader): unknown keys are skipped, a repeated key's
//! last value is kept (as a `Value` keeps it), a missing field is its type's default unless it
//! is marked `required` ("missing field `type`", serde's words), and strings (`Cow<str>`) are
//! borrowed from the JSON text where they have no escapes. (serde's derive wrote, for every
//! struct, a visitor for the struct as an object, a second one for it as an array, and a reader
//! of its keys of its own.)

/// `impl ReadJson` for a struct of named fields, read from a JSON object only:
///
/// ```ignore
/// from_object!(AnswerBlock<'a> {
///     kind: "type" [required],
///     text: "text" [],
///     input: "input" [],
/// });
/// ```
///
/// `required` refuses an object without the key; any other field is its type's default when
/// absent. The writer's flags (`skip_none`, ..., see
/// [`to_object!`](crate::wire::write::to_object)) mean nothing here, so one list serves both
/// ([`json_object!`]).
macro_rules! from_object {
    ($name:ident <$lt:lifetime> { $($field:ident : $key:literal [$($flag:ident)*]),* $(,)? }) => {
        impl<$lt> $crate::wire::read::ReadJson<$lt> for $name<$lt> {
            fn read_json(r: &mut $crate::wire::read::Reader<$lt>) -> Result<Self, $crate::wire::read::Error> {
                $crate::wire::object::from_object!(@body r $name { $($field : $key [$($flag)*]),* })
            }
        }
    };
    ($name:ident { $($field:ident : $key:literal [$($flag:ident)*]),* $(,)? }) => {
        impl<'de> $crate::wire::read::ReadJson<'de> for $name {
            fn read_json(r: &mut $crate::wire::read::Reader<'de>) -> Result<Self, $crate::wire::read::Error> {
                $crate::wire::object::from_object!(@body r $name { $($field : $key [$($flag)*]),* })
            }
        }
    };
    (@body $r:ident $name:ident { $($field:ident : $key:literal [$($flag:ident)*]),* }) => {{
        $(let mut $field = None;)*
        const KEYS: &[&str] = &[$($key),*];
        $r.members(concat!("struct ", stringify!($name)), KEYS, &mut |r, at| {
            let mut i = 0usize;
            $(
                if at == i {
                    $field = Some($crate::wire::read::ReadJson::read_json(r)?);
                    return Ok(());
                }
                i += 1;
            )*
            let _ = i;
            Ok(())
        })?;
        Ok($name { $($field: $crate::wire::object::from_object!(@end $r $field $key [$($flag)*]),)* })
    }};
    (@end $r:ident $field:ident $key:literal [required $($rest:ident)*]) => {
        match $field {
            Some(v) => v,
            None => return Err($r.data_error(concat!("missing field `", $key, "`"))),
        }
    };
    (@end $r:ident $field:ident $key:literal []) => { $field.unwrap_or_default() };
    (@end $r:ident $field:ident $key:literal [$other:ident $($rest:ident)*]) => {
        $crate::wire::object::from_object!(@end $r $field $key [$($rest)*])
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
        raw: Option<crate::wire::read::Raw<'a>>,
    }
    from_object!(Outer<'a> {
        kind: "type" [required],
        text: "text" [],
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
}
