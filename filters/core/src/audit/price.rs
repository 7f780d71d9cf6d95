//! The price book: USD per million tokens per model, kept as exact integers.
//!
//! A price of `P` USD per million tokens is stored as `P * 10^6` micro-USD per million tokens,
//! which is numerically the price of one token in pico-USD (10^-12 USD). Costs are sums of
//! `tokens * pico_per_token`, so they are exact integers with no float drift.

use crate::config::NameMap;

use crate::wire::tree::Value;

use crate::config::{At, FromConfig, Obj, Read};
use crate::error::ConfigError;

use crate::text::Text;
use crate::wire::usage::Usage;

#[derive(Debug, Clone)]
pub struct PriceBookConfig {
    pub version: String,
    pub models: NameMap<ModelPriceConfig>,
}

/// USD per million tokens as decimal strings, e.g. `"0.15"`.
#[derive(Debug, Clone, Default)]
pub struct ModelPriceConfig {
    pub input: String,
    pub cached_input: Option<String>,
    /// Input written to the provider's prompt cache; the input price when absent.
    pub cache_write: Option<String>,
    /// Input written to the cache for an hour; the `cache_write` price when absent.
    pub cache_write_1h: Option<String>,
    pub output: String,
    pub reasoning: Option<String>,
    pub source: Option<String>,
    pub date: Option<String>,
}

// Members the book does not know are ignored (a book may carry notes of its own).
impl FromConfig for PriceBookConfig {
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        let o = Obj::new(v, at, "PriceBookConfig", None)?;
        Ok(PriceBookConfig { version: o.req("version")?, models: o.req("models")? })
    }
}

impl FromConfig for ModelPriceConfig {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        let o = Obj::new(v, at, "ModelPriceConfig", None)?;
        let mut x = ModelPriceConfig::default();
        x.input = o.req("input")?;
        x.cached_input = o.opt("cached_input")?;
        x.cache_write = o.opt("cache_write")?;
        x.cache_write_1h = o.opt("cache_write_1h")?;
        x.output = o.req("output")?;
        x.reasoning = o.opt("reasoning")?;
        x.source = o.opt("source")?;
        x.date = o.opt("date")?;
        Ok(x)
    }
}

/// Pico-USD per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub cache_write_1h: u64,
    pub output: u64,
    pub reasoning: u64,
}

#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    pub version: String,
    models: NameMap<ModelPrice>,
}

impl TryFrom<&PriceBookConfig> for PriceBook {
    type Error = ConfigError;

    /// A price book's errors name the field within the book (`models.gpt-4o.input`); the filter
    /// that holds the book says where it is ([`ConfigError::at`]).
    fn try_from(cfg: &PriceBookConfig) -> Result<Self, ConfigError> {
        let mut models = NameMap::new();
        for (name, p) in &cfg.models {
            let field = |what: &str, v: &str| {
                parse_usd_per_mtok(v).ok_or_else(|| {
                    ConfigError::new("", format!("models.{name}.{what}"), format!("{v:?} is not a decimal USD amount"))
                })
            };
            let input = field("input", &p.input)?;
            let output = field("output", &p.output)?;
            let cached_input = match &p.cached_input {
                Some(v) => field("cached_input", v)?,
                None => input,
            };
            let cache_write = match &p.cache_write {
                Some(v) => field("cache_write", v)?,
                None => input,
            };
            let cache_write_1h = match &p.cache_write_1h {
                Some(v) => field("cache_write_1h", v)?,
                None => cache_write,
            };
            let reasoning = match &p.reasoning {
                Some(v) => field("reasoning", v)?,
                None => output,
            };
            models
                .insert(name.own(), ModelPrice { input, cached_input, cache_write, cache_write_1h, output, reasoning });
        }
        Ok(Self { version: cfg.version.own(), models })
    }
}

impl PriceBook {
    pub fn compile(cfg: &PriceBookConfig) -> Result<Self, ConfigError> {
        PriceBook::try_from(cfg)
    }

    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        self.models.get(model)
    }

    /// Cost of `u` at the book's dearest rates: an upper bound for a model the book lacks.
    pub fn max_cost_pico(&self, u: &Usage) -> u128 {
        let input = self.models.values().map(|p| p.input.max(p.cache_write).max(p.cache_write_1h)).max().unwrap_or(0);
        let output = self.models.values().map(|p| p.output.max(p.reasoning)).max().unwrap_or(0);
        u128::from(u.input) * u128::from(input) + u128::from(u.output) * u128::from(output)
    }

    /// Cost of a call in pico-USD; `None` when the model is not in the book (never priced as 0).
    pub fn cost_pico(&self, model: &str, u: &Usage) -> Option<u128> {
        let p = self.price(model)?;
        let cached = u.cached_input.min(u.input);
        let written = u.cache_write.min(u.input - cached);
        let hour = u.cache_write_1h.min(written);
        let reasoning = u.reasoning.min(u.output);
        let t = |n: u64, price: u64| u128::from(n) * u128::from(price);
        Some(
            t(u.input - cached - written, p.input)
                + t(cached, p.cached_input)
                + t(written - hour, p.cache_write)
                + t(hour, p.cache_write_1h)
                + t(u.output - reasoning, p.output)
                + t(reasoning, p.reasoning),
        )
    }
}

/// Parses a non-negative decimal with at most 6 fractional digits into millionths.
pub fn parse_usd_per_mtok(s: &str) -> Option<u64> {
    let s = s.trim();
    let (int, frac) = match s.cut(b'.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty()
        || frac.len() > 6
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut frac_padded = String::from(frac);
    while frac_padded.len() < 6 {
        frac_padded.push('0');
    }
    let i: u64 = int.int_as()?;
    let f: u64 = frac_padded.int_as()?;
    i.checked_mul(1_000_000)?.checked_add(f)
}

/// Formats pico-USD as an exact decimal USD string, e.g. `1_500_000` -> `"0.0000015"`.
pub fn format_usd(pico: u128) -> String {
    const PICO: u128 = 1_000_000_000_000;
    let int = pico / PICO;
    // (Written digit by digit: this runs for every priced call, and `format!` of a u128 is slow.)
    let mut s = crate::headers::decimal_u128(int);
    s.push('.');
    let mut frac = pico % PICO;
    if frac == 0 {
        s.push('0');
        return s;
    }
    let mut digits = [b'0'; 12];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    let end = digits.iter().rposition(|&d| d != b'0').map_or(1, |i| i + 1);
    s.extend(digits[..end].iter().map(|&d| char::from(d)));
    s
}

/// Parses an exact decimal USD string (as `format_usd` writes it) back into pico-USD.
pub fn parse_usd(s: &str) -> Option<u128> {
    let (int, frac) = s.trim().cut(b'.').unwrap_or((s.trim(), ""));
    if int.is_empty() || frac.len() > 12 || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut f = String::from(frac);
    while f.len() < 12 {
        f.push('0');
    }
    int.parse::<u128>().ok()?.checked_mul(1_000_000_000_000)?.checked_add(f.parse::<u128>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> PriceBook {
        let cfg: PriceBookConfig = crate::config::from_str(
            r#"{"version":"t1","models":{"m":{"input":"0.15","cached_input":"0.075","output":"0.6"},
                 "r":{"input":"1","output":"4","reasoning":"8"},
                 "c":{"input":"3","cached_input":"0.3","cache_write":"3.75","output":"15"},
                 "h":{"input":"3","cached_input":"0.3","cache_write":"3.75","cache_write_1h":"6","output":"15"}}}"#,
        )
        .unwrap_or_else(|_| PriceBookConfig { version: String::new(), models: NameMap::new() });
        PriceBook::compile(&cfg).unwrap_or_default()
    }

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(parse_usd_per_mtok("0.15"), Some(150_000));
        assert_eq!(parse_usd_per_mtok("3"), Some(3_000_000));
        assert_eq!(parse_usd_per_mtok("0.000001"), Some(1));
        assert_eq!(parse_usd_per_mtok("0.0000001"), None);
        assert_eq!(parse_usd_per_mtok("-1"), None);
        assert_eq!(parse_usd_per_mtok("1e3"), None);
        assert_eq!(parse_usd_per_mtok(".5"), None);
    }

    #[test]
    fn cost_is_exact_and_splits_cached_and_reasoning() {
        let b = book();
        // 1000 input (400 cached), 200 output: 600*150000 + 400*75000 + 200*600000 pico.
        let u = Usage { input: 1000, cached_input: 400, output: 200, reasoning: 0, cache_write: 0, cache_write_1h: 0 };
        assert_eq!(b.cost_pico("m", &u), Some(90_000_000 + 30_000_000 + 120_000_000));
        let r = Usage { input: 10, cached_input: 0, output: 10, reasoning: 4, cache_write: 0, cache_write_1h: 0 };
        assert_eq!(b.cost_pico("r", &r), Some(10 * 1_000_000 + 6 * 4_000_000 + 4 * 8_000_000));
    }

    #[test]
    fn prompt_cache_writes_have_their_own_price_or_the_inputs() {
        let b = book();
        // 1000 input: 100 plain, 300 read from the cache, 600 written to it; 10 output.
        let u = Usage { input: 1000, cached_input: 300, output: 10, reasoning: 0, cache_write: 600, cache_write_1h: 0 };
        let cost = 100 * 3_000_000 + 300 * 300_000 + 600 * 3_750_000 + 10 * 15_000_000;
        assert_eq!(b.cost_pico("c", &u), Some(cost));
        // A book without a cache-write price prices them as input, as before.
        assert_eq!(b.cost_pico("m", &u), Some(700 * 150_000 + 300 * 75_000 + 10 * 600_000));
        // More written than the input holds (a provider's odd report) is bounded by it.
        let odd = Usage { input: 10, cached_input: 4, output: 0, reasoning: 0, cache_write: 50, cache_write_1h: 0 };
        assert_eq!(b.cost_pico("c", &odd), Some(4 * 300_000 + 6 * 3_750_000));
        // The upper bound for an unknown model takes the dearest input rate, cache writes' too.
        assert_eq!(b.max_cost_pico(&Usage { input: 1, ..Usage::default() }), 6_000_000);
    }

    #[test]
    fn hour_long_cache_writes_have_their_own_price_or_the_writes() {
        let b = book();
        // 600 written: 200 for an hour (6 USD/Mtok), 400 for five minutes (3.75).
        let u =
            Usage { input: 1000, cached_input: 300, output: 10, reasoning: 0, cache_write: 600, cache_write_1h: 200 };
        let cost = 100 * 3_000_000 + 300 * 300_000 + 400 * 3_750_000 + 200 * 6_000_000 + 10 * 15_000_000;
        assert_eq!(b.cost_pico("h", &u), Some(cost));
        // Without an hour's price they cost what any cache write does.
        let flat = 100 * 3_000_000 + 300 * 300_000 + 600 * 3_750_000 + 10 * 15_000_000;
        assert_eq!(b.cost_pico("c", &u), Some(flat));
        // More written for an hour than written at all is bounded by the writes.
        let odd = Usage { cache_write_1h: 5_000, ..u };
        assert_eq!(b.cost_pico("h", &odd), Some(100 * 3_000_000 + 300 * 300_000 + 600 * 6_000_000 + 10 * 15_000_000));
    }

    #[test]
    fn unknown_model_is_not_free() {
        assert_eq!(book().cost_pico("nope", &Usage::default()), None);
    }

    #[test]
    fn formats_usd_exactly() {
        assert_eq!(format_usd(240_000_000), "0.00024");
        assert_eq!(format_usd(0), "0.0");
        assert_eq!(format_usd(1), "0.000000000001");
        assert_eq!(format_usd(3_000_000_000_000), "3.0");
        assert_eq!(format_usd(10_500_000_000_000), "10.5");
        // The digit-by-digit writer against the plain formatting it replaced, across the range.
        let plain = |pico: u128| {
            let (int, frac) = (pico / 1_000_000_000_000, pico % 1_000_000_000_000);
            if frac == 0 {
                format!("{int}.0")
            } else {
                format!("{int}.{}", format!("{frac:012}").trim_end_matches('0'))
            }
        };
        let mut p = 1u128;
        while p < u128::MAX / 7 {
            for q in [p, p + 1, p * 3 + 5, p.saturating_sub(1)] {
                assert_eq!(format_usd(q), plain(q), "{q}");
            }
            p = p * 7 + 3;
        }
        assert_eq!(format_usd(u128::MAX), plain(u128::MAX));
    }

    #[test]
    fn repository_price_book_compiles_and_every_model_has_source_and_date() {
        let text = include_str!("../../../../envoy/price-book.json");
        let cfg: PriceBookConfig = crate::config::from_str(text).unwrap();
        let book = PriceBook::compile(&cfg).unwrap();
        for (name, m) in &cfg.models {
            assert!(m.source.as_deref().is_some_and(|s| s.starts_with("https://")), "{name}: source");
            assert!(m.date.as_deref().is_some_and(|d| d.len() == 10), "{name}: date");
            let p = book.price(name).unwrap();
            // Embedding models generate nothing: only their input is priced.
            let output_priced = p.output > 0 || name.contains("embed");
            assert!(p.input > 0 && output_priced && p.cached_input <= p.input, "{name}: {p:?}");
        }
        for provider_model in [
            "gpt-4o-mini-2024-07-18",
            "claude-sonnet-4-5-20250929",
            "gemini-2.5-flash",
            "amazon.nova-pro-v1:0",
            "text-embedding-3-small",
            "gemini-embedding-001",
        ] {
            assert!(book.price(provider_model).is_some(), "{provider_model} missing");
        }
    }

    #[test]
    fn usd_strings_roundtrip() {
        for p in [0u128, 1, 240_000_000, 3_000_000_000_000, 123_456_789_012_345] {
            assert_eq!(parse_usd(&format_usd(p)), Some(p));
        }
        assert_eq!(parse_usd("0.0000000000001"), None);
        assert_eq!(parse_usd("abc"), None);
    }

    #[test]
    fn bad_price_is_a_config_error() {
        let cfg: Result<PriceBookConfig, _> =
            crate::config::from_str(r#"{"version":"x","models":{"m":{"input":"cheap","output":"1"}}}"#);
        let err = PriceBook::compile(&cfg.unwrap()).unwrap_err().at("audit-emit", "price_book");
        assert_eq!(err.field, "price_book.models.m.input");
        assert_eq!(
            err.to_string(),
            "audit-emit: invalid configuration at `price_book.models.m.input`: \"cheap\" is not a decimal USD amount"
        );
        // The cache-write prices are checked and named the same way.
        for field in ["cache_write", "cache_write_1h"] {
            let json = format!(r#"{{"version":"x","models":{{"m":{{"input":"1","output":"1","{field}":"-2"}}}}}}"#);
            let cfg: PriceBookConfig = crate::config::from_str(&json).unwrap();
            let err = PriceBook::compile(&cfg).unwrap_err().at("audit-emit", "price_book");
            assert_eq!(err.field, format!("price_book.models.m.{field}"));
        }
        let wrong_type = r#"{"version":"x","models":{"m":{"input":"1","output":"1","cache_write_1h":2}}}"#;
        assert!(crate::config::from_str::<PriceBookConfig>(wrong_type).unwrap_err().contains("cache_write_1h"));
    }
}
