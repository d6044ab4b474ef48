//! The identity item of each function: which code wrote the entries of its folder.
//!
//! A function's folder holds an item `func_code` naming the function, the hash of its code and
//! its version. A memory checks it once per function and generation (a generation ends with
//! [`EntryStore::clear`]): when it names other code, the folder's entries are deleted and the
//! item rewritten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::EntryStore;
use crate::backend::{GetOptions, StoreBackendExt};
use crate::error::Error;
use crate::key::grammar;
use crate::reach::Reach;

/// The longest identity item read. An identity is three short lines; a longer item is not one
/// the core wrote, and reads as another identity.
pub(crate) const MAX_IDENTITY_LEN: u64 = 4096;

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
    /// [`MAX_IDENTITY_LEN`] bytes are read: an identity is a few lines.
    pub(crate) async fn stored_identity(
        &self,
        reach: Reach,
        folder: &str,
    ) -> Result<Option<Bytes>, Error> {
        let key = grammar::identity(folder)?;
        let found = self
            .run(reach, move |b| {
                Box::pin(async move {
                    b.get_opts(&key, GetOptions::range(0..MAX_IDENTITY_LEN))
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
            Some(stored) if stored == identity.as_bytes() => IdentityCheck::Same,
            Some(stored) => {
                self.reset_function(reach, folder, identity).await?;
                IdentityCheck::Changed {
                    previous: String::from_utf8_lossy(&stored).into_owned(),
                }
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
        let value = Bytes::from(identity.to_owned());
        self.run(reach, move |b| {
            Box::pin(async move { b.put(&key, value.into()).await })
        })
        .await?;
        Ok(())
    }
}
