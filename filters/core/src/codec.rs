//! A small binary encoding for what crosses from one context to another in filter state and is
//! read back by the gateway's own code only (the call's attempts, the answer's facts): fields in
//! a fixed order, strings as a length and bytes, numbers little-endian, an absent value as one
//! byte. Reading it is a few bounds checks per field, where reading the same values as JSON
//! took serde's parser in the Wasm code (about 6,500 instructions for one attempt).
//!
//! Every encoding starts with a tag byte that JSON text never starts with: bytes that are not
//! this encoding (an older module's JSON, say) read as nothing rather than as a wrong value.
//! (Reading JSON as well would keep each type's serde parser in every module: about 20 KB.)

/// The first byte of every value this module writes.
pub const TAG: u8 = 0x01;

/// Writes fields in order.
pub struct Writer(Vec<u8>);

impl Writer {
    pub fn new() -> Writer {
        Writer(vec![TAG])
    }

    pub fn finish(self) -> Vec<u8> {
        self.0
    }

    pub fn u8(&mut self, v: u8) -> &mut Writer {
        self.0.push(v);
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Writer {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn str(&mut self, v: &str) -> &mut Writer {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(v.as_bytes().get(..len as usize).unwrap_or_default());
        self
    }

    /// An optional string: 0, or 1 and the string.
    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Writer {
        match v {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }

    /// An optional number: 0, or 1 and the number.
    pub fn opt_u64(&mut self, v: Option<u64>) -> &mut Writer {
        match v {
            Some(n) => self.u8(1).u64(n),
            None => self.u8(0),
        }
    }
}

impl Default for Writer {
    fn default() -> Writer {
        Writer::new()
    }
}

/// Reads what a [`Writer`] wrote, field by field; `None` at the first field that is not there
/// (a value cut short, or not this encoding).
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader of `bytes`, if they start with [`TAG`].
    pub fn new(bytes: &'a [u8]) -> Option<Reader<'a>> {
        match bytes.split_first() {
            Some((&TAG, rest)) => Some(Reader(rest)),
            _ => None,
        }
    }

    pub fn at_end(&self) -> bool {
        self.0.is_empty()
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub fn u64(&mut self) -> Option<u64> {
        let (b, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*b))
    }

    pub fn str(&mut self) -> Option<&'a str> {
        let (len, rest) = self.0.split_first_chunk::<4>()?;
        let (s, rest) = rest.split_at_checked(usize::try_from(u32::from_le_bytes(*len)).ok()?)?;
        self.0 = rest;
        std::str::from_utf8(s).ok()
    }

    pub fn opt_str(&mut self) -> Option<Option<&'a str>> {
        match self.u8()? {
            0 => Some(None),
            1 => self.str().map(Some),
            _ => None,
        }
    }

    pub fn opt_u64(&mut self) -> Option<Option<u64>> {
        match self.u8()? {
            0 => Some(None),
            1 => self.u64().map(Some),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_in_order_and_a_cut_value_reads_as_none() {
        let mut w = Writer::new();
        w.str("anthropic").opt_str(None).opt_str(Some("eu-west-1")).opt_u64(Some(7)).opt_u64(None).u8(3).u64(u64::MAX);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes).unwrap();
        assert_eq!(r.str(), Some("anthropic"));
        assert_eq!(r.opt_str(), Some(None));
        assert_eq!(r.opt_str(), Some(Some("eu-west-1")));
        assert_eq!((r.opt_u64(), r.opt_u64(), r.u8(), r.u64()), (Some(Some(7)), Some(None), Some(3), Some(u64::MAX)));
        assert!(r.at_end() && r.u8().is_none());
        for cut in 1..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]).unwrap();
            let all =
                (|| Some((r.str()?, r.opt_str()?, r.opt_str()?, r.opt_u64()?, r.opt_u64()?, r.u8()?, r.u64()?)))();
            assert!(all.is_none(), "cut at {cut}");
        }
        // JSON (what an older module wrote) is not this encoding; nor are bytes that are not UTF-8.
        assert!(Reader::new(b"[{\"provider\":\"a\"}]").is_none() && Reader::new(b"").is_none());
        let mut w = Writer::new();
        w.u8(1);
        let mut bad = w.finish();
        bad.extend_from_slice(&[2, 0, 0, 0, 0xff, 0xfe]);
        let mut r = Reader::new(&bad).unwrap();
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.str(), None);
    }
}
