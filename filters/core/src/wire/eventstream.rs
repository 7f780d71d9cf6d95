//! AWS binary event-stream framing (`application/vnd.amazon.eventstream`), as Bedrock's
//! ConverseStream sends it: big-endian prelude (total length, headers length, CRC-32), headers,
//! payload, message CRC-32. Frames may be split across or packed within body chunks.

use crate::text::Text;

/// CRC-32 (IEEE, reflected 0xEDB88320), as zlib computes it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// String-valued headers (`:message-type`, `:event-type`, `:exception-type`, ...); headers
    /// of other types are skipped.
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Collects frames from a byte stream.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn parse_headers(mut h: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    while !h.is_empty() {
        let name_len = usize::from(*h.first()?);
        let name = std::str::from_utf8(h.get(1..1 + name_len)?).ok()?.own();
        let kind = *h.get(1 + name_len)?;
        h = h.get(2 + name_len..)?;
        let skip = match kind {
            0 | 1 => 0,
            2 => 1,
            3 => 2,
            4 => 4,
            5 | 8 => 8,
            9 => 16,
            6 | 7 => {
                let len = usize::from(u16::from_be_bytes(h.get(..2)?.try_into().ok()?));
                if kind == 7 {
                    out.push((name, std::str::from_utf8(h.get(2..2 + len)?).ok()?.own()));
                }
                2 + len
            }
            _ => return None,
        };
        h = h.get(skip..)?;
    }
    Some(out)
}

impl Decoder {
    /// Feeds bytes; returns the frames completed by them, or `Err` on a corrupt stream (a bad
    /// CRC or length), after which the stream cannot be trusted.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Frame>, String> {
        self.buf.extend_from_slice(chunk);
        let mut frames = Vec::new();
        while let Some(total) = be32(&self.buf) {
            let total = total as usize;
            if self.buf.len() < 12 {
                break;
            }
            let headers_len = be32(&self.buf[4..]).unwrap_or(0) as usize;
            if be32(&self.buf[8..]) != Some(crc32(&self.buf[..8])) {
                return Err("event stream: prelude CRC mismatch".into());
            }
            if total < 16 || headers_len > total - 16 {
                return Err("event stream: bad frame length".into());
            }
            if self.buf.len() < total {
                break;
            }
            if be32(&self.buf[total - 4..]) != Some(crc32(&self.buf[..total - 4])) {
                return Err("event stream: message CRC mismatch".into());
            }
            let headers = parse_headers(&self.buf[12..12 + headers_len])
                .ok_or_else(|| "event stream: malformed headers".own())?;
            let payload = self.buf[12 + headers_len..total - 4].to_vec();
            frames.push(Frame { headers, payload });
            self.buf.drain(..total);
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example of the provider reference (§5.6), decoded by botocore there.
    const MESSAGE_START: &str = "0000007600000052 96d5fade0b3a6576 656e742d74797065 07000c6d65737361 \
        67655374617274 0d3a636f6e74656e74 2d74797065070010 6170706c69636174 696f6e2f6a736f6e \
        0d3a6d6573736167 652d74797065 0700056576656e74 7b22726f6c65223a 22617373697374616e74 227d6fa8c599";

    fn bytes(hex: &str) -> Vec<u8> {
        let h: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
        (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn decodes_the_reference_frame_split_and_packed() {
        let one = bytes(MESSAGE_START);
        assert_eq!(one.len(), 118);
        let mut d = Decoder::default();
        let mut frames = Vec::new();
        let two: Vec<u8> = one.iter().chain(one.iter()).copied().collect();
        for piece in two.chunks(7) {
            frames.extend(d.push(piece).unwrap());
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].header(":event-type"), Some("messageStart"));
        assert_eq!(frames[0].header(":message-type"), Some("event"));
        assert_eq!(frames[0].payload, br#"{"role":"assistant"}"#);
    }

    #[test]
    fn a_corrupt_frame_is_an_error() {
        let mut one = bytes(MESSAGE_START);
        one[100] ^= 1;
        assert!(Decoder::default().push(&one).is_err());
    }
}
