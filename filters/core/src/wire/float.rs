//! A float's shortest decimal text, as `serde_json` writes it: the fewest significant digits that
//! read back as the same `f64`, the closest such number to it when several have that many (an
//! even last digit on a tie), laid out as `zmij` (serde_json's writer) lays it out: plain from
//! `0.00001` up to below `1e16` (`1.0`, `0.001234`, `1000000000000000.0`), otherwise
//! `1.5e+300`, `2e-7`.
//!
//! The digits come by Raffaello Giulietti's Schubfach method ("The Schubfach way to render
//! doubles", 2020): the value's binary significand, scaled by a 126-bit approximation of a power
//! of ten and rounded to odd, decides in a few comparisons which of at most four candidates is
//! the answer. `zmij` holds its 617 powers of ten in a table (10 KB, with 5 KB of exponent texts
//! beside it: 19 KB of the module in all); here every 28th power is held, and the others are
//! made from it and a power of five, with the last units' corrections in 2 bits each (0.5 KB).
//! The unit tests compare every power made with the exact one, and the text with serde_json's.
//!
//! Speed: a power made costs more than one read from a table, so the last one made is kept (the
//! numbers of one answer, an embedding's values above all, are mostly of a few magnitudes). In
//! V8 (node, wasm32-wasip1), a float of an embedding took about 110-120 ns against `zmij`'s
//! 80-90 (a million values, each run against the other in one process).

/// `floor(e * log10(2))`, for `|e| <= 5456721`.
fn floor_log10_pow2(e: i32) -> i32 {
    ((e as i64 * 661_971_961_083) >> 41) as i32
}

/// `floor(log10(3/4 * 2^e))`, for `|e| <= 5456721`.
fn floor_log10_three_quarters_pow2(e: i32) -> i32 {
    ((e as i64 * 661_971_961_083 - 274_743_187_321) >> 41) as i32
}

/// `floor(e * log2(10))`, for `|e| <= 1233`.
fn floor_log2_pow10(e: i32) -> i32 {
    ((e as i64 * 913_124_641_741) >> 38) as i32
}

/// The powers of ten the writer and the reader need: 10^e for e in `E_MIN..=E_MAX` (the writer
/// from -292, the reader down to -342: 19 digits times 10^-342 reach the smallest subnormal).
const E_MIN: i32 = -348;
const E_MAX: i32 = 324;
const STEP: usize = 28;

/// `floor(10^e * 2^-r)` for every 28th `e` from `E_MIN`, `r` the power of two that puts it in
/// `[2^125, 2^126)`: (high 64 bits, low 64 bits).
const BASES: [(u64, u64); (E_MAX - E_MIN) as usize / STEP + 1] = [
    (0x3ea3_f568_0207_00a2, 0x05cc_b21a_7358_3914),
    (0x3f40_2e25_d1e0_8e34, 0x2248_2c26_2555_48ad),
    (0x3fdd_ec7f_2faf_3713, 0xc97a_3a27_04ee_c3de),
    (0x203e_9a1f_e207_1fe3, 0x9f39_998d_2f27_42e6),
    (0x208f_049e_576d_b395, 0xddb1_4f42_35ad_c216),
    (0x20e0_37aa_4f69_2f18, 0x1091_f2e7_967d_c79b),
    (0x2132_3537_f4b1_8fce, 0xca7b_367d_0010_781c),
    (0x2184_ff40_5161_dd61, 0x6f41_9d0b_3a57_d7cd),
    (0x21d8_97c1_5b1f_12a2, 0xc451_c735_d92b_525c),
    (0x222d_00bd_ff5d_54e6, 0xc476_f2c0_863a_ed05),
    (0x2282_3c3e_2fc3_c55a, 0xc6e3_a7b2_d906_d63f),
    (0x22d8_4c4e_eeaf_38b1, 0x88c8_eb12_cecf_6805),
    (0x232f_3302_5bd4_2232, 0xfe4f_e1ed_d10b_9174),
    (0x2386_f26f_c100_0000, 0x0000_0000_0000_0000),
    (0x23df_8cb3_9efa_971b, 0xf920_8008_e880_0000),
    (0x2439_03ef_ba87_4e92, 0xaf22_557a_51bf_8c73),
    (0x2493_5a4b_2986_f9d6, 0x164f_0989_9c17_e715),
    (0x24ee_91f2_603a_6337, 0xf19b_ccdb_0dac_404d),
    (0x254a_ad17_3ea5_e82c, 0xb765_169d_1efc_9860),
    (0x25a7_adf1_1e16_79d0, 0xe7d9_12b9_692c_6cc9),
    (0x2605_96bc_dec8_54f7, 0xb0dc_9e8c_dea2_dc12),
    (0x2664_69bc_f5af_c5d9, 0x6b32_9b68_782a_3bca),
    (0x26c4_2939_7a64_4c4a, 0x329f_3cad_0647_20c9),
    (0x2724_d780_352e_7634, 0x9bb4_6fe6_95a7_ccf4),
    (0x2786_76e4_ad38_c6ea, 0x5b01_e8b0_9aa0_d1b4),
];

/// For each `e` in `E_MIN..=E_MAX`, what the power made from its base and a power of five
/// lacks of `floor(10^e * 2^-r) + 1`, less one: 2 bits each, 32 to a word.
const CORRECTIONS: [u64; ((E_MAX - E_MIN) as usize + 1).div_ceil(32)] = [
    0x4051_4555_5155_0154,
    0x4044_0004_1010_0040,
    0x4551_5400_0004_5514,
    0x0000_0040_4105_5545,
    0x4015_4555_0400_0000,
    0x5955_9659_5964_1054,
    0x5155_1545_5515_1452,
    0x0055_5550_9555_0550,
    0x5a54_0104_1400_0400,
    0x5004_5095_5565_96a6,
    0xa996_4954_5405_1051,
    0x0000_0000_00aa_aaaa,
    0x0000_0000_0000_0000,
    0x4105_0544_5144_1400,
    0x1455_5555_0555_5454,
    0x5554_5545_5555_5515,
    0x0050_0096_5555_6595,
    0x5041_0544_0045_4050,
    0x0400_0010_1051_0505,
    0x1155_5515_0514_1101,
    0x5591_5955_5559_5440,
    0x0000_0000_0000_0000,
];

/// 5^i for i below `STEP`.
const POW5: [u64; STEP] = {
    let mut p = [1u64; STEP];
    let mut i = 1;
    while i < STEP {
        p[i] = p[i - 1] * 5;
        i += 1;
    }
    p
};

const MASK63: u64 = (1 << 63) - 1;

/// `floor(10^e * 2^-r) + 1` for `e` in `E_MIN..=E_MAX`, with `r = floor_log2_pow10(e) - 125`
/// (a number in `(2^125, 2^126]`), as Schubfach's two 63-bit limbs (high, low).
fn pow10(e: i32) -> (u64, u64) {
    let at = (e - E_MIN) as usize;
    let (j, i) = (at / STEP, at % STEP);
    let (hi, lo) = BASES.get(j).copied().unwrap_or_default();
    let five = POW5.get(i).copied().unwrap_or(1);
    // The base times 5^i, 192 bits (th, tl, low), shifted back to 126 bits. (In 64-bit halves:
    // on wasm32 a `u128` shifted by a variable is a call to the compiler's runtime.)
    let (carry, low) = wide(lo, five);
    let (th, tl) = wide(hi, five);
    let (tl, c) = tl.overflowing_add(carry);
    let th = th + u64::from(c);
    let shift = (floor_log2_pow10(e) - floor_log2_pow10(E_MIN + (j * STEP) as i32) - i as i32) as u32;
    let (sh, sl) = match shift {
        0 => (tl, low),
        64.. => (th, tl),
        _ => (th << (64 - shift) | tl >> shift, tl << (64 - shift) | low >> shift),
    };
    let scaled = u128::from(sh) << 64 | u128::from(sl);
    let correction = CORRECTIONS.get(at / 32).map_or(0, |w| (w >> (2 * (at % 32))) & 3) + 1;
    let g = scaled + u128::from(correction);
    ((g >> 63) as u64, g as u64 & MASK63)
}

/// [`pow10`], the last one made kept: the numbers of one answer, an embedding's values above all,
/// are mostly of a few magnitudes.
fn power(e: i32) -> (u64, u64) {
    thread_local! {
        /// The last power made: (e, g1, g0).
        static LAST: std::cell::Cell<(i32, u64, u64)> = const { std::cell::Cell::new((i32::MIN, 0, 0)) };
    }
    LAST.with(|c| {
        let (last, g1, g0) = c.get();
        if last == e {
            (g1, g0)
        } else {
            let (g1, g0) = pow10(e);
            c.set((e, g1, g0));
            (g1, g0)
        }
    })
}

/// `a * b` as (high, low) 64 bits: on wasm32, four 32-bit products in line, where a `u128`
/// product is a call to the compiler's runtime.
#[inline(always)]
fn wide(a: u64, b: u64) -> (u64, u64) {
    let (a1, a0, b1, b0) = (a >> 32, a & 0xffff_ffff, b >> 32, b & 0xffff_ffff);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 32) + (p01 & 0xffff_ffff) + (p10 & 0xffff_ffff);
    (p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32), (mid << 32) | (p00 & 0xffff_ffff))
}

/// `g * cp`, scaled down by 2^127 and rounded to odd (Schubfach's `rop`): the low bit says
/// whether anything was dropped, so comparisons with it are exact.
fn round_to_odd(g1: u64, g0: u64, cp: u64) -> u64 {
    let (x1, _) = wide(g0, cp);
    let (y1, y0) = wide(g1, cp);
    let z = (y0 >> 1) + x1;
    let vbp = y1 + (z >> 63);
    vbp | ((z & MASK63) + MASK63) >> 63
}

/// The shortest decimal `(digits, e)` of a finite, positive `v` (`digits * 10^e`), closest
/// to `v` among those as short; `digits` may end in zeros.
fn shortest(v: f64) -> (u64, i32) {
    let bits = v.to_bits();
    let fraction = bits & ((1 << 52) - 1);
    let biased = ((bits >> 52) & 0x7ff) as i32;
    const C_MIN: u64 = 1 << 52;
    const Q_MIN: i32 = -1074;
    let (c, q) = if biased == 0 { (fraction, Q_MIN) } else { (C_MIN | fraction, biased - 1075) };
    // v = c * 2^q; the numbers that read back as v lie between the midpoints to its
    // neighbours (4 times: cbl and cbr), ends included when c is even.
    let out = c & 1;
    let cb = c << 2;
    let cbr = cb + 2;
    let (cbl, k) = if c != C_MIN || q == Q_MIN {
        (cb - 2, floor_log10_pow2(q))
    } else {
        // A power of two: the neighbour below is half as far.
        (cb - 1, floor_log10_three_quarters_pow2(q))
    };
    let h = (q + floor_log2_pow10(-k) + 2) as u32;
    let (g1, g0) = power(-k);
    let vb = round_to_odd(g1, g0, cb << h);
    let vbl = round_to_odd(g1, g0, cbl << h);
    let vbr = round_to_odd(g1, g0, cbr << h);
    let s = vb >> 2;
    // One digit fewer: at most one multiple of ten lies within the bounds.
    let sp10 = 10 * (s / 10);
    let tp10 = sp10 + 10;
    let upin = vbl + out <= sp10 << 2;
    let wpin = (tp10 << 2) + out <= vbr;
    if upin != wpin {
        return (if upin { sp10 } else { tp10 }, k);
    }
    // Otherwise s or s + 1, whichever is within the bounds; both: the closer, or the even.
    let t = s + 1;
    let uin = vbl + out <= s << 2;
    let win = (t << 2) + out <= vbr;
    if uin != win {
        return (if uin { s } else { t }, k);
    }
    let mid = (s + t) << 1;
    (if vb < mid || (vb == mid && s & 1 == 0) { s } else { t }, k)
}

/// Appends `f` as `serde_json` writes it (see the module's documentation); a float that is not
/// finite as `null`, as JSON has no such number.
#[inline(never)]
pub fn write(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    if f.is_sign_negative() {
        out.push(b'-');
    }
    if f == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let (mut digits, mut e) = shortest(f.abs());
    // (At most 16 zeros: four at a time, then one.)
    while digits % 10_000 == 0 {
        digits /= 10_000;
        e += 4;
    }
    while digits % 10 == 0 {
        digits /= 10;
        e += 1;
    }
    // The digits, two at a time from the right.
    let mut text = [0u8; 20];
    let mut at = text.len();
    while digits >= 10 {
        let pair = (digits % 100) as u8;
        digits /= 100;
        at -= 2;
        text[at] = b'0' + pair / 10;
        text[at + 1] = b'0' + pair % 10;
    }
    if digits > 0 {
        at -= 1;
        text[at] = b'0' + digits as u8;
    }
    let text = &text[at..];
    let n = text.len();
    // The exponent of the first digit.
    let point = e + n as i32 - 1;
    if (-5..=15).contains(&point) {
        if point >= n as i32 - 1 {
            // 1234e7: 12340000000.0
            out.extend_from_slice(text);
            out.resize(out.len() + (point + 1) as usize - n, b'0');
            out.extend_from_slice(b".0");
        } else if point >= 0 {
            // 1234e-2: 12.34
            let (int, frac) = text.split_at(point as usize + 1);
            out.extend_from_slice(int);
            out.push(b'.');
            out.extend_from_slice(frac);
        } else {
            // 1234e-6: 0.001234
            out.extend_from_slice(b"0.");
            out.resize(out.len() + (-point - 1) as usize, b'0');
            out.extend_from_slice(text);
        }
        return;
    }
    // 1234e30: 1.234e+33
    let (first, rest) = text.split_at(1);
    out.extend_from_slice(first);
    if !rest.is_empty() {
        out.push(b'.');
        out.extend_from_slice(rest);
    }
    out.extend_from_slice(if point < 0 { b"e-" } else { b"e+" });
    crate::headers::push_decimal(out, u64::from(point.unsigned_abs()));
}

/// The f64 nearest to the JSON number `text` (a tie to the even significand), as core's
/// `f64::from_str` reads it; `None` when that is infinite (JSON has no such number). `text` must
/// match JSON's grammar for a number (the JSON reader checks it first); any other text gives
/// some float, never a panic.
///
/// Most numbers are decided in a few multiplications: up to 15 digits and a power of ten up to
/// 22 exactly as two floats (Clinger's fast path); otherwise the first 19 digits times the
/// writer's 126-bit power of ten, when the product is not within its error of a halfway point
/// (in the manner of Eisel and Lemire). Only a number that close to a tie is read exactly: its
/// digits as a big integer, compared with the halfway point.
pub fn read(text: &[u8]) -> Option<f64> {
    let (negative, t) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let end = t.iter().position(|&b| b | 0x20 == b'e').unwrap_or(t.len());
    let (mantissa, exponent) = t.split_at(end);
    let explicit = exponent_of(exponent);
    let mut w = 0u64;
    let (q, n, more) = scan(mantissa, explicit, 19, |d| w = w * 10 + u64::from(d));
    let bits = if w == 0 || n + q <= -324 {
        // Below 10^-324: nearer to zero than to the smallest subnormal.
        0
    } else if n + q > 309 {
        // At least 10^309.
        return None;
    } else if !more && w <= 1 << 53 && (-22..=22).contains(&q) {
        // Both exact as floats: one rounding.
        const EXACT: [f64; 23] = {
            let mut p = [1.0; 23];
            let mut i = 1;
            while i < 23 {
                p[i] = p[i - 1] * 10.0;
                i += 1;
            }
            p
        };
        let p = EXACT.get(q.unsigned_abs() as usize).copied().unwrap_or(1.0);
        let v = if q < 0 { w as f64 / p } else { w as f64 * p };
        v.to_bits()
    } else {
        let q = q as i32;
        let (m, e2, up) = estimate(w, q);
        let decided = match (up, more) {
            (Some(up), false) => Some(m + u64::from(up)),
            // The digits after the 19th: w's answer must be w + 1's.
            (Some(up), true) => match estimate(w + 1, q) {
                (m1, e1, Some(up1)) if e1 == e2 && m1 + u64::from(up1) == m + u64::from(up) => Some(m + u64::from(up)),
                _ => None,
            },
            (None, _) => None,
        };
        compose(decided.unwrap_or_else(|| exactly(mantissa, explicit, m, e2)), e2)
    };
    if bits >= 0x7ff0_0000_0000_0000 {
        return None;
    }
    let v = f64::from_bits(bits);
    Some(if negative { -v } else { v })
}

/// An exponent's value (`e-7`: -7), held within a million either way (beyond, every number is
/// zero or infinite anyway).
fn exponent_of(text: &[u8]) -> i64 {
    let (negative, digits) = match text.get(1) {
        Some(b'-') => (true, text.get(2..).unwrap_or_default()),
        Some(b'+') => (false, text.get(2..).unwrap_or_default()),
        _ => (false, text.get(1..).unwrap_or_default()),
    };
    let e = digits.iter().fold(0i64, |e, &d| (e * 10 + i64::from(d.wrapping_sub(b'0') % 10)).min(1_000_000));
    if negative {
        -e
    } else {
        e
    }
}

/// Gives `take` the significant digits of `mantissa` (no leading zeros), at most `limit` of
/// them, and returns the exponent of the last one given (the number is their integer times
/// 10 to it, `explicit` included), how many were given, and whether a digit left out is not
/// zero.
fn scan(mantissa: &[u8], explicit: i64, limit: i64, mut take: impl FnMut(u8)) -> (i64, i64, bool) {
    let (mut q, mut n, mut more, mut fraction) = (explicit, 0i64, false, false);
    for &c in mantissa {
        if c == b'.' {
            fraction = true;
            continue;
        }
        q -= i64::from(fraction);
        let d = c.wrapping_sub(b'0');
        if n == 0 && d == 0 {
            continue;
        }
        if n < limit {
            take(d);
            n += 1;
        } else {
            q += 1;
            more |= d != 0;
        }
    }
    (q, n, more)
}

/// The float bits of `m * 2^e2`, for `e2 >= -1074` and `m` below 2^53 (or just 2^53: the next
/// binary exponent), the exponent's field infinite's or beyond when it is too large.
fn compose(m: u64, e2: i32) -> u64 {
    // For a normal number the significand's hidden bit adds the one the exponent field lacks;
    // a subnormal has e2 = -1074 and no hidden bit.
    (((e2 + 1074) as u64) << 52).wrapping_add(m)
}

/// `w * 10^q` (`w` not zero) to 53 significant bits, or to fewer as a subnormal: the significand
/// `m` below (or at) the value and its power of two `e2`, and whether the value rounds up to
/// `m + 1`, when the product with the power of ten's error can tell.
fn estimate(w: u64, q: i32) -> (u64, i32, Option<bool>) {
    let s = w.leading_zeros();
    let wn = w << s;
    // p = floor(10^q * 2^-r), 126 bits: w * 10^q = wn * (p + a fraction) * 2^(r - s), and
    // wn * p, 190 bits, is within wn < 2^64 below wn * (p + the fraction).
    let (g1, g0) = power(q);
    let p = ((u128::from(g1) << 63) | u128::from(g0)) - 1;
    let (a1, _) = wide(wn, p as u64);
    let (b1, b0) = wide(wn, (p >> 64) as u64);
    let (mid, carry) = b0.overflowing_add(a1);
    // The product's top 128 bits, (high, mid): the true one is in [zh, zh + 2).
    let high = b1 + u64::from(carry);
    let len = 128 - high.leading_zeros() as i32;
    // The value is zh * 2^shift, and its last bit kept is worth 2^e2.
    let shift = 64 + floor_log2_pow10(q) - 125 - s as i32;
    let e2 = (len - 53 + shift).max(-1074);
    let k = e2 - shift;
    if k >= len {
        // Below 2^e2, the smallest subnormal: zero or that, told exactly.
        return (0, e2, None);
    }
    // k is 71 or more (zh has 125 or 126 bits): the bits below the last kept one are `high`'s
    // lowest k - 64 and all of `mid`; the halfway point is `half` in `high` and zero in `mid`.
    let kh = (k - 64) as u32;
    let m = high >> kh;
    let rest = high & ((1 << kh) - 1);
    let half = 1 << (kh - 1);
    // Below half - 1 (the true rest is then below half), above half, or too close to tell.
    let up = if rest < half - 1 || (rest == half - 1 && mid < u64::MAX) {
        Some(false)
    } else if rest > half || (rest == half && mid > 0) {
        Some(true)
    } else {
        None
    };
    (m, e2, up)
}

/// The significand of `mantissa` (times 10^`explicit`) rounded at 2^e2, by comparing it exactly
/// with the point halfway between `m` and `m + 1`: the value is at least `m * 2^e2` and below
/// `(m + 1.5) * 2^e2` (the estimate is within far less than a unit of it, and the digits after
/// the 19th add less than a hundredth of one).
#[inline(never)]
fn exactly(mantissa: &[u8], explicit: i64, m: u64, e2: i32) -> u64 {
    // Up to 800 digits; a number with more that are not all zeros is read as its first 800 and a
    // 1 after them. (A halfway point has at most 767 significant digits, so it is above or below
    // both alike.)
    let mut digits = Big(Vec::new());
    let (mut chunk, mut in_chunk) = (0u32, 0u32);
    let (mut q, _, more) = scan(mantissa, explicit, 800, |d| {
        chunk = chunk * 10 + u32::from(d);
        in_chunk += 1;
        if in_chunk == 9 {
            digits.mul_add(1_000_000_000, chunk);
            (chunk, in_chunk) = (0, 0);
        }
    });
    digits.mul_add(10u32.pow(in_chunk), chunk);
    if more {
        digits.mul_add(10, 1);
        q -= 1;
    }
    let q = q as i32;
    // digits * 10^q against (2m + 1) * 2^(e2 - 1), both sides made integers.
    let against = |m: u64| {
        let mut lhs = digits.clone();
        let mut rhs = Big(vec![(2 * m + 1) as u32, ((2 * m + 1) >> 32) as u32]);
        if q >= 0 {
            lhs.pow5(q as u32);
        } else {
            rhs.pow5(q.unsigned_abs());
        }
        let twos = q - (e2 - 1);
        if twos >= 0 {
            lhs.shl(twos as u32);
        } else {
            rhs.shl(twos.unsigned_abs());
        }
        lhs.cmp(&rhs)
    };
    match against(m) {
        std::cmp::Ordering::Less => m,
        std::cmp::Ordering::Equal => m + (m & 1),
        std::cmp::Ordering::Greater => m + 1,
    }
}

/// A non-negative integer in 32-bit limbs, low first (the exact reading's numbers).
#[derive(Clone)]
struct Big(Vec<u32>);

impl Big {
    /// `self * m + a`.
    fn mul_add(&mut self, m: u32, a: u32) {
        let mut carry = u64::from(a);
        for limb in &mut self.0 {
            let p = u64::from(*limb) * u64::from(m) + carry;
            *limb = p as u32;
            carry = p >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    /// `self * 5^e`.
    fn pow5(&mut self, mut e: u32) {
        while e > 0 {
            let step = e.min(13);
            self.mul_add(5u32.pow(step), 0);
            e -= step;
        }
    }

    /// `self * 2^bits`.
    fn shl(&mut self, bits: u32) {
        let (words, bits) = ((bits / 32) as usize, bits % 32);
        if bits > 0 {
            self.mul_add(1 << bits, 0);
        }
        self.0.splice(0..0, std::iter::repeat_n(0, words));
    }

    fn cmp(&self, other: &Big) -> std::cmp::Ordering {
        let used = |b: &Big| b.0.iter().rposition(|&l| l != 0).map_or(0, |i| i + 1);
        let (a, b) = (used(self), used(other));
        a.cmp(&b).then_with(|| self.0[..a].iter().rev().cmp(other.0[..b].iter().rev()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A non-negative integer in 64-bit limbs, low first: just what checking a power needs.
    #[derive(Clone, PartialEq, Eq)]
    struct Big(Vec<u64>);

    impl Big {
        fn of(n: u128) -> Big {
            Big(vec![n as u64, (n >> 64) as u64])
        }
        fn times(mut self, m: u64) -> Big {
            let mut carry = 0u128;
            for limb in &mut self.0 {
                let p = u128::from(*limb) * u128::from(m) + carry;
                *limb = p as u64;
                carry = p >> 64;
            }
            self.0.push(carry as u64);
            self
        }
        fn pow(mut self, base: u64, times: u32) -> Big {
            for _ in 0..times {
                self = self.times(base);
            }
            self
        }
        /// `self * n`, for an `n` of up to 128 bits.
        fn times_wide(&self, n: u128) -> Big {
            let low = self.clone().times(n as u64);
            let mut high = self.clone().times((n >> 64) as u64);
            high.0.insert(0, 0);
            let mut sum = Vec::new();
            let mut carry = 0u128;
            for i in 0..low.0.len().max(high.0.len()) {
                let s = u128::from(low.0.get(i).copied().unwrap_or(0))
                    + u128::from(high.0.get(i).copied().unwrap_or(0))
                    + carry;
                sum.push(s as u64);
                carry = s >> 64;
            }
            sum.push(carry as u64);
            Big(sum)
        }
        fn cmp(&self, other: &Big) -> std::cmp::Ordering {
            let len = self.0.len().max(other.0.len());
            let limb = |b: &Big, i: usize| b.0.get(i).copied().unwrap_or(0);
            (0..len)
                .rev()
                .map(|i| limb(self, i).cmp(&limb(other, i)))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        }
    }

    /// Reads `text` as core's reader does, both from it and with a minus before it.
    fn reads(text: &str) {
        for t in [text.to_string(), format!("-{text}")] {
            let want = t.parse::<f64>().unwrap();
            let got = read(t.as_bytes());
            let want = want.is_finite().then_some(want.to_bits());
            assert_eq!(got.map(f64::to_bits), want, "{t}");
        }
    }

    /// The decimal digits of `n * 2^twos * 5^fives` (a number in base-10 digits, low first).
    fn decimal(n: u128, twos: u32, fives: u32) -> String {
        let mut d: Vec<u8> = n.to_string().bytes().rev().map(|b| b - b'0').collect();
        let mut times = |m: u8| {
            let mut carry = 0u8;
            for x in d.iter_mut() {
                let p = *x * m + carry;
                *x = p % 10;
                carry = p / 10;
            }
            if carry > 0 {
                d.push(carry);
            }
        };
        (0..twos).for_each(|_| times(2));
        (0..fives).for_each(|_| times(5));
        d.iter().rev().map(|x| (x + b'0') as char).collect()
    }

    /// The exact text of the point halfway between `f` and the next float up.
    fn halfway(f: f64) -> String {
        let bits = f.to_bits();
        let (biased, fraction) = ((bits >> 52) as i32, bits & ((1 << 52) - 1));
        let (m, e2) = if biased == 0 { (fraction, -1074) } else { (fraction | 1 << 52, biased - 1075) };
        // (2m + 1) * 2^(e2 - 1)
        let h = e2 - 1;
        if h >= 0 {
            decimal(u128::from(2 * m + 1), h as u32, 0)
        } else {
            format!("{}e-{}", decimal(u128::from(2 * m + 1), 0, h.unsigned_abs()), h.unsigned_abs())
        }
    }

    #[test]
    fn reads_every_kind_of_number_as_core_does() {
        for t in [
            "0",
            "0.0",
            "0e5",
            "0.000e-999",
            "1",
            "1.5",
            "0.1",
            "0.3",
            "123.456e-5",
            "1E5",
            "1e+5",
            "1e-5",
            "9007199254740992",
            "9007199254740993",
            "9007199254740993.000000000000001",
            "1e22",
            "1e23",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.7976931348623159e308",
            "1e308",
            "1e309",
            "1e99999999999",
            "2.2250738585072014e-308",
            "2.2250738585072011e-308",
            "4.9406564584124654e-324",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "1e-324",
            "1e-400",
            "5e-324",
            "0.000000000000000000000000000000000000000000001",
            "18446744073709551615",
            "18446744073709551616",
            "10000000000000000000",
            "99999999999999999999",
            "1.00000000000000011102230246251565404236316680908203125",
            "1.00000000000000011102230246251565404236316680908203124",
            "1.00000000000000011102230246251565404236316680908203126",
        ] {
            reads(t);
        }
        // Longer than the exact reading keeps: 1000 digits, a halfway point with a 1 far after.
        reads(&"7".repeat(1000));
        reads(&format!("0.{}", "3".repeat(1000)));
        reads(&format!("{}e-1200", "1".repeat(1000)));
        for f in [1.0, 3.0e-310, 1e300] {
            let h = halfway(f);
            let (digits, exp) = h.split_once('e').unwrap_or((&h, "0"));
            let exp: i32 = exp.parse().unwrap();
            reads(&format!("{digits}{}1e{}", "0".repeat(900), exp - 901));
            reads(&format!("{digits}{}e{}", "0".repeat(900), exp - 900));
            reads(&format!("{digits}{}e{}", "9".repeat(900), exp - 900));
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..50_000 {
            // Shortest texts of any float, and of embeddings' sizes.
            let f = f64::from_bits(next() & !(1 << 63));
            if f.is_finite() {
                reads(&format!("{f:e}"));
                reads(&format!("{f:.17e}"));
            }
            let small = f32::from_bits((next() >> 33) as u32);
            if small.is_finite() {
                reads(&format!("{small}"));
            }
            // Many digits at any scale.
            let digits = (next() % 30 + 1) as usize;
            let text: String = (0..digits).map(|_| char::from(b'0' + (next() % 10) as u8)).collect();
            let e = (next() % 720) as i64 - 360;
            reads(&format!("{text}e{e}"));
            reads(&format!("0.{text}e{e}"));
        }
        // Exactly halfway between two floats, and a last digit either side of it: normal,
        // subnormal, at a binade's top, near the largest.
        let mut cases = vec![f64::MAX, f64::from_bits(f64::MAX.to_bits() - 1), f64::MIN_POSITIVE, f64::from_bits(1)];
        cases.extend((0..52).map(|i| f64::from_bits((1u64 << i) - 1)));
        for _ in 0..2000 {
            cases.push(f64::from_bits(next() % 0x7fef_ffff_ffff_ffff));
            cases.push(f64::from_bits((next() % 0x7ff) << 52 | 0x000f_ffff_ffff_ffff));
        }
        for f in cases {
            let h = halfway(f);
            reads(&h);
            let (digits, exp) = h.split_once('e').unwrap_or((&h, "0"));
            let last = digits.len() - 1;
            for d in [b'0', b'9'] {
                let mut near = digits.as_bytes().to_vec();
                near[last] = d;
                reads(&format!("{}e{exp}", String::from_utf8(near).unwrap()));
            }
            reads(&format!("{digits}000000001e{exp}"));
        }
    }

    #[test]
    fn every_power_of_ten_made_is_the_exact_one() {
        for e in E_MIN..=E_MAX {
            let (g1, g0) = pow10(e);
            let g = u128::from(g1) << 63 | u128::from(g0);
            assert!(g > 1 << 125 && g <= 1 << 126, "{e}");
            // g - 1 = floor(10^e * 2^-r): (g - 1) * D <= A < g * D, for 10^e * 2^-r = A / D.
            let r = floor_log2_pow10(e) - 125;
            let a = Big::of(1).pow(10, e.max(0) as u32).pow(2, (-r).max(0) as u32);
            let d = Big::of(1).pow(10, (-e).max(0) as u32).pow(2, r.max(0) as u32);
            let (low, high) = (d.times_wide(g - 1), d.times_wide(g));
            assert!(low.cmp(&a).is_le() && a.cmp(&high).is_lt(), "10^{e}");
        }
    }

    fn ours(f: f64) -> String {
        let mut out = Vec::new();
        write(&mut out, f);
        String::from_utf8(out).unwrap()
    }

    fn check(f: f64) {
        assert_eq!(ours(f), serde_json::to_string(&f).unwrap(), "{:e} ({:#x})", f, f.to_bits());
    }

    #[test]
    fn writes_every_kind_of_float_as_serde_json_does() {
        for f in [0.0, -0.0, 1.0, 0.1, 0.3, 1.5, -2.25, 1e20, 2e-7, 1e-5, 1e-6, 1.234e-5, 1e15, 1e16, 123456.789, 1e23]
        {
            check(f);
        }
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(ours(f), "null");
        }
        for f in [
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::MIN_POSITIVE / 2.0,
            f64::from_bits(1),
            f64::from_bits(10),
            9007199254740993.0,
        ] {
            check(f);
            check(-f);
        }
        // Every binary exponent, with its smallest, largest and a few other significands.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for exp in 0..2047u64 {
            for m in [0, 1, 2, (1 << 52) - 1, (1 << 51), next() & ((1 << 52) - 1), next() & ((1 << 52) - 1)] {
                check(f64::from_bits(exp << 52 | m));
            }
        }
        // Powers of ten and their neighbours.
        for p in -323..=308 {
            let f: f64 = format!("1e{p}").parse().unwrap();
            for g in [f, f64::from_bits(f.to_bits() + 1), f64::from_bits(f.to_bits() - 1)] {
                check(g);
            }
        }
        // Random bit patterns, and numbers of few digits (as providers send).
        for _ in 0..300_000 {
            check(f64::from_bits(next()));
            let digits = next() % 100_000_000;
            let scale = (next() % 20) as i32;
            check(digits as f64 / 10f64.powi(scale));
            check(f64::from(f32::from_bits((next() >> 32) as u32)));
        }
    }
}
