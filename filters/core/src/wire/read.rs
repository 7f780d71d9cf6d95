//! Reading JSON text, without serde's deserializers.
//!
//! serde compiles, for every type read, a visitor over its generic `Deserializer`, and
//! `serde_json` a copy of its parser for each input reader and each `Value` visitor. What the
//! gateway reads is objects of named members ([`from_object!`](crate::wire::object::from_object)),
//! strings borrowed from the text where they have no escapes, numbers, trees, and values kept
//! as their text ([`Raw`]). [`Reader`] reads them in one pass over the bytes, as `serde_json`
//! does: the same grammar (RFC 8259: no trailing commas, no leading zeros, strings of valid
//! UTF-8 without raw control characters, nesting up to 127 deep), a repeated key's last value
//! kept, and errors in its words ("expected value at line 1 column 1", "invalid type: string
//! \"x\", expected u64"). Numbers are read as `serde_json` reads them into a `Value` (a whole
//! number as an integer where it fits, otherwise a float), floats rounded correctly
//! ([`float::read`](crate::wire::float::read), as core's `f64::from_str` rounds).

use crate::text::{Joined, Text};
use crate::wire::tree::{Map, Number, Value};
use std::borrow::Cow;
use std::fmt;

/// Arrays and objects may nest fewer than this many deep (`serde_json`'s limit: 127 levels).
const DEPTH_LIMIT: u32 = 128;

/// A JSON value kept as its text (`serde_json`'s `RawValue`), borrowed from what was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    /// The value's JSON text, as it was written.
    pub fn get(self) -> &'a str {
        self.0
    }

    /// The text of `s`, which must be one JSON value (checked); `None` when it is not.
    pub fn of(s: &'a str) -> Option<Raw<'a>> {
        from_str::<Raw<'a>>(s).ok()
    }
}

impl crate::wire::write::WriteJson for Raw<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
    }
}

/// Why JSON text could not be read, and where: `serde_json`'s message and position.
///
/// Boxed, as `serde_json`'s is: a `Result` of a small error is less code to move at every
/// member read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(Box<ErrorAt>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct ErrorAt {
    message: String,
    line: usize,
    column: usize,
    /// Well-formed JSON of the wrong shape (serde's `Category::Data`), not bad text.
    data: bool,
}

impl Error {
    /// The text was JSON, of the wrong shape: a wrong type, a missing field, an unknown
    /// word (serde's `is_data`).
    pub fn is_data(&self) -> bool {
        self.0.data
    }

    /// The 1-based line of the place the reading stopped.
    pub fn line(&self) -> usize {
        self.0.line
    }

    /// The column (bytes from the line's start) of the place the reading stopped.
    pub fn column(&self) -> usize {
        self.0.column
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let e = &self.0;
        write!(f, "{} at line {} column {}", e.message, e.line, e.column)
    }
}

/// A type read from JSON text.
pub trait ReadJson<'a>: Sized {
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error>;
}

/// Reads `T` from JSON text: one value, with only whitespace after it.
pub fn from_slice<'a, T: ReadJson<'a>>(text: &'a [u8]) -> Result<T, Error> {
    let mut r = Reader::new(text);
    let v = T::read_json(&mut r)?;
    r.end()?;
    Ok(v)
}

/// [`from_slice`] of a string.
pub fn from_str<'a, T: ReadJson<'a>>(text: &'a str) -> Result<T, Error> {
    from_slice(text.as_bytes())
}

/// What a value about to be read is, for "invalid type" errors (`serde`'s `Unexpected`).
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

/// A cursor over JSON text.
pub struct Reader<'a> {
    text: &'a [u8],
    at: usize,
    depth: u32,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        Reader { text, at: 0, depth: 0 }
    }

    /// An error at the current place (just after the last byte read).
    #[cold]
    pub fn error(&self, message: impl Into<String>) -> Error {
        let at = self.at.min(self.text.len());
        let line_start = self.text[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let line = 1 + self.text[..line_start].iter().filter(|&&b| b == b'\n').count();
        Error(Box::new(ErrorAt { message: message.into(), line, column: at - line_start, data: false }))
    }

    /// [`Reader::error`] for JSON of the wrong shape ([`Error::is_data`]).
    #[cold]
    pub fn data_error(&self, message: impl Into<String>) -> Error {
        let mut e = self.error(message);
        e.0.data = true;
        e
    }

    /// The next byte that is not whitespace, not consumed.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.text.get(self.at) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    /// Nothing but whitespace is left.
    #[inline(never)]
    pub fn end(&mut self) -> Result<(), Error> {
        match self.peek() {
            None => Ok(()),
            Some(_) => {
                self.at += 1;
                Err(self.error("trailing characters"))
            }
        }
    }

    fn kind(&mut self) -> Result<Kind, Error> {
        Ok(match self.peek() {
            Some(b'n') => Kind::Null,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'-' | b'0'..=b'9') => Kind::Number,
            Some(b'"') => Kind::String,
            Some(b'[') => Kind::Array,
            Some(b'{') => Kind::Object,
            Some(_) => {
                self.at += 1;
                return Err(self.error("expected value"));
            }
            None => return Err(self.error("EOF while parsing a value")),
        })
    }

    /// "invalid type: <what is there>, expected <expected>", the value read first (as serde
    /// reads it, to name it).
    #[cold]
    #[inline(never)]
    pub fn invalid_type(&mut self, expected: &str) -> Error {
        let what = match self.kind() {
            Err(e) => return e,
            Ok(Kind::Null) => "null".own(),
            Ok(Kind::Bool) => match self.literal() {
                Ok(b) => format!("boolean `{}`", b == Some(true)),
                Err(e) => return e,
            },
            Ok(Kind::Number) => match self.number() {
                Ok(n) => unexpected_number(&n),
                Err(e) => return e,
            },
            Ok(Kind::String) => match self.str() {
                Ok(s) => format!("string {s:?}"),
                Err(e) => return e,
            },
            Ok(Kind::Array) => "sequence".own(),
            Ok(Kind::Object) => "map".own(),
        };
        if what == "null" {
            self.at += 4;
        }
        self.data_error(format!("invalid type: {what}, expected {expected}"))
    }

    /// `true`, `false` or `null` (as `Some(true)`, `Some(false)`, `None`).
    fn literal(&mut self) -> Result<Option<bool>, Error> {
        let rest = self.text.get(self.at..).unwrap_or_default();
        for (word, v) in [(&b"true"[..], Some(true)), (b"false", Some(false)), (b"null", None)] {
            if rest.starts_with(word) {
                self.at += word.len();
                return Ok(v);
            }
        }
        // As far as the text matches a literal: where it went wrong.
        let word: &[u8] = match rest.first() {
            Some(b't') => b"true",
            Some(b'f') => b"false",
            _ => b"null",
        };
        let same = rest.iter().zip(word).take_while(|(a, b)| a == b).count();
        self.at += same;
        if self.at >= self.text.len() {
            return Err(self.error("EOF while parsing a value"));
        }
        self.at += 1;
        Err(self.error("expected ident"))
    }

    /// Reads `null` if that is what comes next.
    #[inline(never)]
    pub fn null(&mut self) -> bool {
        if self.peek() == Some(b'n') && self.text.get(self.at..self.at + 4) == Some(b"null") {
            self.at += 4;
            return true;
        }
        false
    }

    #[inline]
    pub fn bool(&mut self) -> Result<bool, Error> {
        match self.peek() {
            Some(b't' | b'f') => Ok(self.literal()? == Some(true)),
            _ => Err(self.invalid_type("a boolean")),
        }
    }

    /// A number, as `serde_json` reads one into a `Value`.
    fn number(&mut self) -> Result<Number, Error> {
        let start = self.at;
        let t = self.text;
        let mut i = start;
        let negative = t.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        let digits = |i: &mut usize| {
            let from = *i;
            while t.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - from
        };
        let whole_start = i;
        match t.get(i) {
            Some(b'0') => {
                i += 1;
                if t.get(i).is_some_and(u8::is_ascii_digit) {
                    self.at = i + 1;
                    return Err(self.error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            Some(_) => {
                self.at = i + 1;
                return Err(self.error("invalid number"));
            }
            None => {
                self.at = i;
                return Err(self.error("EOF while parsing a value"));
            }
        }
        let whole_end = i;
        let mut integer = true;
        if t.get(i) == Some(&b'.') {
            i += 1;
            integer = false;
            if digits(&mut i) == 0 {
                self.at = i + usize::from(i < t.len());
                return Err(self.error(if i < t.len() { "invalid number" } else { "EOF while parsing a value" }));
            }
        }
        if matches!(t.get(i), Some(b'e' | b'E')) {
            i += 1;
            integer = false;
            if matches!(t.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                self.at = i + usize::from(i < t.len());
                return Err(self.error(if i < t.len() { "invalid number" } else { "EOF while parsing a value" }));
            }
        }
        self.at = i;
        if integer {
            let mut n: u64 = 0;
            let mut fits = true;
            for &d in &t[whole_start..whole_end] {
                match n.checked_mul(10).and_then(|n| n.checked_add(u64::from(d - b'0'))) {
                    Some(m) => n = m,
                    None => {
                        fits = false;
                        break;
                    }
                }
            }
            if fits && !negative {
                return Ok(Number::from(n));
            }
            // (`-0` is a float, as serde_json reads it.)
            if fits && n != 0 && n <= 1 << 63 {
                return Ok(Number::from((n as i64).wrapping_neg()));
            }
        }
        match crate::wire::float::read(&t[start..i]).and_then(Number::from_f64) {
            Some(n) => Ok(n),
            None => Err(self.error("number out of range")),
        }
    }

    /// An unsigned integer (`u64`'s reader).
    pub fn u64(&mut self) -> Result<u64, Error> {
        self.unsigned("u64", u64::MAX)
    }

    /// An unsigned integer up to `max`, named `name` in errors.
    pub fn unsigned(&mut self, name: &str, max: u64) -> Result<u64, Error> {
        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
            return Err(self.invalid_type(name));
        }
        let start = self.at;
        let n = self.number()?;
        match (n.as_u64(), n.as_i64()) {
            (Some(u), _) if u <= max => Ok(u),
            (Some(u), _) => Err(self.data_error(format!("invalid value: integer `{u}`, expected {name}"))),
            (None, Some(i)) => Err(self.data_error(format!("invalid value: integer `{i}`, expected {name}"))),
            (None, None) => {
                self.at = start;
                Err(self.invalid_type(name))
            }
        }
    }

    /// A signed integer.
    pub fn i64(&mut self) -> Result<i64, Error> {
        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
            return Err(self.invalid_type("i64"));
        }
        let start = self.at;
        let n = self.number()?;
        match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ok(i),
            (None, Some(u)) => Err(self.data_error(format!("invalid value: integer `{u}`, expected i64"))),
            (None, None) => {
                self.at = start;
                Err(self.invalid_type("i64"))
            }
        }
    }

    /// Any number, as a float.
    pub fn f64(&mut self) -> Result<f64, Error> {
        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
            return Err(self.invalid_type("f64"));
        }
        let n = self.number()?;
        Ok(n.as_f64().unwrap_or(0.0))
    }

    /// A string: borrowed from the text when it has no escapes.
    pub fn str(&mut self) -> Result<Cow<'a, str>, Error> {
        if self.peek() != Some(b'"') {
            return Err(self.invalid_type("a string"));
        }
        self.at += 1;
        let t = self.text;
        let start = self.at;
        // The run to the first quote, backslash or control character.
        let mut i = plain_run(t, start);
        if t.get(i) == Some(&b'"') {
            let s = self.utf8(start, i)?;
            self.at = i + 1;
            return Ok(Cow::Borrowed(s));
        }
        // With escapes: the bytes decoded into a buffer, checked as UTF-8 once the string ends
        // (a control character, a bad escape or the end of the text found first is the error,
        // as serde_json finds them).
        let mut out: Vec<u8> = Vec::with_capacity(i - start + 16);
        out.extend_from_slice(&t[start..i]);
        loop {
            let Some(&b) = t.get(i) else {
                self.at = i;
                return Err(self.error("EOF while parsing a string"));
            };
            match b {
                b'"' => {
                    self.at = i + 1;
                    break;
                }
                b'\\' => {
                    i += 1;
                    let Some(&e) = t.get(i) else {
                        self.at = i;
                        return Err(self.error("EOF while parsing a string"));
                    };
                    i += 1;
                    let c = match e {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            self.at = i;
                            let ch = self.unicode_escape()?;
                            i = self.at;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                        _ => {
                            self.at = i;
                            return Err(self.error("invalid escape"));
                        }
                    };
                    out.push(c);
                }
                0x00..=0x1f => {
                    self.at = i + 1;
                    return Err(self.error("control character (\\u0000-\\u001F) found while parsing a string"));
                }
                _ => {
                    let run = i;
                    i = plain_run(t, i);
                    out.extend_from_slice(&t[run..i]);
                }
            }
        }
        match String::from_utf8(out) {
            Ok(s) => Ok(Cow::Owned(s)),
            Err(_) => Err(self.error("invalid unicode code point")),
        }
    }

    /// The text's bytes `from..to` as UTF-8 (the error placed just past the first bad byte).
    #[inline]
    fn utf8(&mut self, from: usize, to: usize) -> Result<&'a str, Error> {
        let text: &'a [u8] = self.text;
        std::str::from_utf8(&text[from..to]).map_err(|e| {
            self.at = from + e.valid_up_to() + 1;
            self.error("invalid unicode code point")
        })
    }

    /// The four hex digits after `\u` (and a second escape after a leading surrogate).
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                for want in [b'\\', b'u'] {
                    let Some(&b) = self.text.get(self.at) else {
                        return Err(self.error("EOF while parsing a string"));
                    };
                    self.at += 1;
                    if b != want {
                        return Err(self.error("unexpected end of hex escape"));
                    }
                }
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                0x10000 + ((u32::from(first) - 0xd800) << 10) + (u32::from(second) - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.error("lone leading surrogate in hex escape")),
            n => u32::from(n),
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid unicode code point"))
    }

    fn hex4(&mut self) -> Result<u16, Error> {
        let mut n: u16 = 0;
        if self.at + 4 > self.text.len() {
            self.at = self.text.len();
            return Err(self.error("EOF while parsing a string"));
        }
        // (All four read before any is judged, as serde_json reads them: an error is placed after
        // the fourth.)
        let mut bad = false;
        for _ in 0..4 {
            let b = self.text[self.at];
            self.at += 1;
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => {
                    bad = true;
                    0
                }
            };
            n = (n << 4) | u16::from(d);
        }
        if bad {
            return Err(self.error("invalid escape"));
        }
        Ok(n)
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth >= DEPTH_LIMIT {
            return Err(self.error("recursion limit exceeded"));
        }
        Ok(())
    }

    /// Opens an object (`{`); `expected` names what was wanted when it is something else.
    #[inline]
    pub fn open_object(&mut self, expected: &str) -> Result<(), Error> {
        if self.peek() != Some(b'{') {
            return Err(self.invalid_type(expected));
        }
        self.at += 1;
        self.enter()
    }

    /// The next key of an open object (its value is to be read next), or `None` at its end
    /// (closed). `first`: no member has been read yet.
    #[inline]
    pub fn next_key(&mut self, first: bool) -> Result<Option<Cow<'a, str>>, Error> {
        if !self.member_start(first)? {
            return Ok(None);
        }
        let key = self.str()?;
        self.colon()?;
        Ok(Some(key))
    }

    /// Past the `,` before an open object's next member (none before the first), to its key's
    /// opening quote; `false` at the object's end (closed).
    #[inline]
    fn member_start(&mut self, first: bool) -> Result<bool, Error> {
        match self.peek() {
            Some(b'}') => {
                self.at += 1;
                self.depth -= 1;
                return Ok(false);
            }
            Some(b',') if !first => {
                self.at += 1;
                match self.peek() {
                    Some(b'}') => {
                        self.at += 1;
                        return Err(self.error("trailing comma"));
                    }
                    None => return Err(self.error("EOF while parsing a value")),
                    Some(_) => {}
                }
            }
            Some(_) if first => {}
            Some(_) => {
                self.at += 1;
                return Err(self.error("expected `,` or `}`"));
            }
            None => return Err(self.error("EOF while parsing an object")),
        }
        match self.peek() {
            Some(b'"') => {}
            Some(_) => {
                self.at += 1;
                return Err(self.error("key must be a string"));
            }
            None => return Err(self.error("EOF while parsing an object")),
        }
        Ok(true)
    }

    /// The `:` after a member's key.
    #[inline]
    fn colon(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b':') => {
                self.at += 1;
                Ok(())
            }
            Some(_) => {
                self.at += 1;
                Err(self.error("expected `:`"))
            }
            None => Err(self.error("EOF while parsing an object")),
        }
    }

    /// Past a string that is not kept: its escapes and control characters checked, its UTF-8
    /// not (as `serde_json` skips an ignored member; a raw value checks its whole text once).
    fn skip_str(&mut self) -> Result<(), Error> {
        let t = self.text;
        let mut i = self.at + 1;
        loop {
            i = plain_run(t, i);
            match t.get(i) {
                Some(b'"') => {
                    self.at = i + 1;
                    return Ok(());
                }
                Some(b'\\') => match t.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        self.at = i + 2;
                        self.hex4()?;
                        i = self.at;
                    }
                    Some(_) => {
                        self.at = i + 2;
                        return Err(self.error("invalid escape"));
                    }
                    None => {
                        self.at = t.len();
                        return Err(self.error("EOF while parsing a string"));
                    }
                },
                Some(_) => {
                    self.at = i + 1;
                    return Err(self.error("control character (\\u0000-\\u001F) found while parsing a string"));
                }
                None => {
                    self.at = t.len();
                    return Err(self.error("EOF while parsing a string"));
                }
            }
        }
    }

    /// [`Reader::next_key`], the key looked up in `keys` (a struct's, in order): `Some(None)`
    /// for a key not among them. One lookup for every struct, rather than a `match` on strings
    /// compiled into each struct's reader.
    #[inline(never)]
    pub fn next_field(&mut self, first: bool, keys: &[&str]) -> Result<Option<Option<usize>>, Error> {
        Ok(self.next_key(first)?.map(|k| keys.iter().position(|c| *c == k)))
    }

    /// Opens an array (`[`); `expected` names what was wanted when it is something else.
    #[inline]
    pub fn open_array(&mut self, expected: &str) -> Result<(), Error> {
        if self.peek() != Some(b'[') {
            return Err(self.invalid_type(expected));
        }
        self.at += 1;
        self.enter()
    }

    /// Whether an open array has another item (to be read next); at its end, closes it.
    #[inline]
    pub fn next_item(&mut self, first: bool) -> Result<bool, Error> {
        match self.peek() {
            Some(b']') => {
                self.at += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(b',') if !first => {
                self.at += 1;
                match self.peek() {
                    Some(b']') => {
                        self.at += 1;
                        Err(self.error("trailing comma"))
                    }
                    Some(_) => Ok(true),
                    None => Err(self.error("EOF while parsing a value")),
                }
            }
            Some(_) if first => Ok(true),
            Some(_) => {
                self.at += 1;
                Err(self.error("expected `,` or `]`"))
            }
            None => Err(self.error("EOF while parsing a list")),
        }
    }

    /// Reads an array, each item by `item`: the loop every list's reader shares.
    #[inline(never)]
    pub fn items(&mut self, item: &mut dyn FnMut(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        self.open_array("a sequence")?;
        let mut first = true;
        while self.next_item(first)? {
            first = false;
            item(self)?;
        }
        Ok(())
    }

    /// Reads an object named `expected` (for a wrong type), each member whose key is in `keys`
    /// by `member` (with the key's place in `keys`), skipping the others: the loop every
    /// struct's reader shares ([`from_object!`](crate::wire::object::from_object)).
    #[inline(never)]
    pub fn members(
        &mut self,
        expected: &str,
        keys: &[&str],
        member: &mut dyn FnMut(&mut Self, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.open_object(expected)?;
        let mut first = true;
        while let Some(at) = self.next_field(first, keys)? {
            first = false;
            match at {
                Some(i) => member(self, i)?,
                None => self.skip()?,
            }
        }
        Ok(())
    }

    /// Reads past one value of any kind, checking it as it goes.
    pub fn skip(&mut self) -> Result<(), Error> {
        match self.kind()? {
            Kind::Null | Kind::Bool => self.literal().map(drop),
            Kind::Number => self.number().map(drop),
            Kind::String => self.skip_str(),
            Kind::Array => {
                self.open_array("")?;
                let mut first = true;
                while self.next_item(first)? {
                    first = false;
                    self.skip()?;
                }
                Ok(())
            }
            Kind::Object => {
                self.open_object("")?;
                let mut first = true;
                while self.member_start(first)? {
                    first = false;
                    self.skip_str()?;
                    self.colon()?;
                    self.skip()?;
                }
                Ok(())
            }
        }
    }

    /// One value of any kind, as its text.
    pub fn raw(&mut self) -> Result<Raw<'a>, Error> {
        self.peek();
        let start = self.at;
        self.skip()?;
        // Skipping checked the grammar; the text is checked as UTF-8 here, once.
        let end = self.at;
        self.utf8(start, end).map(Raw)
    }

    /// One value of any kind, as a tree.
    pub fn value(&mut self) -> Result<Value, Error> {
        Ok(match self.kind()? {
            Kind::Null | Kind::Bool => match self.literal()? {
                Some(b) => Value::Bool(b),
                None => Value::Null,
            },
            Kind::Number => Value::Number(self.number()?),
            Kind::String => Value::String(self.str()?.into_owned()),
            Kind::Array => {
                self.open_array("")?;
                let mut items = Vec::new();
                while self.next_item(items.is_empty())? {
                    items.push(self.value()?);
                }
                Value::Array(items)
            }
            Kind::Object => Value::Object(self.map()?),
        })
    }

    fn map(&mut self) -> Result<Map<String, Value>, Error> {
        self.open_object("a map")?;
        let mut members = Vec::new();
        let mut first = true;
        while let Some(k) = self.next_key(first)? {
            first = false;
            let v = self.value()?;
            members.push((k.into_owned(), v));
        }
        // Sorted once (not inserted one by one: a large object in any order stays O(n log n)).
        Ok(Map::from_members(members))
    }
}

/// One word of a fixed vocabulary (a unit enum's names, `as_str`), as serde reads an enum's
/// variant names: "unknown variant `x`, expected one of `a`, `b`" for another.
pub fn variant<'a, T: Copy>(r: &mut Reader<'a>, all: &[T], name: fn(T) -> &'static str) -> Result<T, Error> {
    let s = r.str()?;
    if let Some(v) = all.iter().copied().find(|v| name(*v) == s) {
        return Ok(v);
    }
    let names: Vec<String> = all.iter().map(|v| format!("`{}`", name(*v))).collect();
    Err(r.data_error(format!("unknown variant `{s}`, expected one of {}", names.joined(", "))))
}

/// `impl ReadJson` for unit enums read by their names ([`variant`]): `read_variants!(Finish)`
/// for a type with `ALL` and `as_str`.
macro_rules! read_variants {
    ($($t:ty),*) => {$(
        impl<'a> $crate::wire::read::ReadJson<'a> for $t {
            fn read_json(r: &mut $crate::wire::read::Reader<'a>) -> Result<Self, $crate::wire::read::Error> {
                $crate::wire::read::variant(r, &<$t>::ALL, <$t>::as_str)
            }
        }
    )*};
}
pub(crate) use read_variants;

/// The index of the first byte from `from` on that a JSON string cannot hold as it is: a
/// quote, a backslash or a control character (`bytes.len()` when there is none). Eight bytes at
/// a time, as `serde_json` scans (a byte below 0x20, or equal to `"` or `\`, found in a word
/// with the usual bit tricks); Wasm has no vector instructions to lean on, and text is most of
/// what the gateway reads and writes.
#[inline]
pub fn plain_run(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let mut i = from;
    let rest = bytes.get(from..).unwrap_or_default();
    for chunk in rest.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else { break };
        let w = u64::from_le_bytes(word);
        let control = w.wrapping_sub(ONES * 0x20) & !w;
        let q = w ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let b = w ^ (ONES * u64::from(b'\\'));
        let backslash = b.wrapping_sub(ONES) & !b;
        let found = (control | quote | backslash) & HIGH;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

/// A number as serde names it in "invalid type" (`integer `7``, `floating point `1.5``).
fn unexpected_number(n: &Number) -> String {
    match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => format!("integer `{u}`"),
        (None, Some(i)) => format!("integer `{i}`"),
        _ => {
            let mut text = crate::wire::write::to_string(n);
            if !text.contains(['.', 'e']) {
                text.push_str(".0");
            }
            format!("floating point `{text}`")
        }
    }
}

impl<'a> ReadJson<'a> for Value {
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
        r.value()
    }
}

impl<'a> ReadJson<'a> for Map<String, Value> {
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
        r.map()
    }
}

impl<'a> ReadJson<'a> for Raw<'a> {
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
        r.raw()
    }
}

impl<'a> ReadJson<'a> for Cow<'a, str> {
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
        r.str()
    }
}

impl<'a> ReadJson<'a> for String {
    #[inline]
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
        r.str().map(Cow::into_owned)
    }
}

impl<'a> ReadJson<'a> for bool {
    #[inline]
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
        r.bool()
    }
}

impl<'a> ReadJson<'a> for u64 {
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
        r.u64()
    }
}

/// The narrower unsigned integers: "invalid value: integer `70000`, expected u16" past their
/// range, as serde says.
macro_rules! read_unsigned {
    ($($t:ty),*) => {$(
        impl<'a> ReadJson<'a> for $t {
            fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
                r.unsigned(stringify!($t), <$t>::MAX as u64).map(|n| n as $t)
            }
        }
    )*};
}
read_unsigned!(u32, u16, usize);

impl<'a> ReadJson<'a> for i64 {
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
        r.i64()
    }
}

impl<'a> ReadJson<'a> for f64 {
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
        r.f64()
    }
}

/// `null` is `None`, as serde reads an `Option`.
impl<'a, T: ReadJson<'a>> ReadJson<'a> for Option<T> {
    #[inline(never)]
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
        if r.null() {
            return Ok(None);
        }
        T::read_json(r).map(Some)
    }
}

impl<'a, T: ReadJson<'a>> ReadJson<'a> for Vec<T> {
    fn read_json(r: &mut Reader<'a>) -> Result<Self, Error> {
        let mut items = Vec::new();
        r.items(&mut |r| {
            items.push(T::read_json(r)?);
            Ok(())
        })?;
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json says about `text` read as `T`, to compare with.
    fn serde<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Result<T, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    fn ours<'a, T: ReadJson<'a>>(text: &'a str) -> Result<T, String> {
        from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn trees_are_read_as_serde_json_reads_them() {
        for text in [
            r#"{"a": [1, -2, 3.5, true, false, null, "s\n\u00e9\ud83d\ude00", {"x": {}}, []], "b": {"k": "v"}}"#,
            " [ ] ",
            "0",
            "-0",
            "-0.0",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e2",
            "1E-2",
            "0.1",
            "2.5e+3",
            "123456789012345678901234567890",
            "4.9e-324",
            "1.7976931348623157e308",
            r#""\/\b\f\t\r\"\\""#,
            r#"{"k": 1, "k": 2}"#,
            "\"日本 😀\"",
        ] {
            assert_eq!(ours::<Value>(text), serde::<Value>(text), "{text}");
        }
    }

    #[test]
    fn floats_are_read_correctly_rounded() {
        // (serde_json without `float_roundtrip` reads the first one a unit in the last place off.)
        for text in ["16166E61", "2.2250738585072011e-308", "9007199254740993.0", "-0.012345678901234567", "1e-400"] {
            let want = text.parse::<f64>().unwrap();
            assert_eq!(ours::<f64>(text).map(f64::to_bits), Ok(want.to_bits()), "{text}");
            assert_eq!(ours::<Value>(text).map(|v| v.as_f64().map(f64::to_bits)), Ok(Some(want.to_bits())), "{text}");
        }
    }

    #[test]
    fn bad_text_is_refused_with_serde_json_s_message() {
        for text in [
            "",
            "x",
            "{",
            "[",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\":1,",
            "{\"a\":1,\n",
            "\"\\u12z4\"",
            "[1,\n",
            "{\"a\" 1}",
            "{1:2}",
            "[1 2]",
            "01",
            "1.",
            "1e",
            "-",
            "tru",
            "nul",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "\"\\udc00\"",
            "\"a\u{1}\"",
            "1 2",
            "{\"a\":1}}",
            "1e400",
            "[1,",
            "{\"a\":",
            "{\"a\"",
            "\"\\",
            "-a",
            ".5",
        ] {
            let (a, b) = (ours::<Value>(text), serde::<Value>(text));
            assert!(a.is_err(), "{text:?} was read: {a:?}");
            assert_eq!(a, b, "{text:?}");
        }
        // Bytes that are not UTF-8, in a string.
        let bad = b"\"a\xff\"";
        assert_eq!(
            from_slice::<Value>(bad).map_err(|e| e.to_string()),
            serde_json::from_slice::<Value>(bad).map_err(|e| e.to_string())
        );
        // Nesting past 127, closed or not.
        for (n, tail) in [(127, "]"), (128, "]"), (129, "]"), (128, ";"), (127, ";")] {
            let text = "[".repeat(n) + &tail.repeat(if tail == "]" { n } else { 1 });
            assert_eq!(ours::<Value>(&text), serde::<Value>(&text), "{n} deep, then {tail}");
        }
        assert!(ours::<Value>(&("[".repeat(127) + &"]".repeat(127))).is_ok());
    }

    #[test]
    fn typed_values_and_their_errors_are_serde_s() {
        assert_eq!(ours::<u64>("7"), Ok(7));
        assert_eq!(ours::<u64>("\"1\""), serde::<u64>("\"1\""));
        assert_eq!(ours::<u64>("1.5"), serde::<u64>("1.5"));
        assert_eq!(ours::<u64>("-1"), serde::<u64>("-1"));
        assert_eq!(ours::<u64>("null"), serde::<u64>("null"));
        assert_eq!(ours::<u64>("[1]"), serde::<u64>("[1]"));
        assert_eq!(ours::<u32>("4294967296"), serde::<u32>("4294967296"));
        assert_eq!(ours::<i64>("-3"), Ok(-3));
        assert_eq!(ours::<f64>("3"), Ok(3.0));
        assert_eq!(ours::<f64>("\"x\""), serde::<f64>("\"x\""));
        assert_eq!(ours::<bool>("true"), Ok(true));
        assert_eq!(ours::<bool>("{}"), serde::<bool>("{}"));
        assert_eq!(ours::<String>("false"), serde::<String>("false"));
        assert_eq!(ours::<Option<u64>>("null"), Ok(None));
        assert_eq!(ours::<Vec<u64>>("[1,2]"), Ok(vec![1, 2]));
        assert_eq!(ours::<Vec<u64>>("{}"), serde::<Vec<u64>>("{}"));
        assert_eq!(ours::<Cow<str>>(r#""a\u0041""#).as_deref(), Ok("aA"));
        assert!(matches!(ours::<Cow<str>>(r#""plain""#), Ok(Cow::Borrowed("plain"))));
    }

    #[test]
    fn a_plain_run_ends_at_the_first_byte_a_string_must_escape() {
        for len in 0..40 {
            for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                for at in 0..=len {
                    let mut bytes = vec![b'a'; len];
                    bytes.extend_from_slice(&[0xc3, 0xa9, 0x7f, 0x20, 0x21]);
                    if at < len {
                        bytes[at] = stop;
                    }
                    let want = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(bytes.len());
                    for from in [0, at.min(3)] {
                        assert_eq!(
                            plain_run(&bytes, from),
                            want.max(from),
                            "len {len} stop {stop} at {at} from {from}"
                        );
                    }
                }
            }
        }
    }

    struct Named {
        n: u64,
    }
    crate::wire::object::from_object!(Named { n: "n" [] });

    #[test]
    fn raw_values_are_their_text() {
        let r: Raw = from_str(r#"  {"a" : [1, "x"]}  "#).unwrap();
        assert_eq!(r.get(), r#"{"a" : [1, "x"]}"#);
        assert_eq!(from_str::<Option<Raw>>("null"), Ok(None));
        assert!(Raw::of("[1,").is_none() && Raw::of("\"s\"").is_some_and(|r| r.get() == "\"s\""));
        // An ignored member is skipped as serde_json skips it (its UTF-8 unchecked); a raw
        // value's text is checked.
        let bad = b"{\"skipped\": \"\xff\", \"n\": 1}";
        assert_eq!(from_slice::<Named>(bad).map(|n| n.n), Ok(1));
        assert_eq!(
            from_slice::<Raw>(bad).map_err(|e| e.to_string()),
            Err("invalid unicode code point at line 1 column 14".into())
        );
        assert!(from_slice::<Value>(bad).is_err());
    }
}
