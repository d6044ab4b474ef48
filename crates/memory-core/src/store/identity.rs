//! The identity item of each function: which code wrote the entries of its folder.
//!
//! A function's folder holds an item `func_code` naming the function, the hash of its code and
//! its version. A memory checks it once per function and generation (a generation ends with
//! [`EntryStore::clear`]): when it names other code, the folder's entries are deleted and the
//! item rewritten.
//!
//! With a signing key, the item ends with a line `signature <hex>`: an HMAC of the folder and
//! the identity, under a context of its own (so that no entry's signature can stand for it).
//! A memory with a key takes an item that is not signed with it for no item at all: it writes
//! its own and deletes nothing, so a stranger who plants an identity cannot make it delete a
//! function's entries. A memory without a key ignores the line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::EntryStore;
use crate::backend::{GetOptions, StoreBackendExt};
use crate::error::Error;
use crate::key::grammar;
use crate::reach::Reach;
use crate::signing::{SIGNATURE_LEN, SigningKey};

/// The longest identity item read. An identity is three lines, each field at most 1 KiB (see
/// `FuncId::identity`); a longer item is not one the core wrote, and is not trusted.
pub(crate) const MAX_IDENTITY_LEN: u64 = 4096;

/// What an identity signature covers first: the context, then the folder and the identity.
const SIGNED_CONTEXT: &[u8] = b"cachette identity 1\n";

/// The line that carries the signature of a signed identity item.
const SIGNATURE_LINE: &str = "\nsignature ";

/// The identity item of `identity` in `folder`: the identity, signed with `key` if given.
fn seal(folder: &str, identity: &str, key: Option<&SigningKey>) -> String {
    match key {
        None => identity.to_owned(),
        Some(key) => {
            let signature = key.sign(identity_parts(folder, identity));
            let hex: String = signature.iter().map(|b| format!("{b:02x}")).collect();
            format!("{identity}{SIGNATURE_LINE}{hex}")
        }
    }
}

fn identity_parts<'a>(folder: &'a str, identity: &'a str) -> [&'a [u8]; 4] {
    [
        SIGNED_CONTEXT,
        folder.as_bytes(),
        b"\n",
        identity.as_bytes(),
    ]
}

/// The identity an item of `folder` vouches for: its text without the signature line, when
/// it is UTF-8 and, with `key`, signed with it. `None` for an item this memory cannot trust.
fn open<'a>(folder: &str, stored: &'a [u8], key: Option<&SigningKey>) -> Option<&'a str> {
    let text = std::str::from_utf8(stored).ok()?;
    let (identity, hex) = match text.rsplit_once(SIGNATURE_LINE) {
        Some((identity, hex)) => (identity, Some(hex)),
        None => (text, None),
    };
    let Some(key) = key else {
        return Some(identity);
    };
    let signature = decode_hex(hex?.trim_end())?;
    key.verify(identity_parts(folder, identity), &signature)
        .then_some(identity)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 2 * SIGNATURE_LEN || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// The function name an identity item holds, if it is one.
pub(crate) fn name_of_identity(stored: &[u8]) -> Option<&str> {
    std::str::from_utf8(stored)
        .ok()?
        .lines()
        .next()?
        .strip_prefix("cachette function ")
}

/// What [`EntryStore::check_identity`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdentityCheck {
    /// The stored identity is this one (or was checked already in this generation).
    Same,
    /// There was none: it is written now.
    New,
    /// Another identity was stored: the folder's entries were deleted, and this one written.
    Changed {
        /// The identity that was stored.
        previous: String,
    },
    /// The stored item was not one this memory trusts (not signed with its key, or not
    /// text): this identity was written over it, and nothing deleted.
    Untrusted,
}

/// An identity item as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredIdentity {
    /// The identity it vouches for.
    Trusted(String),
    /// Not signed with this memory's key (with one), or not text.
    Untrusted,
}

/// Which identities this memory checked, in the current generation.
#[derive(Debug, Default)]
pub(super) struct Checks {
    /// Function folder → the identity checked.
    checked: Mutex<HashMap<String, String>>,
    /// Bumped by [`EntryStore::clear`], so that functions check their identity again.
    generation: AtomicU64,
}

impl Checks {
    pub(super) fn forget(&self) {
        self.checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.generation.fetch_add(1, Ordering::Relaxed);
    }
}

impl EntryStore {
    /// The current generation: functions that checked their identity in an older one check it
    /// again.
    pub(crate) fn generation(&self) -> u64 {
        self.identities.generation.load(Ordering::Relaxed)
    }

    /// Whether `identity` was checked for `folder` in this generation (by any function of this
    /// memory).
    pub(crate) fn identity_known(&self, folder: &str, identity: &str) -> bool {
        self.identities
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(folder)
            .is_some_and(|stored| stored == identity)
    }

    fn identity_checked(&self, folder: &str, identity: &str) {
        self.identities
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(folder.to_owned(), identity.to_owned());
    }

    /// The identity stored in `folder`, read and not changed; no access is recorded. At most
    /// [`MAX_IDENTITY_LEN`] bytes (and one) are read: an identity is a few lines. An item this memory
    /// cannot trust (see the [module documentation](self)) reads as `Some(Untrusted)`.
    pub(crate) async fn stored_identity(
        &self,
        reach: Reach,
        folder: &str,
    ) -> Result<Option<StoredIdentity>, Error> {
        let Some(stored) = self.stored_identity_item(reach, folder).await? else {
            return Ok(None);
        };
        if stored.len() as u64 > MAX_IDENTITY_LEN {
            // Read in part, it would read as another identity: not one to act on.
            return Ok(Some(StoredIdentity::Untrusted));
        }
        Ok(Some(match open(folder, &stored, self.signing()) {
            Some(identity) => StoredIdentity::Trusted(identity.to_owned()),
            None => StoredIdentity::Untrusted,
        }))
    }

    async fn stored_identity_item(
        &self,
        reach: Reach,
        folder: &str,
    ) -> Result<Option<Bytes>, Error> {
        let key = grammar::identity(folder)?;
        let found = self
            .run(reach, move |b| {
                Box::pin(async move {
                    b.get_opts(&key, GetOptions::range(0..MAX_IDENTITY_LEN + 1))
                        .await
                })
            })
            .await?;
        match found {
            Some(found) => Ok(Some(found.into_bytes().map_err(|e| {
                crate::error::BackendError::from_io(e, "cannot read an identity item")
            })?)),
            None => Ok(None),
        }
    }

    /// Compares the identity stored in `folder` with `identity`: on a difference, deletes the
    /// folder's entries and writes `identity`; when there is none, writes it.
    pub(crate) async fn check_identity(
        &self,
        reach: Reach,
        folder: &str,
        identity: &str,
    ) -> Result<IdentityCheck, Error> {
        if self.identity_known(folder, identity) {
            return Ok(IdentityCheck::Same);
        }
        let check = match self.stored_identity(reach, folder).await? {
            Some(StoredIdentity::Trusted(stored)) if stored == identity => IdentityCheck::Same,
            Some(StoredIdentity::Trusted(previous)) => {
                self.reset_function(reach, folder, identity).await?;
                IdentityCheck::Changed { previous }
            }
            Some(StoredIdentity::Untrusted) => {
                // Not ours to act on: vouch for our code, delete nothing.
                self.write_identity(reach, folder, identity).await?;
                IdentityCheck::Untrusted
            }
            None => {
                self.write_identity(reach, folder, identity).await?;
                IdentityCheck::New
            }
        };
        self.identity_checked(folder, identity);
        Ok(check)
    }

    /// Writes the identity of the function whose folder is `folder`, then deletes its entries
    /// and claims. A failure between the two leaves entries that every reader refuses anyway
    /// (each entry names the code that wrote it), never an identity that vouches for them.
    pub(crate) async fn reset_function(
        &self,
        reach: Reach,
        folder: &str,
        identity: &str,
    ) -> Result<(), Error> {
        self.write_identity(reach, folder, identity).await?;
        self.forget_memo_of(folder);
        let keys: Vec<_> = self
            .items(reach, &grammar::folder(folder)?)
            .await?
            .into_iter()
            .map(|item| item.key)
            .filter(|key| !grammar::is_identity(key))
            .collect();
        self.delete_keys(reach, keys).await
    }

    async fn write_identity(
        &self,
        reach: Reach,
        folder: &str,
        identity: &str,
    ) -> Result<(), Error> {
        let key = grammar::identity(folder)?;
        let value = Bytes::from(seal(folder, identity, self.signing()));
        self.run(reach, move |b| {
            Box::pin(async move { b.put(&key, value.into()).await })
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: &str = "cachette function m.f\ncode 0123\nversion ";

    #[test]
    fn signed_items_open_with_their_key_and_folder_only() {
        let key = SigningKey::new("a key of sixteen bytes or more").unwrap();
        let other = SigningKey::new("another key, also long enough").unwrap();
        let sealed = seal("m.f-00", IDENTITY, Some(&key));
        assert_eq!(
            open("m.f-00", sealed.as_bytes(), Some(&key)),
            Some(IDENTITY)
        );
        assert_eq!(open("m.f-00", sealed.as_bytes(), None), Some(IDENTITY));
        assert_eq!(open("m.f-00", sealed.as_bytes(), Some(&other)), None);
        assert_eq!(open("m.g-00", sealed.as_bytes(), Some(&key)), None, "moved");
        assert_eq!(
            open("m.f-00", IDENTITY.as_bytes(), Some(&key)),
            None,
            "unsigned"
        );
        let rotated = other
            .clone()
            .with_previous(["a key of sixteen bytes or more"])
            .unwrap();
        assert_eq!(
            open("m.f-00", sealed.as_bytes(), Some(&rotated)),
            Some(IDENTITY)
        );
        let forged = sealed.replace("code 0123", "code 9999");
        assert_eq!(open("m.f-00", forged.as_bytes(), Some(&key)), None);
        assert_eq!(open("m.f-00", b"\xff\xfe", None), None);
        assert_eq!(seal("m.f-00", IDENTITY, None), IDENTITY);
    }
}
