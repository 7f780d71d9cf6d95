//! Searching and splitting text at an ASCII byte, finding a phrase in it, copying it, appending
//! it, lowercasing it, comparing it blind to case and reading a number from it: one function
//! each, called from every place that does it.
//!
//! The standard library's `split(',')`, `split_once(':')` and `contains("...")` are generic
//! over their pattern and marked `#[inline]`: each place that uses one gets its own copy of the
//! searcher (a byte search unrolled a word at a time, or the two-way string search): 31 KB of
//! the module's code by its line tables, over fifty places, of which one copy each took 22 KB
//! off. These give the same answers (an ASCII separator
//! always falls between characters, so the parts are the standard library's parts), from one
//! copy of each search. The same holds for a copy (`to_string()`, `"..".into()` and a
//! `String`'s `clone()`: an allocation, its failure path and a copy, about 60 bytes at each of
//! some 400 places) and for reading an unsigned integer (`parse()`, about 230 bytes at each of 50).
//! Where a call runs them many times (a header's value read from the callback's list, the
//! caller's identity decoded, the `:status` and the quota records read back) the standard
//! library's inlined copies stay: counted, calls there added 0.5% to the Wasm code's
//! instructions per call; calls everywhere else add 0.3% (bench/HISTORY.md, "Session 29"). Appending
//! (about 80 bytes inlined) and lowercasing follow the same rule: the JSON writer, the SSE
//! parser, the header lists, the quota record's encoding and the guardrails' scans keep the
//! inlined ones (bench/HISTORY.md, "Session 30").

/// The searches, as methods of any text (`path.cut(b'?')`, `data.has("\"usage\"")`).
pub trait Text {
    /// The parts between each `sep` (an ASCII byte), as `split(sep as char)` gives them:
    /// `"a,,b"` is `a`, ``, `b`; `""` is one empty part.
    fn parts(&self, sep: u8) -> Parts<'_>;
    /// Before and after the first `sep` (an ASCII byte), as `split_once(sep as char)`.
    fn cut(&self, sep: u8) -> Option<(&str, &str)>;
    /// Up to the first `sep` (all of it when there is none): `split(sep).next()`.
    fn before(&self, sep: u8) -> &str;
    /// Where the first `sep` (an ASCII byte) is, as `find(sep as char)`.
    fn find_byte(&self, sep: u8) -> Option<usize>;
    /// Whether `needle` occurs in it (`contains(needle)`).
    fn has(&self, needle: &str) -> bool;
    /// Where `needle` first occurs in it (`find(needle)`).
    fn find_str(&self, needle: &str) -> Option<usize>;
    /// A copy with every `from` (not empty) replaced by `to`, left to right (`replace(from, to)`).
    fn replace_all(&self, from: &str, to: &str) -> String;
    /// The non-empty items of a comma-separated list, owned (`a,,b,` is `a`, `b`).
    fn list(&self) -> Vec<String>;
    /// An owned copy (`to_string()`), made by one function, not at each place.
    fn own(&self) -> String;
    /// An owned copy with ASCII letters lowercased (`to_ascii_lowercase()`).
    fn lower(&self) -> String;
    /// Whether it equals `other` but for the case of ASCII letters (`eq_ignore_ascii_case`).
    fn same_letters(&self, other: &str) -> bool;
    /// The unsigned integer it is (`parse::<u64>().ok()`: digits, an optional leading `+`).
    fn int(&self) -> Option<u64>;
    /// The unsigned integer it is, if `T` holds it (`parse::<T>().ok()` for an unsigned `T`).
    fn int_as<T: TryFrom<u64>>(&self) -> Option<T> {
        self.int().and_then(|n| T::try_from(n).ok())
    }
}

impl Text for str {
    fn parts(&self, sep: u8) -> Parts<'_> {
        debug_assert!(sep.is_ascii());
        Parts { rest: Some(self), sep }
    }

    fn cut(&self, sep: u8) -> Option<(&str, &str)> {
        cut(self, sep)
    }

    fn before(&self, sep: u8) -> &str {
        cut(self, sep).map_or(self, |(head, _)| head)
    }

    fn find_byte(&self, sep: u8) -> Option<usize> {
        find_byte(self, sep)
    }

    fn has(&self, needle: &str) -> bool {
        find_str(self, needle).is_some()
    }

    fn find_str(&self, needle: &str) -> Option<usize> {
        find_str(self, needle)
    }

    fn replace_all(&self, from: &str, to: &str) -> String {
        replace_all(self, from, to)
    }

    fn list(&self) -> Vec<String> {
        list(self)
    }

    fn own(&self) -> String {
        own(self)
    }

    fn lower(&self) -> String {
        lower(self)
    }

    fn same_letters(&self, other: &str) -> bool {
        same_letters(self.as_bytes(), other.as_bytes())
    }

    fn int(&self) -> Option<u64> {
        int(self)
    }
}

/// See [`Text::parts`].
pub struct Parts<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for Parts<'a> {
    type Item = &'a str;

    #[inline(never)]
    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match cut(s, self.sep) {
            Some((part, rest)) => {
                self.rest = Some(rest);
                Some(part)
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

#[inline(never)]
fn find_byte(s: &str, sep: u8) -> Option<usize> {
    memchr::memchr(sep, s.as_bytes())
}

#[inline(never)]
fn cut(s: &str, sep: u8) -> Option<(&str, &str)> {
    let at = memchr::memchr(sep, s.as_bytes())?;
    // An ASCII byte is a whole character: both sides are text.
    Some((s.get(..at)?, s.get(at + 1..)?))
}

/// Each place the needle's first byte is (memchr), compared there: the gateway's needles are a
/// few bytes long, and core's two-way searcher, for any needle, is 6 KB of the module.
#[inline(never)]
fn find_str(hay: &str, needle: &str) -> Option<usize> {
    let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
    let Some((&first, rest)) = needle.split_first() else { return Some(0) };
    let mut from = 0;
    while let Some(at) = hay.get(from..).and_then(|h| memchr::memchr(first, h)) {
        let i = from + at;
        if hay.get(i + 1..i + needle.len()) == Some(rest) {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// `s` without `prefix` at its start, as often as it is there (`trim_start_matches(prefix)`).
pub fn strip_all<'a>(mut s: &'a str, prefix: &str) -> &'a str {
    while let Some(rest) = s.strip_prefix(prefix).filter(|_| !prefix.is_empty()) {
        s = rest;
    }
    s
}

#[inline(never)]
fn replace_all(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find_str(from).filter(|_| !from.is_empty()) {
        out.push_str(rest.get(..i).unwrap_or_default());
        out.push_str(to);
        rest = rest.get(i + from.len()..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

#[inline(never)]
fn own(s: &str) -> String {
    s.to_owned()
}

#[inline(never)]
fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// [`Text::same_letters`] of bytes (a header name's prefix, a scheme).
#[inline(never)]
pub fn same_letters(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Appending text to a `String` (`push_str`) by one function, not at each place: the standard
/// library's is a capacity check, its growth path and a copy, about 80 bytes wherever it is
/// inlined. The JSON writer, the SSE parser and the header lists, which append many times a
/// call, keep the inlined one.
pub trait Put {
    fn put(&mut self, s: &str);
}

/// Appending bytes to a `Vec<u8>` (`extend_from_slice`) by one function (as [`Put`]).
pub trait PutBytes {
    fn put(&mut self, s: &[u8]);
}

impl Put for String {
    #[inline]
    fn put(&mut self, s: &str) {
        put_str(self, s)
    }
}

impl PutBytes for Vec<u8> {
    #[inline]
    fn put(&mut self, s: &[u8]) {
        put_bytes(self, s)
    }
}

#[inline(never)]
fn put_str(out: &mut String, s: &str) {
    out.push_str(s)
}

#[inline(never)]
fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s)
}

/// `join` of a list of strings, by one small loop (the standard library's `join` is compiled
/// again for every element and separator type, 0.7 KB each).
pub trait Joined {
    /// The parts with `sep` between them (`parts.join(sep)`).
    fn joined(&self, sep: &str) -> String;
}

impl<S: AsRef<str>> Joined for [S] {
    #[inline(never)]
    fn joined(&self, sep: &str) -> String {
        let len = self.iter().map(|p| p.as_ref().len()).sum::<usize>() + sep.len() * self.len().saturating_sub(1);
        let mut out = String::with_capacity(len);
        for (i, p) in self.iter().enumerate() {
            if i > 0 {
                out.put(sep);
            }
            out.put(p.as_ref());
        }
        out
    }
}

/// As `s.parse::<u64>().ok()` (an optional `+`, then decimal digits), by a loop of its own:
/// the standard library's, out of line, goes through its radix-generic parser.
#[inline(never)]
fn int(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let digits = b.strip_prefix(b"+").unwrap_or(b);
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    // (Up to 19 digits cannot overflow a u64: no checked arithmetic for those, which on wasm32
    // is a 128-bit product per digit.)
    let exact = digits.len() < 20;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = if exact { n * 10 + u64::from(d) } else { n.checked_mul(10)?.checked_add(u64::from(d))? };
    }
    Some(n)
}

#[inline(never)]
fn list(s: &str) -> Vec<String> {
    s.parts(b',').filter(|p| !p.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_is_the_standard_librarys_join() {
        for parts in [vec![], vec![""], vec!["a"], vec!["a", "b"], vec!["", "é", "", "ß c"]] {
            for sep in ["", ",", ", ", "\u{0}"] {
                assert_eq!(parts.joined(sep), parts.join(sep));
                let owned: Vec<String> = parts.iter().map(|p| p.own()).collect();
                assert_eq!(owned.joined(sep), parts.join(sep));
            }
        }
    }

    #[test]
    fn split_gives_the_standard_librarys_parts() {
        let cases = ["", ",", "a", "a,b", "a,,b", ",a,", "é,ü,,ß", "no separator here", ",,,"];
        for s in cases {
            let ours: Vec<&str> = s.parts(b',').collect();
            let std: Vec<&str> = s.split(',').collect();
            assert_eq!(ours, std, "{s:?}");
            assert_eq!(s.cut(b','), s.split_once(','), "{s:?}");
            assert_eq!(s.before(b','), s.split(',').next().unwrap_or(""), "{s:?}");
            assert_eq!(s.find_byte(b','), s.find(','), "{s:?}");
        }
        assert_eq!(",a,,b c,é,".list(), ["a", "b c", "é"]);
        assert!("".list().is_empty());
    }

    #[test]
    fn appends_are_the_standard_library_appends() {
        // From empty, across growth (a 1 KB piece into a small buffer) and of nothing.
        let pieces = ["", "a", "héllo, ", &"x".repeat(1024), "", "\u{1F600}"];
        let (mut ours, mut std) = (String::new(), String::new());
        let (mut ours_b, mut std_b) = (Vec::with_capacity(2), Vec::with_capacity(2));
        for p in pieces {
            ours.put(p);
            std.push_str(p);
            ours_b.put(p.as_bytes());
            std_b.extend_from_slice(p.as_bytes());
            assert_eq!(ours, std);
            assert_eq!(ours_b, std_b);
        }
        assert_eq!(ours.len(), 1 + 8 + 1024 + 4);
    }

    #[test]
    fn case_is_the_standard_library_ascii_case() {
        let words =
            ["", "Bearer ", "bearer ", "BEARER", "x-Amz-Content-SHA256", "Straße", "ÉTÉ", "no-store, MAX-age=0"];
        for a in words {
            assert_eq!(a.lower(), a.to_ascii_lowercase(), "{a:?}");
            for b in words {
                assert_eq!(a.same_letters(b), a.eq_ignore_ascii_case(b), "{a:?} {b:?}");
                assert_eq!(same_letters(a.as_bytes(), b.as_bytes()), a.eq_ignore_ascii_case(b), "{a:?} {b:?}");
            }
        }
        assert!("Refresh".same_letters("refresh") && !"refresh ".same_letters("refresh"));
    }

    #[test]
    fn numbers_read_as_the_standard_library_reads_them() {
        let cases = [
            "",
            "0",
            "7",
            "+7",
            "+",
            "++7",
            "-7",
            "-0",
            "007",
            " 7",
            "7 ",
            "1.5",
            "1e3",
            "x",
            "200",
            "65535",
            "65536",
            "4294967296",
            "18446744073709551615",
            "18446744073709551616",
            "٣",
        ];
        for s in cases {
            assert_eq!(s.int(), s.parse::<u64>().ok(), "{s:?}");
            assert_eq!(s.int_as::<u16>(), s.parse::<u16>().ok(), "{s:?}");
            assert_eq!(s.int_as::<u32>(), s.parse::<u32>().ok(), "{s:?}");
            assert_eq!(s.int_as::<usize>(), s.parse::<usize>().ok(), "{s:?}");
        }
        // Random texts of digits, signs and others, up to 22 characters (across the 19 digits
        // read without checked arithmetic, and u64::MAX's 20): the same answer as std's.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 23) as usize;
            let s: String = (0..len)
                .map(|i| {
                    let pick = (x >> (i % 20 * 3)) as usize ^ i;
                    if i == 0 && x & (1 << 63) != 0 {
                        char::from(b"+-1"[pick % 3])
                    } else {
                        char::from(b"01234567899999+ a"[pick % 17])
                    }
                })
                .collect();
            assert_eq!(s.int(), s.parse::<u64>().ok(), "{s:?}");
        }
        for s in ["18446744073709551615", "18446744073709551616", "99999999999999999999", "+09999999999999999999"] {
            assert_eq!(s.int(), s.parse::<u64>().ok(), "{s:?}");
        }
        for s in ["", "a", "é ü"] {
            assert_eq!(s.own(), s.to_string());
        }
    }

    #[test]
    fn contains_finds_phrases_anywhere() {
        assert!("upstream_reset_before_response_started".has("upstream_reset"));
        assert!("abc".has(""));
        assert!(!"ab".has("abc"));
        assert!("ααβ".has("αβ"));
        assert_eq!("a-----BEGIN x".find_str("-----BEGIN "), Some(1));
        assert_eq!("ααβ".find_str("αβ"), Some(2));
        assert_eq!("abc".find_str("d"), None);
    }

    #[test]
    fn searches_and_replaces_as_the_standard_library_does() {
        // Texts of a few letters (overlaps, repeats, a needle at either end, multi-byte ones).
        let letters = ["a", "b", "ab", "é", "<", ">", "~1", "~0"];
        let mut x = 0x853c_49e6_748f_ea9bu64;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut text = |len: usize| (0..len).map(|_| letters[next(letters.len())]).collect::<String>();
        for _ in 0..20_000 {
            let (hay, short, needle, with) = (text(12), text(1), text(2), text(2));
            for n in [short.as_str(), needle.as_str(), "", "aa", "aba", "~1", "é<"] {
                assert_eq!(hay.find_str(n), hay.find(n), "{hay:?} {n:?}");
                assert_eq!(hay.has(n), hay.contains(n));
                if !n.is_empty() {
                    assert_eq!(hay.replace_all(n, &with), hay.replace(n, &with), "{hay:?} {n:?} {with:?}");
                }
                assert_eq!(strip_all(&hay, n), hay.trim_start_matches(n), "{hay:?} {n:?}");
            }
        }
        assert_eq!("abc".replace_all("", "x"), "abc");
    }
}
