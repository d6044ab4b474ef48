//! Signed entries: HMAC-SHA256 with a secret key shared by the programs that trust each other.
//!
//! A shared store (a bucket, a Redis server, a network folder) can be written by anyone who can
//! write to it, and an entry is data the reader turns into a value it then trusts. Checksums
//! catch damage, not forgery: whoever writes an entry can write valid checksums. With a
//! [`SigningKey`], a memory signs every entry it writes, and refuses, with a warning, every
//! entry that is not signed with that key; the call then computes its result again (and stores
//! it, signed).
//!
//! The signature covers every byte of the entry (its prefix, metadata and payload, arrays
//! included), so checking it reads the whole entry: with signing on, a memory-mapped load reads
//! the file once instead of leaving its pages untouched.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};

/// The length of a signature, in bytes.
pub(crate) const SIGNATURE_LEN: usize = 32;

/// The shortest secret accepted, in bytes.
pub(crate) const MIN_SECRET_LEN: usize = 16;

/// A secret key that signs and checks entries (HMAC-SHA256). Its `Debug` form hides it.
///
/// Keys are rotated with [`with_previous`](Self::with_previous): entries are signed with the
/// current key, and entries signed with a previous one are still accepted, until the previous
/// keys are dropped.
#[derive(Clone)]
pub struct SigningKey {
    mac: Hmac<Sha256>,
    secret: Secret,
    /// Keys whose signatures are still accepted.
    previous: Vec<(Hmac<Sha256>, Secret)>,
}

impl SigningKey {
    /// A key from a secret of at least 16 bytes (a long random string, say,
    /// kept out of the code: in a config file readable only by its users, or in the
    /// environment).
    pub fn new(secret: impl Into<String>) -> Result<SigningKey> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::Config(format!(
                "a signing key needs at least {MIN_SECRET_LEN} bytes, {} given",
                secret.len()
            )));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|e| Error::Config(format!("signing key: {e}")))?;
        Ok(SigningKey {
            mac,
            secret: Secret(secret),
            previous: Vec::new(),
        })
    }

    /// This key, accepting also the signatures of the keys of `previous` (secrets of at least
    /// 16 bytes), for a rotation: readers take both while writers move to the
    /// new key.
    pub fn with_previous<I, S>(mut self, previous: I) -> Result<SigningKey>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for secret in previous {
            let key = SigningKey::new(secret)?;
            self.previous.push((key.mac, key.secret));
        }
        Ok(self)
    }

    /// The secrets of the previous keys, to ship them with a configuration.
    pub(crate) fn previous_secrets(&self) -> Vec<Secret> {
        self.previous.iter().map(|(_, s)| s.clone()).collect()
    }

    /// The secret, to ship the key with a configuration.
    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The signature of the bytes `parts` yields, in order.
    pub(crate) fn sign<'a>(
        &self,
        parts: impl IntoIterator<Item = &'a [u8]>,
    ) -> [u8; SIGNATURE_LEN] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `signature` signs the bytes `parts` yields with this key or a previous one
    /// (compared in constant time).
    pub(crate) fn verify<'a>(
        &self,
        parts: impl IntoIterator<Item = &'a [u8]> + Clone,
        signature: &[u8],
    ) -> bool {
        std::iter::once(&self.mac)
            .chain(self.previous.iter().map(|(mac, _)| mac))
            .any(|key| {
                let mut mac = key.clone();
                for part in parts.clone() {
                    mac.update(part);
                }
                mac.verify_slice(signature).is_ok()
            })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<hidden>)")
    }
}

/// A secret in a configuration: serialized as its text, hidden from `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_and_verify_and_hide_their_secret() {
        let key = SigningKey::new("a long enough secret").unwrap();
        let sig = key.sign([b"abc".as_slice(), b"def"]);
        assert!(key.verify([b"abcdef".as_slice()], &sig));
        assert!(!key.verify([b"abcdeg".as_slice()], &sig));
        let other = SigningKey::new("another long secret").unwrap();
        assert!(!other.verify([b"abcdef".as_slice()], &sig));
        assert!(!format!("{key:?}").contains("secret"));
        assert!(!format!("{:?}", key.secret()).contains("secret"));
        assert!(SigningKey::new("short").is_err());
    }
}
