//! The detectors: hand-written scanners over text, each as precise as its format allows, with
//! the checksum where the format has one (Luhn, mod 97, Verhoeff). No regex engine: the module
//! stays small, and each scanner is one pass over the text.

use crate::text::Text;

/// What a detector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Email,
    Phone,
    Card,
    Iban,
    Aadhaar,
    Pan,
    Ssn,
    Ip,
    Secret,
    /// An operator's term.
    Term,
    /// A value of an operator's pattern (see [`Shape`]).
    Pattern,
}

impl Category {
    pub const ALL: [Category; 11] = [
        Category::Email,
        Category::Phone,
        Category::Card,
        Category::Iban,
        Category::Aadhaar,
        Category::Pan,
        Category::Ssn,
        Category::Ip,
        Category::Secret,
        Category::Term,
        Category::Pattern,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Email => "email",
            Category::Phone => "phone",
            Category::Card => "card",
            Category::Iban => "iban",
            Category::Aadhaar => "aadhaar",
            Category::Pan => "pan",
            Category::Ssn => "ssn",
            Category::Ip => "ip",
            Category::Secret => "secret",
            Category::Term => "term",
            Category::Pattern => "pattern",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The placeholder's word: `<EMAIL_1>`.
    pub fn placeholder(self) -> &'static str {
        match self {
            Category::Email => "EMAIL",
            Category::Phone => "PHONE",
            Category::Card => "CARD",
            Category::Iban => "IBAN",
            Category::Aadhaar => "AADHAAR",
            Category::Pan => "PAN",
            Category::Ssn => "SSN",
            Category::Ip => "IP",
            Category::Secret => "SECRET",
            Category::Term => "TERM",
            Category::Pattern => "PATTERN",
        }
    }
}

/// A found value: its byte range in the text, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub category: Category,
}

/// Every value of the `wanted` categories in `text` (and of the operator's `terms`, matched
/// whole-word, case-insensitively), without overlaps (the earlier and longer wins), in order.
pub fn scan(text: &str, wanted: &dyn Fn(Category) -> bool, terms: &[String]) -> Vec<Found> {
    scan_with(text, wanted, terms, &[])
}

/// An operator's pattern: the shape of a value, character by character: `\d` a digit, `\a` a
/// letter, `\w` a letter or digit, `\\` a backslash, anything else itself (e.g.
/// `EMP-\d\d\d\d\d` for an employee number). A value is matched as a whole word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape(Vec<Piece>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Digit,
    Letter,
    Alnum,
    Byte(u8),
}

impl Shape {
    pub fn parse(s: &str) -> Result<Shape, String> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' {
                out.push(match b.get(i + 1) {
                    Some(b'd') => Piece::Digit,
                    Some(b'a') => Piece::Letter,
                    Some(b'w') => Piece::Alnum,
                    Some(b'\\') => Piece::Byte(b'\\'),
                    _ => return Err(format!("`\\` must be followed by d, a, w or \\ in {s:?}")),
                });
                i += 2;
            } else {
                out.push(Piece::Byte(b[i]));
                i += 1;
            }
        }
        if out.len() < 3 {
            return Err(format!("the pattern {s:?} is shorter than 3 characters"));
        }
        Ok(Shape(out))
    }

    fn at(&self, b: &[u8], i: usize) -> bool {
        b.len() >= i + self.0.len()
            && self.0.iter().zip(&b[i..]).all(|(p, c)| match p {
                Piece::Digit => c.is_ascii_digit(),
                Piece::Letter => c.is_ascii_alphabetic(),
                Piece::Alnum => c.is_ascii_alphanumeric(),
                Piece::Byte(x) => x == c,
            })
    }
}

/// As [`scan`], with the operator's patterns too.
pub fn scan_with(text: &str, wanted: &dyn Fn(Category) -> bool, terms: &[String], patterns: &[Shape]) -> Vec<Found> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    if wanted(Category::Pattern) {
        for shape in patterns {
            let mut i = 0;
            while i < b.len() {
                let edge = |j: usize| b.get(j).is_none_or(|c| !c.is_ascii_alphanumeric());
                if (i == 0 || edge(i - 1)) && shape.at(b, i) && edge(i + shape.0.len()) {
                    found.push(Found { start: i, end: i + shape.0.len(), category: Category::Pattern });
                    i += shape.0.len();
                } else {
                    i += 1;
                }
            }
        }
    }
    // Only the stretches of text a detector could start in are scanned: prose words (lower-case
    // letters, non-ASCII letters, sentence punctuation) hold no value any detector finds.
    for (s, e) in segments(b) {
        scan_segment(&text[s..e], s, wanted, &mut found);
    }
    if !terms.is_empty() && wanted(Category::Term) {
        let lower = text.to_ascii_lowercase();
        for term in terms.iter().filter(|t| !t.is_empty()) {
            let t = term.to_ascii_lowercase();
            let mut from = 0;
            while let Some(i) = lower.get(from..).and_then(|s| s.find_str(&t)) {
                let (s, e) = (from + i, from + i + t.len());
                let edge = |i: usize| b.get(i).is_none_or(|c| !c.is_ascii_alphanumeric());
                if (s == 0 || edge(s - 1)) && edge(e) {
                    found.push(Found { start: s, end: e, category: Category::Term });
                }
                from = e;
            }
        }
    }
    // In order of start, the longer first, and on a tie the detector that found it first (most
    // texts have none or one, in order already: no sort then).
    let key = |f: &Found| (f.start, std::cmp::Reverse(f.end));
    if found.windows(2).any(|w| key(&w[1]) < key(&w[0])) {
        let mut keyed: Vec<(usize, std::cmp::Reverse<usize>, usize)> =
            found.iter().enumerate().map(|(i, f)| (f.start, std::cmp::Reverse(f.end), i)).collect();
        crate::sort::sort(&mut keyed);
        found = keyed.iter().filter_map(|k| found.get(k.2).copied()).collect();
    }
    let mut out: Vec<Found> = Vec::with_capacity(found.len());
    for f in found {
        if out.last().is_none_or(|l| f.start >= l.end) {
            out.push(f);
        }
    }
    out
}

/// Whether a word (a run of non-whitespace) is prose no detector could find a value in:
/// lower-case letters (a capital first one allowed), non-ASCII letters, sentence punctuation.
fn prose(w: &[u8]) -> bool {
    let rest = match w.first() {
        Some(c) if c.is_ascii_uppercase() => &w[1..],
        _ => w,
    };
    rest.iter().all(|c| c.is_ascii_lowercase() || *c >= 0x80 || b".,;!?'\"()".contains(c))
}

/// The byte ranges of `b` that hold something other than prose words: runs of such words with
/// the whitespace between them (values that span words, such as spaced card numbers, stay
/// whole), each starting and ending at a word's edge.
fn segments(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let s = i;
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        if prose(&b[s..i]) {
            out.extend(open.take());
        } else {
            open = Some(open.map_or((s, i), |(os, _)| (os, i)));
        }
    }
    out.extend(open);
    out
}

/// The detectors over one segment (`text`, which starts at `base` in the whole text).
fn scan_segment(text: &str, base: usize, wanted: &dyn Fn(Category) -> bool, found: &mut Vec<Found>) {
    let b = text.as_bytes();
    let mut push = |start: usize, end: usize, category: Category| {
        if wanted(category) {
            found.push(Found { start: base + start, end: base + end, category });
        }
    };
    secrets(text, &mut push);
    for (start, end) in tokens(b, |c| c.is_ascii_alphanumeric() || b"._%+-@".contains(&c)) {
        if let Some((s, e)) = email(&b[start..end]) {
            push(start + s, start + e, Category::Email);
        }
    }
    numbers(b, &mut push);
    for (start, end) in tokens(b, |c| c.is_ascii_alphanumeric()) {
        if pan(&b[start..end]) {
            push(start, end, Category::Pan);
        }
    }
    ibans(b, &mut push);
    ips(text, &mut push);
}

/// Maximal runs of bytes for which `keep` holds (as they are met, nothing allocated).
fn tokens<'a>(b: &'a [u8], keep: impl Fn(u8) -> bool + 'a) -> impl Iterator<Item = (usize, usize)> + 'a {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() && !keep(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let s = i;
        while i < b.len() && keep(b[i]) {
            i += 1;
        }
        Some((s, i))
    })
}

fn email(t: &[u8]) -> Option<(usize, usize)> {
    let at = t.iter().position(|c| *c == b'@')?;
    let local = &t[..at];
    let domain_end = t[at + 1..]
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-'))
        .map_or(t.len(), |p| at + 1 + p);
    let mut domain = &t[at + 1..domain_end];
    while domain.last() == Some(&b'.') {
        domain = &domain[..domain.len() - 1];
    }
    let start = local.iter().position(|c| c.is_ascii_alphanumeric())?;
    let local = &local[start..];
    let tld = domain.rsplit(|c| *c == b'.').next()?;
    let ok = !local.is_empty()
        && domain.contains(&b'.')
        && tld.len() >= 2
        && tld.iter().all(u8::is_ascii_alphabetic)
        && !domain.starts_with(b".")
        && !domain.windows(2).any(|w| w == b"..");
    ok.then_some((start, at + 1 + domain.len()))
}

/// Digit runs (with single spaces or dashes between groups): cards, Aadhaar, SSNs, phones.
fn numbers(b: &[u8], push: &mut dyn FnMut(usize, usize, Category)) {
    let mut i = 0;
    // Reused by every run of the segment.
    let (mut digits, mut groups): (Vec<u8>, Vec<usize>) = (Vec::new(), Vec::new());
    while i < b.len() {
        let plus = b[i] == b'+' && b.get(i + 1).is_some_and(u8::is_ascii_digit);
        if !(b[i].is_ascii_digit() || plus) || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'+')) {
            i += 1;
            continue;
        }
        // A run: digits, single separators between digits.
        let s = i;
        let mut e = i + usize::from(plus);
        digits.clear();
        groups.clear();
        groups.push(0);
        while e < b.len() {
            if b[e].is_ascii_digit() {
                digits.push(b[e] - b'0');
                if let Some(g) = groups.last_mut() {
                    *g += 1;
                }
                e += 1;
            } else if (b[e] == b' ' || b[e] == b'-')
                && b.get(e + 1).is_some_and(u8::is_ascii_digit)
                && !digits.is_empty()
            {
                groups.push(0);
                e += 1;
            } else {
                break;
            }
        }
        if b.get(e).is_some_and(|c| c.is_ascii_alphabetic()) {
            i = e;
            continue;
        }
        let n = digits.len();
        let sep = |c: u8| b[s..e].contains(&c);
        if plus {
            // E.164: + and 8 to 15 digits (India: +91 and a mobile number).
            if (8..=15).contains(&n) {
                push(s, e, Category::Phone);
            }
        } else if n == 12 && (groups.len() == 1 || groups == [4, 4, 4]) && digits[0] >= 2 && verhoeff(&digits) {
            push(s, e, Category::Aadhaar);
        } else if (13..=19).contains(&n)
            && luhn(&digits)
            && (groups.len() == 1 || groups.iter().all(|g| (4..=6).contains(g) || *g == 3))
        {
            push(s, e, Category::Card);
        } else if n == 9 && groups == [3, 2, 4] && sep(b'-') && ssn(&digits) {
            push(s, e, Category::Ssn);
        } else if indian_mobile(&digits, &groups) {
            push(s, e, Category::Phone);
        }
        i = e.max(i + 1);
    }
}

/// An Indian mobile number: ten digits from 6 to 9 (grouped 5 5), or with 91 before them.
fn indian_mobile(d: &[u8], groups: &[usize]) -> bool {
    let ten = |d: &[u8]| d.len() == 10 && (6..=9).contains(&d[0]);
    (ten(d) && (groups.len() == 1 || groups == [5, 5]))
        || (d.len() == 12
            && d[..2] == [9, 1]
            && ten(&d[2..])
            && (groups.len() == 1 || groups == [2, 10] || groups == [2, 5, 5]))
}

pub fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, x)| {
            let x = u32::from(*x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The Verhoeff check (Aadhaar's last digit).
pub fn verhoeff(d: &[u8]) -> bool {
    const M: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let mut c = 0u8;
    for (i, x) in d.iter().rev().enumerate() {
        c = M[c as usize][P[i % 8][*x as usize] as usize];
    }
    c == 0
}

fn ssn(d: &[u8]) -> bool {
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = d[3] * 10 + d[4];
    let serial = d[5..].iter().fold(0u32, |a, x| a * 10 + u32::from(*x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// PAN: five letters, four digits, a letter; the fourth letter the holder's type.
fn pan(t: &[u8]) -> bool {
    t.len() == 10
        && t[..5].iter().all(u8::is_ascii_uppercase)
        && t[5..9].iter().all(u8::is_ascii_digit)
        && t[9].is_ascii_uppercase()
        && b"ABCFGHLJPT".contains(&t[3])
}

/// IBAN: two letters, two check digits, 11 to 30 letters and digits (groups of four may be
/// spaced); valid mod 97.
fn ibans(b: &[u8], push: &mut dyn FnMut(usize, usize, Category)) {
    let mut i = 0;
    while i + 4 <= b.len() {
        let starts = b[i].is_ascii_uppercase()
            && b[i + 1].is_ascii_uppercase()
            && b[i + 2].is_ascii_digit()
            && b[i + 3].is_ascii_digit()
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if !starts {
            i += 1;
            continue;
        }
        let mut e = i;
        let mut chars = Vec::new();
        while e < b.len() && chars.len() < 34 {
            if b[e].is_ascii_uppercase() || b[e].is_ascii_digit() {
                chars.push(b[e]);
                e += 1;
            } else if b[e] == b' ' && chars.len() % 4 == 0 && b.get(e + 1).is_some_and(|c| c.is_ascii_alphanumeric()) {
                e += 1;
            } else {
                break;
            }
        }
        if (15..=34).contains(&chars.len()) && !b.get(e).is_some_and(u8::is_ascii_alphanumeric) && mod97(&chars) {
            push(i, e, Category::Iban);
            i = e;
        } else {
            i += 1;
        }
    }
}

fn mod97(chars: &[u8]) -> bool {
    let mut r: u32 = 0;
    for c in chars[4..].iter().chain(&chars[..4]) {
        let v = if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c - b'A') + 10 };
        r = if v >= 10 { (r * 100 + v) % 97 } else { (r * 10 + v) % 97 };
    }
    r == 1
}

fn ips(text: &str, push: &mut dyn FnMut(usize, usize, Category)) {
    let b = text.as_bytes();
    for (s, e) in tokens(b, |c| c.is_ascii_hexdigit() || c == b'.' || c == b':') {
        let mut t = &text[s..e];
        while t.ends_with('.') || t.ends_with(':') && !t.ends_with("::") {
            t = &t[..t.len() - 1];
        }
        // (Most tokens are words of the letters a-f: counted, not split, before a parse.)
        let count = |sep: u8| t.bytes().filter(|&c| c == sep).count();
        let v4 = count(b'.') == 3 && Addr::whole(t.as_bytes(), Addr::v4);
        let v6 = count(b':') >= 2 && Addr::whole(t.as_bytes(), Addr::v6);
        if v4 || v6 {
            push(s, s + t.len(), Category::Ip);
        }
    }
}

/// IP addresses read as the standard library's `Ipv4Addr` and `Ipv6Addr` read them (the same
/// grammar, step for step; a unit test compares the two on every kind of near miss), without
/// linking its parser (3 KB) for this alone.
struct Addr<'a> {
    s: &'a [u8],
    at: usize,
}

impl Addr<'_> {
    /// Whether `read` takes all of `s`.
    fn whole<'s>(s: &'s [u8], read: fn(&mut Addr<'s>) -> bool) -> bool {
        let mut p = Addr { s, at: 0 };
        read(&mut p) && p.at == s.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        let here = self.s.get(self.at) == Some(&c);
        self.at += usize::from(here);
        here
    }

    /// A number of at most `digits` digits in `radix`, at most `max`; without a leading zero
    /// unless `zero_first` (or it is a lone 0). Nothing is taken if there is none.
    fn number(&mut self, radix: u32, digits: usize, zero_first: bool, max: u32) -> bool {
        let start = self.at;
        let leading_zero = self.s.get(start) == Some(&b'0');
        let mut n = 0u32;
        while let Some(d) = self.s.get(self.at).and_then(|&c| char::from(c).to_digit(radix)) {
            n = n * radix + d;
            self.at += 1;
            if self.at - start > digits || n > max {
                self.at = start;
                return false;
            }
        }
        let count = self.at - start;
        if count == 0 || (!zero_first && leading_zero && count > 1) {
            self.at = start;
            return false;
        }
        true
    }

    /// `a.b.c.d`, each part a decimal byte.
    fn v4(&mut self) -> bool {
        let start = self.at;
        for i in 0..4 {
            if (i > 0 && !self.eat(b'.')) || !self.number(10, 3, false, 255) {
                self.at = start;
                return false;
            }
        }
        true
    }

    /// Up to `limit` groups of one to four hex digits, `:` between them; a dotted quad may take
    /// the place of the last two. Returns how many groups were read, and whether a quad ended
    /// them.
    fn groups(&mut self, limit: usize) -> (usize, bool) {
        for i in 0..limit {
            let start = self.at;
            if i + 1 < limit {
                if (i == 0 || self.eat(b':')) && self.v4() {
                    return (i + 2, true);
                }
                self.at = start;
            }
            if !((i == 0 || self.eat(b':')) && self.number(16, 4, true, 0xffff)) {
                self.at = start;
                return (i, false);
            }
        }
        (limit, false)
    }

    /// Eight groups, or fewer with one `::` standing for at least one group of zeros.
    fn v6(&mut self) -> bool {
        let start = self.at;
        let (head, quad) = self.groups(8);
        if head == 8 {
            return true;
        }
        if quad || !self.eat(b':') || !self.eat(b':') {
            self.at = start;
            return false;
        }
        self.groups(8 - (head + 1));
        true
    }
}

/// Keys and tokens by their published prefixes, JWTs, and PEM private keys.
fn secrets(text: &str, push: &mut dyn FnMut(usize, usize, Category)) {
    let b = text.as_bytes();
    let key_char = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    // (prefix, least length of what follows, its alphabet)
    type Prefix = (&'static str, usize, fn(u8) -> bool);
    let prefixes: [Prefix; 6] = [
        ("sk-ant-", 20, |c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        ("sk-", 20, |c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        ("AKIA", 16, |c| c.is_ascii_uppercase() || c.is_ascii_digit()),
        ("AIza", 35, |c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        ("ghp_", 36, |c| c.is_ascii_alphanumeric()),
        ("aigw_sk_", 16, |c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'),
    ];
    for (s, e) in tokens(b, |c| key_char(c) || c == b'.') {
        let t = &b[s..e];
        for (p, least, alphabet) in prefixes {
            if t.starts_with(p.as_bytes()) {
                let rest = &t[p.len()..];
                let n = rest.iter().take_while(|c| alphabet(**c)).count();
                if n >= least {
                    push(s, s + p.len() + n, Category::Secret);
                    break;
                }
            }
        }
        // A JWT: three base64url parts, the first a JSON header (`eyJ`).
        if t.starts_with(b"eyJ") {
            let parts: Vec<&[u8]> = t.split(|c| *c == b'.').collect();
            if parts.len() == 3 && parts.iter().all(|p| p.len() >= 8 && p.iter().all(|c| key_char(*c))) {
                push(s, e, Category::Secret);
            }
        }
    }
    let mut from = 0;
    while let Some(i) = text.get(from..).and_then(|t| t.find_str("-----BEGIN ")) {
        let s = from + i;
        let head_end = text[s..].find_str("-----\n").or_else(|| text[s + 11..].find_str("-----").map(|x| x + 11));
        let Some(h) = head_end else { break };
        let head = &text[s..s + h];
        if head.has("PRIVATE KEY") {
            let end = text[s..]
                .find_str("-----END ")
                .and_then(|x| text[s + x + 9..].find_str("-----").map(|y| s + x + 9 + y + 5));
            let e = end.unwrap_or(text.len());
            push(s, e, Category::Secret);
            from = e;
        } else {
            from = s + 11;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_are_read_as_the_standard_library_reads_them() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"0123456789aAfF:.:.:..::g";
        let mut cases: Vec<String> = [
            "",
            "::",
            ":::",
            "1::",
            "::1",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1::2::3",
            "::ffff:1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "1.2.3.4::",
            "::1.2.3.4.5",
            "12345::",
            "0:0:0:0:0:0:0:0",
            "00000::",
            "1.2.3.4",
            "01.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "1.2.3.04",
            "fe80::1:2",
            "::1:2:3:4:5:6:7",
            "1:2:3::4:5:6:7",
            "1:2:3::1.2.3.4",
            "::1.2.3.4",
            "::1:1.2.3.4",
            "1:1.2.3.4::",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..400_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            cases.push(
                (0..len).map(|i| char::from(alphabet[((x >> (i % 16 * 4)) as usize + i) % alphabet.len()])).collect(),
            );
        }
        // Near misses by construction: groups of 0-5 hex digits between `:`, `::` or `.`, and
        // quads of 0-300 with and without leading zeros.
        for _ in 0..200_000 {
            let mut t = String::new();
            for _ in 0..=(x % 10) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 5 {
                    0 => t.push_str(&format!("{}", (x >> 8) % 301)),
                    1 => t.push_str(&format!("0{}", (x >> 8) % 30)),
                    _ => t.push_str(&format!("{:x}", (x >> 8) & ((1 << (4 * ((x >> 40) % 6))) - 1))),
                }
                t.push_str([":", ":", "::", ".", "."][((x >> 50) % 5) as usize]);
            }
            if x.is_multiple_of(3) {
                t.pop();
            }
            cases.push(t);
        }
        for t in &cases {
            let b = t.as_bytes();
            assert_eq!(super::Addr::whole(b, super::Addr::v4), t.parse::<std::net::Ipv4Addr>().is_ok(), "{t:?}");
            assert_eq!(super::Addr::whole(b, super::Addr::v6), t.parse::<std::net::Ipv6Addr>().is_ok(), "{t:?}");
        }
    }

    use super::*;

    fn cats(text: &str) -> Vec<(&str, Category)> {
        scan(text, &|_| true, &[]).iter().map(|f| (&text[f.start..f.end], f.category)).collect()
    }

    #[test]
    fn findings_come_in_text_order_whichever_detector_found_them() {
        // The number detectors run after the e-mail one: their finds come first in the text.
        let text = "call +91 98765 43210 or 123-45-6789, mail a.b@example.com, card 4111 1111 1111 1111";
        let all = |_: Category| true;
        let found = scan(text, &all, &[]);
        let starts: Vec<usize> = found.iter().map(|f| f.start).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{found:?}");
        let kinds: Vec<Category> = found.iter().map(|f| f.category).collect();
        assert_eq!(kinds, [Category::Phone, Category::Ssn, Category::Email, Category::Card], "{found:?}");
    }

    #[test]
    fn each_detector_finds_its_positives() {
        use Category::*;
        assert_eq!(cats("mail a.b+c@example.co.in, now"), [("a.b+c@example.co.in", Email)]);
        assert_eq!(cats("call +14155552671 or +91 98765 43210"), [("+14155552671", Phone), ("+91 98765 43210", Phone)]);
        assert_eq!(cats("mobile 9876543210."), [("9876543210", Phone)]);
        assert_eq!(cats("card 4111 1111 1111 1111 ok"), [("4111 1111 1111 1111", Card)]);
        assert_eq!(cats("card 4111-1111-1111-1111"), [("4111-1111-1111-1111", Card)]);
        assert_eq!(cats("IBAN GB82 WEST 1234 5698 7654 32 please"), [("GB82 WEST 1234 5698 7654 32", Iban)]);
        assert_eq!(cats("DE89370400440532013000"), [("DE89370400440532013000", Iban)]);
        assert_eq!(cats("aadhaar 2345 6789 0124"), [("2345 6789 0124", Aadhaar)]);
        assert_eq!(cats("aadhaar 234567890124"), [("234567890124", Aadhaar)]);
        assert_eq!(cats("PAN ABCPE1234F"), [("ABCPE1234F", Pan)]);
        assert_eq!(cats("ssn 123-45-6789"), [("123-45-6789", Ssn)]);
        assert_eq!(cats("host 10.0.0.255 and 2001:db8::1."), [("10.0.0.255", Ip), ("2001:db8::1", Ip)]);
        assert_eq!(cats("key sk-ant-api03-abcdefghijklmnopqrstuv"), [("sk-ant-api03-abcdefghijklmnopqrstuv", Secret)]);
        assert_eq!(cats("AKIAIOSFODNN7EXAMPLE"), [("AKIAIOSFODNN7EXAMPLE", Secret)]);
        assert_eq!(
            cats("ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            [("ghp_abcdefghijklmnopqrstuvwxyz0123456789", Secret)]
        );
        assert_eq!(
            cats("token AIzaSyA1234567890abcdefghijklmnopqrstuv"),
            [("AIzaSyA1234567890abcdefghijklmnopqrstuv", Secret)]
        );
        assert_eq!(cats("gateway aigw_sk_0123456789abcdef"), [("aigw_sk_0123456789abcdef", Secret)]);
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(cats(&format!("auth {jwt}")), [(jwt, Secret)]);
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
        assert_eq!(cats(&format!("x {pem} y")), [(pem, Secret)]);
    }

    #[test]
    fn near_misses_are_not_found() {
        assert!(cats("aadhaar 2345 6789 0123").is_empty(), "wrong Verhoeff digit");
        assert!(cats("aadhaar 1345 6789 0124").is_empty(), "starts with 1");
        assert!(cats("PAN ABCXE1234F").is_empty(), "X is no holder type");
        assert!(cats("PAN ABCPE12345").is_empty());
        assert!(cats("card 4111 1111 1111 1112").is_empty(), "Luhn fails");
        assert!(cats("GB82 WEST 1234 5698 7654 33").is_empty(), "mod 97 fails");
        assert!(cats("ssn 000-45-6789 666-45-6789 123-00-6789").is_empty());
        assert!(cats("version 1.2.3.4.5 and 999.1.1.1").is_empty());
        assert!(cats("user@localhost and @handle and a@b.c").is_empty());
        assert!(cats("sk-short and AKIAshort").is_empty());
        assert!(cats("order 12345 of 2026, 5551234").is_empty());
        assert!(cats("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----").is_empty());
    }

    #[test]
    fn terms_are_whole_words_case_insensitive_and_overlaps_keep_the_first() {
        let t = vec!["Project Falcon".to_string()];
        let f = scan("about project falcon, not projectfalcons", &|_| true, &t);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].start, f[0].category), (6, Category::Term));
        // Only the wanted categories.
        assert!(scan("a.b@example.com", &|c| c != Category::Email, &[]).is_empty());
    }

    #[test]
    fn prose_is_skipped_and_values_that_span_words_stay_whole() {
        let text = "Our office, in Pune. Card 4111 1111 1111 1111 and mail a@example.com; done (really)!";
        let segs: Vec<&str> = segments(text.as_bytes()).iter().map(|(s, e)| &text[*s..*e]).collect();
        assert_eq!(segs, ["4111 1111 1111 1111", "a@example.com;"]);
        assert_eq!(cats(text).len(), 2);
        assert!(segments(b"just some prose, nothing else.").is_empty());
        // Non-ASCII prose is skipped too; a value next to it is still found.
        assert_eq!(cats("मेरा नंबर 9876543210 है"), [("9876543210", Category::Phone)]);
    }

    #[test]
    fn operators_patterns_match_their_shape_as_whole_words() {
        let p = vec![Shape::parse("EMP-\\d\\d\\d\\d").unwrap()];
        let f = scan_with("ids EMP-1234, EMP-12345 and xEMP-1234", &|_| true, &[], &p);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].start, f[0].end, f[0].category), (4, 12, Category::Pattern));
        assert!(Shape::parse("a\\q").is_err() && Shape::parse("ab").is_err());
        let w = Shape::parse("\\a\\w\\d").unwrap();
        assert_eq!(scan_with("x z9 Ab7", &|_| true, &[], &[w]).len(), 1);
    }

    #[test]
    fn checksums() {
        assert!(verhoeff(&[2, 3, 6]) && !verhoeff(&[2, 3, 7]));
        assert!(luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
        assert!(mod97(b"GB82WEST12345698765432"));
    }
}
