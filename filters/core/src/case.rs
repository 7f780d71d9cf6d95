//! Lower case without the standard library's Unicode case tables.
//!
//! `char::to_lowercase` links a table of every cased character, one entry each (about 13 KB of
//! the module). The same mapping is kept here as runs: characters that are consecutive, or every
//! other one, and move by the same distance. The test compares it with `char::to_lowercase` for
//! every character (and prints the runs again when the standard library's Unicode version
//! changes them).

use crate::text::Text;

/// `(first, count, stride, delta)`: `first + k * stride` lowers to itself plus `delta`, for
/// `k < count`; sorted by `first`.
const RUNS: [(u32, u8, u8, i32); NUM_RUNS] = [
    (0x00041, 26, 1, 32),
    (0x000C0, 23, 1, 32),
    (0x000D8, 7, 1, 32),
    (0x00100, 24, 2, 1),
    (0x00132, 3, 2, 1),
    (0x00139, 8, 2, 1),
    (0x0014A, 23, 2, 1),
    (0x00178, 1, 1, -121),
    (0x00179, 3, 2, 1),
    (0x00181, 1, 1, 210),
    (0x00182, 2, 2, 1),
    (0x00186, 1, 1, 206),
    (0x00187, 1, 1, 1),
    (0x00189, 2, 1, 205),
    (0x0018B, 1, 1, 1),
    (0x0018E, 1, 1, 79),
    (0x0018F, 1, 1, 202),
    (0x00190, 1, 1, 203),
    (0x00191, 1, 1, 1),
    (0x00193, 1, 1, 205),
    (0x00194, 1, 1, 207),
    (0x00196, 1, 1, 211),
    (0x00197, 1, 1, 209),
    (0x00198, 1, 1, 1),
    (0x0019C, 1, 1, 211),
    (0x0019D, 1, 1, 213),
    (0x0019F, 1, 1, 214),
    (0x001A0, 3, 2, 1),
    (0x001A6, 1, 1, 218),
    (0x001A7, 1, 1, 1),
    (0x001A9, 1, 1, 218),
    (0x001AC, 1, 1, 1),
    (0x001AE, 1, 1, 218),
    (0x001AF, 1, 1, 1),
    (0x001B1, 2, 1, 217),
    (0x001B3, 2, 2, 1),
    (0x001B7, 1, 1, 219),
    (0x001B8, 1, 1, 1),
    (0x001BC, 1, 1, 1),
    (0x001C4, 1, 1, 2),
    (0x001C5, 1, 1, 1),
    (0x001C7, 1, 1, 2),
    (0x001C8, 1, 1, 1),
    (0x001CA, 1, 1, 2),
    (0x001CB, 9, 2, 1),
    (0x001DE, 9, 2, 1),
    (0x001F1, 1, 1, 2),
    (0x001F2, 2, 2, 1),
    (0x001F6, 1, 1, -97),
    (0x001F7, 1, 1, -56),
    (0x001F8, 20, 2, 1),
    (0x00220, 1, 1, -130),
    (0x00222, 9, 2, 1),
    (0x0023A, 1, 1, 10795),
    (0x0023B, 1, 1, 1),
    (0x0023D, 1, 1, -163),
    (0x0023E, 1, 1, 10792),
    (0x00241, 1, 1, 1),
    (0x00243, 1, 1, -195),
    (0x00244, 1, 1, 69),
    (0x00245, 1, 1, 71),
    (0x00246, 5, 2, 1),
    (0x00370, 2, 2, 1),
    (0x00376, 1, 1, 1),
    (0x0037F, 1, 1, 116),
    (0x00386, 1, 1, 38),
    (0x00388, 3, 1, 37),
    (0x0038C, 1, 1, 64),
    (0x0038E, 2, 1, 63),
    (0x00391, 17, 1, 32),
    (0x003A3, 9, 1, 32),
    (0x003CF, 1, 1, 8),
    (0x003D8, 12, 2, 1),
    (0x003F4, 1, 1, -60),
    (0x003F7, 1, 1, 1),
    (0x003F9, 1, 1, -7),
    (0x003FA, 1, 1, 1),
    (0x003FD, 3, 1, -130),
    (0x00400, 16, 1, 80),
    (0x00410, 32, 1, 32),
    (0x00460, 17, 2, 1),
    (0x0048A, 27, 2, 1),
    (0x004C0, 1, 1, 15),
    (0x004C1, 7, 2, 1),
    (0x004D0, 48, 2, 1),
    (0x00531, 38, 1, 48),
    (0x010A0, 38, 1, 7264),
    (0x010C7, 1, 1, 7264),
    (0x010CD, 1, 1, 7264),
    (0x013A0, 80, 1, 38864),
    (0x013F0, 6, 1, 8),
    (0x01C89, 1, 1, 1),
    (0x01C90, 43, 1, -3008),
    (0x01CBD, 3, 1, -3008),
    (0x01E00, 75, 2, 1),
    (0x01E9E, 1, 1, -7615),
    (0x01EA0, 48, 2, 1),
    (0x01F08, 8, 1, -8),
    (0x01F18, 6, 1, -8),
    (0x01F28, 8, 1, -8),
    (0x01F38, 8, 1, -8),
    (0x01F48, 6, 1, -8),
    (0x01F59, 4, 2, -8),
    (0x01F68, 8, 1, -8),
    (0x01F88, 8, 1, -8),
    (0x01F98, 8, 1, -8),
    (0x01FA8, 8, 1, -8),
    (0x01FB8, 2, 1, -8),
    (0x01FBA, 2, 1, -74),
    (0x01FBC, 1, 1, -9),
    (0x01FC8, 4, 1, -86),
    (0x01FCC, 1, 1, -9),
    (0x01FD8, 2, 1, -8),
    (0x01FDA, 2, 1, -100),
    (0x01FE8, 2, 1, -8),
    (0x01FEA, 2, 1, -112),
    (0x01FEC, 1, 1, -7),
    (0x01FF8, 2, 1, -128),
    (0x01FFA, 2, 1, -126),
    (0x01FFC, 1, 1, -9),
    (0x02126, 1, 1, -7517),
    (0x0212A, 1, 1, -8383),
    (0x0212B, 1, 1, -8262),
    (0x02132, 1, 1, 28),
    (0x02160, 16, 1, 16),
    (0x02183, 1, 1, 1),
    (0x024B6, 26, 1, 26),
    (0x02C00, 48, 1, 48),
    (0x02C60, 1, 1, 1),
    (0x02C62, 1, 1, -10743),
    (0x02C63, 1, 1, -3814),
    (0x02C64, 1, 1, -10727),
    (0x02C67, 3, 2, 1),
    (0x02C6D, 1, 1, -10780),
    (0x02C6E, 1, 1, -10749),
    (0x02C6F, 1, 1, -10783),
    (0x02C70, 1, 1, -10782),
    (0x02C72, 1, 1, 1),
    (0x02C75, 1, 1, 1),
    (0x02C7E, 2, 1, -10815),
    (0x02C80, 50, 2, 1),
    (0x02CEB, 2, 2, 1),
    (0x02CF2, 1, 1, 1),
    (0x0A640, 23, 2, 1),
    (0x0A680, 14, 2, 1),
    (0x0A722, 7, 2, 1),
    (0x0A732, 31, 2, 1),
    (0x0A779, 2, 2, 1),
    (0x0A77D, 1, 1, -35332),
    (0x0A77E, 5, 2, 1),
    (0x0A78B, 1, 1, 1),
    (0x0A78D, 1, 1, -42280),
    (0x0A790, 2, 2, 1),
    (0x0A796, 10, 2, 1),
    (0x0A7AA, 1, 1, -42308),
    (0x0A7AB, 1, 1, -42319),
    (0x0A7AC, 1, 1, -42315),
    (0x0A7AD, 1, 1, -42305),
    (0x0A7AE, 1, 1, -42308),
    (0x0A7B0, 1, 1, -42258),
    (0x0A7B1, 1, 1, -42282),
    (0x0A7B2, 1, 1, -42261),
    (0x0A7B3, 1, 1, 928),
    (0x0A7B4, 8, 2, 1),
    (0x0A7C4, 1, 1, -48),
    (0x0A7C5, 1, 1, -42307),
    (0x0A7C6, 1, 1, -35384),
    (0x0A7C7, 2, 2, 1),
    (0x0A7CB, 1, 1, -42343),
    (0x0A7CC, 8, 2, 1),
    (0x0A7DC, 1, 1, -42561),
    (0x0A7F5, 1, 1, 1),
    (0x0FF21, 26, 1, 32),
    (0x10400, 40, 1, 40),
    (0x104B0, 36, 1, 40),
    (0x10570, 11, 1, 39),
    (0x1057C, 15, 1, 39),
    (0x1058C, 7, 1, 39),
    (0x10594, 2, 1, 39),
    (0x10C80, 51, 1, 64),
    (0x10D50, 22, 1, 32),
    (0x118A0, 32, 1, 32),
    (0x16E40, 32, 1, 32),
    (0x16EA0, 25, 1, 27),
    (0x1E900, 34, 1, 34),
];
const NUM_RUNS: usize = 185;

/// U+0130 (capital I with a dot above) is the one character whose lowercase is two: `i` and
/// U+0307 (combining dot above).
const DOTTED_I: char = '\u{130}';

/// The characters of `c`'s lowercase, as `char::to_lowercase` gives them.
pub fn lowercase(c: char) -> impl Iterator<Item = char> {
    let second = (c == DOTTED_I).then_some('\u{307}');
    let first = if c == DOTTED_I { 'i' } else { lower(c) };
    core::iter::once(first).chain(second)
}

/// `c` lowered to one character (U+0130 to `i`; see [`lowercase`]).
pub fn lower(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let cp = u32::from(c);
    // The last run starting at or before `cp`.
    let i = RUNS.partition_point(|r| r.0 <= cp);
    let Some(&(first, count, stride, delta)) = i.checked_sub(1).and_then(|i| RUNS.get(i)) else {
        return c;
    };
    let off = cp - first;
    let stride = u32::from(stride);
    if off % stride != 0 || off / stride >= u32::from(count) {
        return c;
    }
    cp.checked_add_signed(delta).and_then(char::from_u32).unwrap_or(c)
}

/// `s` lowered as `str::to_lowercase` lowers it, but for a final capital sigma, which lowers to
/// `σ` here (not `ς`).
pub fn to_lowercase(s: &str) -> String {
    if s.is_ascii() {
        return s.lower();
    }
    s.chars().flat_map(lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_character_lowers_as_the_standard_library_lowers_it() {
        let mut wrong = vec![];
        for c in (0..0x11_0000).filter_map(char::from_u32) {
            if !c.to_lowercase().eq(lowercase(c)) {
                wrong.push(c);
            }
        }
        if !wrong.is_empty() {
            // The runs as the standard library's tables now give them.
            let mut runs: Vec<(u32, u32, i32, u32)> = vec![];
            for cp in 0..0x11_0000u32 {
                let Some(c) = char::from_u32(cp) else { continue };
                let l: Vec<char> = c.to_lowercase().collect();
                let [l] = l.as_slice() else { continue };
                if *l == c {
                    continue;
                }
                let d = *l as i32 - cp as i32;
                if let Some(r) = runs.last_mut() {
                    let gap = cp - r.1;
                    if r.2 == d && (gap == 1 || gap == 2) && (r.3 == 0 || r.3 == gap) {
                        r.1 = cp;
                        r.3 = gap;
                        continue;
                    }
                }
                runs.push((cp, cp, d, 0));
            }
            for (s, e, d, st) in runs {
                let st = st.max(1);
                println!("    (0x{s:05X}, {}, {st}, {d}),", (e - s) / st + 1);
            }
            panic!("{} characters lower differently: {:?}", wrong.len(), &wrong[..wrong.len().min(20)]);
        }
    }

    #[test]
    fn strings_lower_as_the_standard_library_lowers_them_but_for_a_final_sigma() {
        for s in ["", "Hello", "ÀÉÎÕÜ Straße", "ΑΒΓ ΔΣ.", "ПРИВЕТ Мир", "İstanbul", "ǅ ǈ ǋ", "Ａｂｃ", "ꞫꞬ 𐐀"]
        {
            assert_eq!(to_lowercase(s), s.to_lowercase().replace('ς', "σ"), "{s}");
        }
        assert_eq!(to_lowercase("ΟΔΟΣ"), "οδοσ");
    }
}
