//! Wire formats that are not one provider's: Server-Sent Events, AWS's binary event stream,
//! token usage as the providers report it, and the Messages door (a caller speaking Anthropic's
//! Messages API to the gateway).

pub mod chat;
pub mod embeddings;
pub mod eventstream;
pub mod facts;
pub mod float;
pub mod messages_in;
pub mod object;
pub mod read;
pub mod responses_in;
pub mod scan;
pub mod sse;
pub mod tree;
pub mod usage;
pub mod write;

/// Reads `T` from JSON text (see [`read`]).
pub fn from_str<'a, T: read::ReadJson<'a>>(text: &'a str) -> Result<T, read::Error> {
    read::from_slice(text.as_bytes())
}

/// Reads `T` from JSON bytes (see [`read`]).
pub fn from_slice<'a, T: read::ReadJson<'a>>(text: &'a [u8]) -> Result<T, read::Error> {
    read::from_slice(text)
}

/// A JSON tree of a value the gateway builds answers from, by reference (as `json!` takes its
/// values): what [`obj!`] takes after `=>`.
pub trait ToTree {
    fn to_tree(&self) -> crate::wire::tree::Value;
}

impl ToTree for crate::wire::tree::Value {
    fn to_tree(&self) -> crate::wire::tree::Value {
        self.clone()
    }
}

impl ToTree for crate::wire::tree::Map<String, crate::wire::tree::Value> {
    fn to_tree(&self) -> crate::wire::tree::Value {
        crate::wire::tree::Value::Object(self.clone())
    }
}

impl ToTree for str {
    #[inline(never)]
    fn to_tree(&self) -> crate::wire::tree::Value {
        crate::wire::tree::Value::String(self.to_owned())
    }
}

impl ToTree for String {
    #[inline(never)]
    fn to_tree(&self) -> crate::wire::tree::Value {
        crate::wire::tree::Value::String(self.clone())
    }
}

impl ToTree for std::borrow::Cow<'_, str> {
    #[inline(never)]
    fn to_tree(&self) -> crate::wire::tree::Value {
        crate::wire::tree::Value::String(crate::text::Text::own(&**self))
    }
}

macro_rules! to_tree_number {
    ($($t:ty),*) => {$(
        impl ToTree for $t {
            fn to_tree(&self) -> crate::wire::tree::Value {
                (*self).into()
            }
        }
    )*};
}
to_tree_number!(u64, u32, u16, u8, i64, i32, bool, f64);

impl ToTree for usize {
    fn to_tree(&self) -> crate::wire::tree::Value {
        (*self as u64).into()
    }
}

impl<T: ToTree> ToTree for Option<T> {
    #[inline(never)]
    fn to_tree(&self) -> crate::wire::tree::Value {
        self.as_ref().map_or(crate::wire::tree::Value::Null, ToTree::to_tree)
    }
}

impl<T: ToTree> ToTree for [T] {
    fn to_tree(&self) -> crate::wire::tree::Value {
        crate::wire::tree::Value::Array(self.iter().map(ToTree::to_tree).collect())
    }
}

impl<T: ToTree> ToTree for Vec<T> {
    fn to_tree(&self) -> crate::wire::tree::Value {
        self.as_slice().to_tree()
    }
}

impl<T: ToTree + ?Sized> ToTree for &T {
    fn to_tree(&self) -> crate::wire::tree::Value {
        (**self).to_tree()
    }
}

impl<T: ToTree + ?Sized> ToTree for &mut T {
    fn to_tree(&self) -> crate::wire::tree::Value {
        (**self).to_tree()
    }
}

/// `obj!{"key" => value, "other" = tree, ...}`: a JSON object, built member by member, one
/// call each ([`Map::with`](crate::wire::tree::Map::with); what `json!` wrote out at each
/// member was about 150 bytes of code, and an array of the members dropped at each object).
/// `=>` takes anything [`ToTree`] converts, by reference (as `json!` does); `=` takes a
/// `Value`, moved in (another `obj!`, an array built for it).
macro_rules! obj {
    (@v => $v:expr) => { $crate::wire::ToTree::to_tree(&$v) };
    (@v = $v:expr) => { $v };
    (@one $k:literal) => { () };
    ($($k:literal $op:tt $v:expr),* $(,)?) => {{
        // Sized for its members once (not regrown as they go in).
        #[allow(unused_mut)]
        let mut m = $crate::wire::tree::Map::with_capacity(<[()]>::len(&[$($crate::wire::obj!(@one $k)),*]));
        $( m.with($k, $crate::wire::obj!(@v $op $v)); )*
        $crate::wire::tree::Value::Object(m)
    }};
}
pub(crate) use obj;

#[cfg(test)]
mod tree_tests {
    use super::ToTree;
    use crate::json;
    use crate::wire::tree::Value;
    use std::borrow::Cow;

    #[test]
    fn obj_builds_what_json_builds() {
        let id = String::from("msg_1");
        let index: usize = 3;
        let none: Option<&str> = None;
        let cow: Cow<str> = Cow::Borrowed("c");
        let inner = json!({"a": [1, "two", null]});
        let list = vec![json!(1), json!("x")];
        let built = obj! {
            "id" => id,
            "index" => index,
            "none" => none,
            "some" => Some(7u64),
            "cow" => cow,
            "flag" => true,
            "neg" => -2i64,
            "inner" => inner,
            "list" => list,
            "nested" = obj! {"k" => "v", "empty" = Value::Array(Vec::new())},
            "null" = Value::Null,
        };
        assert_eq!(
            built,
            json!({"id": id, "index": index, "none": none, "some": Some(7u64), "cow": cow, "flag": true, "neg": -2,
                   "inner": inner, "list": list, "nested": {"k": "v", "empty": []}, "null": null})
        );
        // The values were taken by reference.
        assert_eq!((id.as_str(), index), ("msg_1", 3));
        assert_eq!(obj! {}, json!({}));
        assert_eq!(ToTree::to_tree(&1.5f64), json!(1.5));
        assert_eq!(ToTree::to_tree(&f64::NAN), Value::Null, "as json! writes a NaN");
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        assert_eq!(obj! {"a" => 1u64, "a" => 2u64}, json!({"a": 2}));
    }
}
