//! The 128-bit [`Digest`] type and its hex text form.

use std::fmt;
use std::str::FromStr;

/// A 128-bit digest, the cache key of a value.
///
/// Its text form (`Display`, `to_hex`, `FromStr`, serde) is 32 lowercase hex
/// characters, byte 0 first. `Debug` prints `Digest(<hex>)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 16]);

impl Digest {
    /// The digest as 32 lowercase hex characters.
    #[must_use]
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(32);
        for &b in &self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s
    }

    /// The raw 16 bytes of the digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// The error returned when parsing a [`Digest`] from text fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDigestError {
    kind: ParseErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParseErrorKind {
    /// The input was not 32 bytes long (holds the byte length).
    Length(usize),
    /// The input held a byte that is not an ASCII hex digit, at this byte offset.
    InvalidChar(usize),
}

impl fmt::Display for ParseDigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ParseErrorKind::Length(n) => {
                write!(f, "a digest is 32 hex characters, got {n} bytes")
            }
            ParseErrorKind::InvalidChar(i) => {
                write!(f, "invalid hex character in digest at byte {i}")
            }
        }
    }
}

impl std::error::Error for ParseDigestError {}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl FromStr for Digest {
    type Err = ParseDigestError;

    /// Parses 32 hex characters (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(ParseDigestError {
                kind: ParseErrorKind::Length(bytes.len()),
            });
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(ParseDigestError {
                kind: ParseErrorKind::InvalidChar(2 * i),
            })?;
            let lo = hex_value(pair[1]).ok_or(ParseDigestError {
                kind: ParseErrorKind::InvalidChar(2 * i + 1),
            })?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Digest(out))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HexVisitor;

        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = Digest;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a digest as 32 hex characters")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Digest, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(HexVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = Digest([
            0x00, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xff, 0x10, 0x20, 0x30, 0x40,
            0x50, 0x60,
        ]);
        let hex = d.to_hex();
        assert_eq!(hex, "000123456789abcdefff102030405060");
        assert_eq!(d.to_string(), hex);
        assert_eq!(format!("{d:?}"), format!("Digest({hex})"));
        assert_eq!(hex.parse::<Digest>().unwrap(), d);
        assert_eq!(hex.to_uppercase().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn parse_errors() {
        assert!("abc".parse::<Digest>().is_err());
        let bad = "g00123456789abcdefff102030405060";
        let err = bad.parse::<Digest>().unwrap_err();
        assert!(err.to_string().contains("byte 0"), "{err}");
        // 32 bytes but containing a multi-byte char must not panic.
        let uni = "é0123456789abcdefff102030405060";
        assert_eq!(uni.len(), 32);
        assert!(uni.parse::<Digest>().is_err());
    }
}
