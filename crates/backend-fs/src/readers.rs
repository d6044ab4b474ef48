//! Read transactions of the index kept between reads.
//!
//! Beginning and ending an LMDB read transaction costs more than the lookup it serves (an
//! allocation, a free, and, in every new transaction, a lookup of the named database's record).
//! A read transaction sees the snapshot of the last commit when it began; while no commit has
//! been made since, by any process, it sees the newest one, just as a new transaction would. So
//! each stripe of threads keeps the read transaction of its last read, and the next read of the
//! stripe uses it when it still reads the newest commit, compared with the meta page, which the
//! environment maps, with no system call and no lock.
//!
//! A kept transaction holds its reader slot and its snapshot: the pages that later commits free
//! cannot be reused while it lives. So kept transactions never outlive their last use by long: a
//! thread of the process, the sweeper, drops every kept transaction of an environment about
//! [`LINGER`] after a read kept one, and the next read begins a new one. No transaction is kept
//! when the system gives no thread for the sweeper.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use cachette_core::plugin::Striped;
use heed::{Env, RoTxn, WithoutTls};

/// How long a kept transaction may wait for the sweeper: the longest a reader pins the snapshot
/// of its last read after it (twice this, at most).
pub(crate) const LINGER: Duration = Duration::from_millis(20);

/// A read transaction kept for the next read of its stripe.
struct Kept {
    txn: RoTxn<'static, WithoutTls>,
    /// Whether the registry's database was known when it began: a database opened after a
    /// read transaction began cannot be used in it.
    registry: bool,
}

/// The kept read transactions of one environment, one per stripe of threads.
#[derive(Default)]
pub(crate) struct Readers {
    kept: Striped<Mutex<Option<Kept>>>,
    /// The sweeper is due to drop the kept transactions.
    armed: AtomicBool,
    /// Read transactions begun (to test that they are kept).
    #[cfg(test)]
    pub(crate) begun: std::sync::atomic::AtomicUsize,
    /// The sweeper leaves these alone (for tests that need a transaction kept).
    #[cfg(test)]
    pub(crate) unswept: AtomicBool,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").finish_non_exhaustive()
    }
}

impl Readers {
    /// Runs `read` in a read transaction of the newest commit of `env`: the one kept for this
    /// thread's stripe if it still is one, begun with the registry known when `registry`, or a
    /// new one. `read` runs while the stripe's transaction is taken: a thread of the stripe
    /// that reads meanwhile begins one of its own. The caller holds the environment's count of
    /// transactions under way (see [`crate::room::Gate`]) until this returns.
    pub(crate) fn read<T>(
        self: &Arc<Self>,
        env: &Env<WithoutTls>,
        registry: bool,
        read: impl FnOnce(&RoTxn<'_, WithoutTls>) -> heed::Result<T>,
    ) -> heed::Result<T> {
        let Ok(mut slot) = self.kept.mine().try_lock() else {
            return read(&self.begin(env)?);
        };
        let newest = env.info().last_txn_id;
        let kept = match slot.take() {
            Some(kept) if kept.txn.id() == newest && (kept.registry || !registry) => kept,
            old => {
                // The old one ends before the new one begins: a stripe holds one reader slot.
                drop(old);
                Kept {
                    txn: self.begin(env)?,
                    registry,
                }
            }
        };
        let out = read(&kept.txn);
        if sweeper().is_some() {
            *slot = Some(kept);
            drop(slot);
            self.arm();
        }
        out
    }

    /// How many transactions are kept.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.kept
            .iter()
            .filter(|part| part.lock().unwrap().is_some())
            .count()
    }

    /// Drops every kept transaction.
    pub(crate) fn drop_kept(&self) {
        for part in self.kept.iter() {
            let kept = part.lock().unwrap_or_else(PoisonError::into_inner).take();
            drop(kept);
        }
    }

    /// A new read transaction of the newest commit, which may be kept.
    fn begin(&self, env: &Env<WithoutTls>) -> heed::Result<RoTxn<'static, WithoutTls>> {
        #[cfg(test)]
        self.begun.fetch_add(1, Ordering::Relaxed);
        env.clone().static_read_txn()
    }

    /// Has the sweeper drop the kept transactions, unless it is due to.
    fn arm(self: &Arc<Self>) {
        if self.armed.load(Ordering::Relaxed) || self.armed.swap(true, Ordering::AcqRel) {
            return;
        }
        let sent = sweeper().is_some_and(|sweeper| {
            sweeper
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(Arc::downgrade(self))
                .is_ok()
        });
        if !sent {
            self.armed.store(false, Ordering::Release);
            self.drop_kept();
        }
    }
}

/// The sweeper's inbox: the readers whose kept transactions are to be dropped. `None` when the
/// system gave no thread for it.
fn sweeper() -> Option<&'static Mutex<Sender<Weak<Readers>>>> {
    static SWEEPER: OnceLock<Option<Mutex<Sender<Weak<Readers>>>>> = OnceLock::new();
    SWEEPER
        .get_or_init(|| {
            let (send, receive) = mpsc::channel();
            std::thread::Builder::new()
                .name("cachette-index-readers".into())
                .spawn(move || sweep(&receive))
                .ok()
                .map(|_| Mutex::new(send))
        })
        .as_ref()
}

/// The sweeper: waits for readers, lets [`LINGER`] pass, and drops the transactions of every
/// reader that arrived meanwhile.
fn sweep(receive: &Receiver<Weak<Readers>>) {
    while let Ok(first) = receive.recv() {
        std::thread::sleep(LINGER);
        for readers in std::iter::once(first).chain(receive.try_iter()) {
            if let Some(readers) = readers.upgrade() {
                #[cfg(test)]
                if readers.unswept.load(Ordering::Relaxed) {
                    readers.armed.store(false, Ordering::Release);
                    continue;
                }
                // Disarmed first: a read that keeps a transaction after this arms again.
                readers.armed.store(false, Ordering::Release);
                readers.drop_kept();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use heed::types::Bytes as Raw;
    use heed::{Database, EnvOpenOptions};

    use super::*;

    fn env(dir: &std::path::Path) -> Env<WithoutTls> {
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(1 << 20).max_dbs(2);
        // SAFETY: a fresh folder of this test's own, opened once.
        #[allow(unsafe_code)]
        unsafe {
            options.open(dir).unwrap()
        }
    }

    type Db = Database<'static, Raw, Raw>;

    fn database(env: &Env<WithoutTls>, name: &'static str) -> Db {
        let txn = env.write_txn().unwrap();
        let made = env
            .create_databases_and_commit(txn, |opener, txn| -> heed::Result<_> {
                Ok(heed::CommitOrAbort::<_, ()>::Commit(
                    opener.create_database::<Raw, Raw>(txn, Some(name))?,
                ))
            })
            .unwrap();
        made.unwrap_commit()
    }

    fn put(env: &Env<WithoutTls>, db: Db, value: &[u8]) {
        let mut txn = env.write_txn().unwrap();
        db.put(&mut txn, b"k", value).unwrap();
        txn.commit().unwrap();
    }

    fn get(readers: &Arc<Readers>, env: &Env<WithoutTls>, db: Db) -> Vec<u8> {
        readers
            .read(env, false, |txn| Ok(db.get(txn, b"k")?.unwrap().to_vec()))
            .unwrap()
    }

    /// An environment in a folder of its own (kept while the test runs), whose database holds
    /// `k` = `one`.
    fn holding_one() -> (tempfile::TempDir, Env<WithoutTls>, Db) {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let db = database(&env, "items");
        put(&env, db, b"one");
        (dir, env, db)
    }

    /// Waits (at most 30 s) until the sweeper has ended every kept transaction.
    fn wait_until_none_kept(readers: &Readers) {
        let start = Instant::now();
        while readers.kept() > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "a read transaction is still kept"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn begun(readers: &Readers) -> usize {
        readers.begun.load(Ordering::Relaxed)
    }

    fn unswept() -> Arc<Readers> {
        let readers = Arc::new(Readers::default());
        readers.unswept.store(true, Ordering::Relaxed);
        readers
    }

    #[test]
    fn a_run_of_reads_begins_one_transaction() {
        let (_dir, env, db) = holding_one();
        let readers = unswept();
        for _ in 0..10 {
            assert_eq!(get(&readers, &env, db), b"one");
        }
        assert_eq!(begun(&readers), 1);
        assert_eq!(readers.kept(), 1);
    }

    #[test]
    fn a_kept_transaction_never_reads_an_older_commit() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let db = database(&env, "items");
        let readers = unswept();
        for round in 0..20u8 {
            put(&env, db, &[round]);
            assert_eq!(get(&readers, &env, db), [round]);
            assert_eq!(get(&readers, &env, db), [round]);
        }
        // One per commit: the second read of each round kept the first one's.
        assert_eq!(begun(&readers), 20);
    }

    #[test]
    fn a_transaction_begun_without_the_registry_is_not_kept_for_it() {
        let (_dir, env, db) = holding_one();
        let readers = unswept();
        let read = |registry| {
            readers
                .read(&env, registry, |txn| {
                    Ok(db.get(txn, b"k")?.map(<[u8]>::to_vec))
                })
                .unwrap()
        };
        assert_eq!(read(false).as_deref(), Some(&b"one"[..]));
        // The registry's database may have been opened since that transaction began (by a read
        // transaction, with no commit a kept one would notice): a new one is begun.
        assert_eq!(read(true).as_deref(), Some(&b"one"[..]));
        assert_eq!(begun(&readers), 2);
        assert_eq!(read(true).as_deref(), Some(&b"one"[..]));
        assert_eq!(read(false).as_deref(), Some(&b"one"[..]));
        assert_eq!(begun(&readers), 2);
    }

    #[test]
    fn the_sweeper_ends_kept_transactions() {
        let (_dir, env, db) = holding_one();
        let readers = Arc::new(Readers::default());
        assert_eq!(get(&readers, &env, db), b"one");
        wait_until_none_kept(&readers);
        // The next read begins a new one, which is dropped in turn.
        assert_eq!(get(&readers, &env, db), b"one");
        assert_eq!(begun(&readers), 2);
        wait_until_none_kept(&readers);
    }

    #[test]
    fn threads_of_one_stripe_read_side_by_side() {
        let (_dir, env, db) = holding_one();
        let readers = unswept();
        // A read inside a read of the same thread finds the stripe's transaction taken, and
        // begins its own.
        let inner = readers
            .read(&env, false, |_| Ok(get(&readers, &env, db)))
            .unwrap();
        assert_eq!(inner, b"one");
        assert_eq!(begun(&readers), 2);
    }
}
