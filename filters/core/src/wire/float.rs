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

/// The powers of ten the digits need: 10^e for e in `E_MIN..=E_MAX`.
const E_MIN: i32 = -292;
const E_MAX: i32 = 324;
const STEP: usize = 28;

/// `floor(10^e * 2^-r)` for every 28th `e` from `E_MIN`, `r` the power of two that puts it in
/// `[2^125, 2^126)`: (high 64 bits, low 64 bits).
const BASES: [(u64, u64); (E_MAX - E_MIN) as usize / STEP + 1] = [
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
    0x5400_0004_5514_4044,
    0x0040_4105_5545_4551,
    0x4555_0400_0000_0000,
    0x9659_5964_1054_4015,
    0x1545_5515_1452_5955,
    0x5550_9555_0550_5155,
    0x0104_1400_0400_0055,
    0x5095_5565_96a6_5a54,
    0x4954_5405_1051_5004,
    0x0000_00aa_aaaa_a996,
    0x0000_0000_0000_0000,
    0x0544_5144_1400_0000,
    0x5555_0555_5454_4105,
    0x5545_5555_5515_1455,
    0x0096_5555_6595_5554,
    0x0544_0045_4050_0050,
    0x0010_1051_0505_5041,
    0x5515_0514_1101_0400,
    0x5955_5559_5440_1155,
    0x0000_0000_0000_5591,
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
    // The base times 5^i (192 bits: `top` above the low 64), shifted back to 126 bits.
    let low = u128::from(lo) * u128::from(five);
    let top = u128::from(hi) * u128::from(five) + (low >> 64);
    let shift = (floor_log2_pow10(e) - floor_log2_pow10(E_MIN + (j * STEP) as i32) - i as i32) as u32;
    let scaled =
        if shift == 0 { top << 64 | (low as u64 as u128) } else { top << (64 - shift) | (low as u64 as u128) >> shift };
    let correction = CORRECTIONS.get(at / 32).map_or(0, |w| (w >> (2 * (at % 32))) & 3) + 1;
    let g = scaled + u128::from(correction);
    ((g >> 63) as u64, g as u64 & MASK63)
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
    thread_local! {
        /// The last power made: (e, g1, g0).
        static LAST: std::cell::Cell<(i32, u64, u64)> = const { std::cell::Cell::new((i32::MIN, 0, 0)) };
    }
    let (g1, g0) = LAST.with(|c| {
        let (e, g1, g0) = c.get();
        if e == -k {
            (g1, g0)
        } else {
            let (g1, g0) = pow10(-k);
            c.set((-k, g1, g0));
            (g1, g0)
        }
    });
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
