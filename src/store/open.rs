//! `OpenStore`: the state file held open for one round, with group commit.
//!
//! Opening a redb file costs several `fdatasync`s (header, recovery flag), so a round opens
//! it once. Writes go to one committer thread, which runs every write that is waiting in one
//! transaction and commits it once (group commit): outcomes that finish close together share
//! one durable commit, and each caller learns its write is durable only after that commit.
//! Lazy writes (events nobody waits for) ride along with the next durable commit.
//!
//! redb locks its file exclusively, so another process cannot read while a round holds it.
//! A reader that finds the file held takes a shared lock on `<state>.readers` and retries;
//! the committer checks that file between commits (and every few milliseconds when idle)
//! and, when a reader is waiting, closes the file until the reader is done
//! (`docs/decisions/0004-store-access.md`). It does not plan or apply anything.
#![allow(
    clippy::disallowed_methods,
    reason = "the committer waits for readers with the clock"
)]

use std::fs::{File, TryLockError};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadTransaction, ReadableDatabase as _, WriteTransaction};
use tokio::sync::oneshot;

use crate::store::{Error, Result, Store, write_err};

/// How often an idle committer looks for waiting readers.
const KNOCK_INTERVAL: Duration = Duration::from_millis(20);
/// How long the committer waits for readers to finish before reopening anyway.
const READERS_GRACE: Duration = Duration::from_secs(30);

/// Called once the transaction a job wrote into has committed (or failed).
type Completion = Box<dyn FnOnce(std::result::Result<(), &Error>) + Send>;
/// A write: runs inside the shared transaction; on error it has already told its caller,
/// and the whole transaction is abandoned.
type Job = Box<dyn FnOnce(&WriteTransaction) -> Option<Completion> + Send>;

enum Request {
    Write { job: Job, durable: bool },
    Flush(oneshot::Sender<Result<()>>),
}

/// The state file, open for a round. Cheap to clone; the file closes when the last clone
/// is dropped (after flushing lazy writes) or on `close`.
#[derive(Debug, Clone)]
pub struct OpenStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The open database; `None` while it is closed for a reader in another process.
    /// The committer takes it for writing only to close and reopen it.
    db: Arc<RwLock<Option<Database>>>,
    /// Requests to the committer thread; dropping the sender ends the thread.
    tx: std::sync::Mutex<Option<mpsc::Sender<Request>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set by the committer when the file turned out damaged; told to every later writer.
    damage: Arc<std::sync::Mutex<Option<String>>>,
    path: PathBuf,
    /// The device and inode of the file opened: a path that names another file (or none)
    /// when the round ends means the round wrote into a file that is gone.
    identity: Option<(u64, u64)>,
}

/// The device and inode the path names now, if it names anything.
fn identity_of(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }
}

impl Store {
    /// Opens the state file for a round (creating it, 0600), upgrading its schema as needed.
    pub fn open(&self) -> Result<OpenStore> {
        let db = super::guarded(self.path(), || self.open_for_write())?;
        let identity = identity_of(self.path());
        let db = Arc::new(RwLock::new(Some(db)));
        let damage = Arc::new(std::sync::Mutex::new(None));
        let (tx, rx) = mpsc::channel();
        let committer = Committer {
            db: db.clone(),
            store: self.clone(),
            readers: readers_file(self),
            damage: damage.clone(),
            lazy: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("drover-store".to_owned())
            .spawn(move || committer.run(&rx))
            .map_err(|source| Error::Lock {
                path: self.path().to_owned(),
                source,
            })?;
        Ok(OpenStore {
            inner: Arc::new(Inner {
                db,
                tx: std::sync::Mutex::new(Some(tx)),
                thread: std::sync::Mutex::new(Some(thread)),
                damage,
                path: self.path().to_owned(),
                identity,
            }),
        })
    }
}

impl OpenStore {
    /// Runs `f` on a read transaction of the open file.
    pub fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        super::guarded(&self.inner.path, || self.read_unguarded(f))
    }

    fn read_unguarded<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        let guard = self
            .inner
            .db
            .read()
            .map_err(|_| poisoned(&self.inner.path))?;
        let Some(db) = guard.as_ref() else {
            // Closed for a moment for a reader in another process: read as it does.
            drop(guard);
            return Store::at(&self.inner.path).reading_or_fail(f);
        };
        let tx = db.begin_read().map_err(super::read)?;
        f(&tx)
    }

    /// Writes durably: resolves once the commit holding this write is on disk. Writes that
    /// wait at the same time share one commit. The write is queued when this is called, not
    /// when the future is first polled: writes queued one after another are committed in
    /// that order (the same commit or a later one), which `apply` relies on.
    pub fn write<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send + 'static + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let queued = self.submit(job(f, done), true);
        let store = self.clone();
        async move {
            queued?;
            result.await.map_err(|_| store.stopped())?
        }
    }

    /// Writes without waiting: committed with the next durable write (or at `flush`).
    /// For records a crash may lose without harm (an instance's start event).
    pub fn write_lazy(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let job: Job = Box::new(move |tx| match f(tx) {
            Ok(()) => Some(Box::new(|_| {})),
            Err(error) => {
                tracing::warn!(%error, "a lazy state write failed");
                None
            }
        });
        self.submit(job, false)
    }

    /// Flushes and closes the file; other clones can no longer write. Fails with
    /// `Error::Replaced` when the path no longer names the file this round wrote into
    /// (deleted or replaced meanwhile): nothing it recorded can be read back.
    pub fn close(self) -> Result<()> {
        let (done, result) = oneshot::channel();
        self.send(Request::Flush(done))?;
        let flushed = result
            .blocking_recv()
            .map_err(|_| stopped(&self.inner.path))?;
        if let Ok(mut tx) = self.inner.tx.lock() {
            tx.take();
        }
        if let Some(thread) = self.inner.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
        flushed?;
        if self.inner.identity.is_some() && identity_of(&self.inner.path) != self.inner.identity {
            return Err(Error::Replaced {
                path: self.inner.path.clone(),
            });
        }
        Ok(())
    }

    /// Why a write got no answer: the file was found damaged, or the writer stopped.
    fn stopped(&self) -> Error {
        match self.inner.damage.lock().ok().and_then(|d| d.clone()) {
            Some(detail) => Error::Damaged {
                path: self.inner.path.clone(),
                detail,
            },
            None => stopped(&self.inner.path),
        }
    }

    fn submit(&self, job: Job, durable: bool) -> Result<()> {
        self.send(Request::Write { job, durable })
    }

    fn send(&self, request: Request) -> Result<()> {
        let sender = self
            .inner
            .tx
            .lock()
            .map_err(|_| poisoned(&self.inner.path))?
            .clone()
            .ok_or_else(|| stopped(&self.inner.path))?;
        sender.send(request).map_err(|_| stopped(&self.inner.path))
    }
}

/// Wraps a typed write into a job that reports its value after the commit.
fn job<T: Send + 'static>(
    f: impl FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    done: oneshot::Sender<Result<T>>,
) -> Job {
    Box::new(move |tx| match f(tx) {
        Ok(value) => Some(Box::new(
            move |committed: std::result::Result<(), &Error>| {
                let _ = done.send(match committed {
                    Ok(()) => Ok(value),
                    Err(error) => Err(commit_failed(error)),
                });
            },
        )),
        Err(error) => {
            let _ = done.send(Err(error));
            None
        }
    })
}

/// The error each writer of a failed commit gets: the reason, with its causes, and its I/O
/// kind so that help and exit decisions look at the type, not the text.
fn commit_failed(error: &Error) -> Error {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::Commit {
        message,
        io: error.io_kind(),
    }
}

fn stopped(path: &std::path::Path) -> Error {
    Error::Commit {
        message: format!("the writer of {} stopped", path.display()),
        io: None,
    }
}

fn poisoned(path: &std::path::Path) -> Error {
    Error::Commit {
        message: format!("the writer of {} panicked", path.display()),
        io: None,
    }
}

/// `<state>.backup`: a copy of the last good state, taken after every successful round.
pub fn backup_path(state: &std::path::Path) -> PathBuf {
    super::lock::beside(state, ".backup")
}

impl Store {
    /// Copies the state file to `<state>.backup` (0600, replaced atomically): the last good
    /// state, taken after a round that ended without a store error.
    pub fn save_backup(&self) -> Result<()> {
        let backup = backup_path(self.path());
        let temp = backup.with_extension("backup.tmp");
        let copy = || -> std::io::Result<()> {
            let mut from = std::fs::File::open(self.path())?;
            let mut to = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode_0600()
                .open(&temp)?;
            std::io::copy(&mut from, &mut to)?;
            to.sync_all()?;
            std::fs::rename(&temp, &backup)
        };
        copy().map_err(|source| {
            let _ = std::fs::remove_file(&temp);
            Error::Backup {
                path: backup,
                source,
            }
        })
    }
}

/// `<state>.readers`: readers in other processes hold it shared while they wait for the file.
pub(crate) fn readers_path(state: &std::path::Path) -> PathBuf {
    super::lock::beside(state, ".readers")
}

fn readers_file(store: &Store) -> Option<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode_0600()
        .open(readers_path(store.path()))
        .ok()
}

trait ModeExt {
    fn mode_0600(&mut self) -> &mut Self;
}

impl ModeExt for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// The thread that owns commits.
struct Committer {
    db: Arc<RwLock<Option<Database>>>,
    store: Store,
    readers: Option<File>,
    damage: Arc<std::sync::Mutex<Option<String>>>,
    /// Lazy writes waiting for the next commit.
    lazy: Vec<Job>,
}

impl Committer {
    fn run(mut self, rx: &mpsc::Receiver<Request>) {
        loop {
            let first = match rx.recv_timeout(KNOCK_INTERVAL) {
                Ok(request) => request,
                Err(RecvTimeoutError::Timeout) => {
                    self.let_readers_in();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let mut jobs = std::mem::take(&mut self.lazy);
            let mut flushes = Vec::new();
            let mut durable = false;
            for request in batch {
                match request {
                    Request::Write { job, durable: d } => {
                        durable |= d;
                        jobs.push(job);
                    }
                    Request::Flush(done) => {
                        durable = true;
                        flushes.push(done);
                    }
                }
            }
            if durable {
                let result = self.commit(jobs);
                for done in flushes {
                    let _ = done.send(match &result {
                        Ok(()) => Ok(()),
                        Err(error) => Err(commit_failed(error)),
                    });
                }
            } else {
                self.lazy = jobs;
            }
            self.let_readers_in();
        }
        let lazy = std::mem::take(&mut self.lazy);
        if !lazy.is_empty() {
            let _ = self.commit(lazy);
        }
    }

    /// Runs `jobs` in one transaction and commits it; every job learns the result. A panic
    /// inside redb (a damaged file) fails the batch instead of the thread.
    fn commit(&self, jobs: Vec<Job>) -> Result<()> {
        let result = super::guarded(self.store.path(), || self.commit_unguarded(jobs));
        if result.as_ref().err().and_then(Error::io_kind).is_some() {
            // redb latches an I/O failure until the file is reopened; later commits (once
            // space is freed) must not inherit it.
            self.reopen();
        }
        if let Err(Error::Damaged { detail, .. }) = &result
            && let Ok(mut damage) = self.damage.lock()
        {
            *damage = Some(detail.clone());
        }
        result
    }

    fn commit_unguarded(&self, jobs: Vec<Job>) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let Ok(guard) = self.db.read() else {
            return Err(poisoned(self.store.path()));
        };
        let Some(db) = guard.as_ref() else {
            return Err(stopped(self.store.path()));
        };
        let tx = match db.begin_write() {
            Ok(tx) => tx,
            Err(e) => {
                let error = write_err(e);
                // Each job learns the failure through its completion; the jobs never ran.
                return Err(error);
            }
        };
        let mut completions = Vec::with_capacity(jobs.len());
        let mut failed = false;
        for job in jobs {
            match job(&tx) {
                Some(done) => completions.push(done),
                None => failed = true,
            }
        }
        let result = if failed {
            drop(tx);
            Err(Error::Commit {
                message: "another write in the same commit failed; nothing of it was kept"
                    .to_owned(),
                io: None,
            })
        } else {
            tx.commit().map_err(write_err)
        };
        for done in completions {
            done(result.as_ref().copied());
        }
        result
    }

    /// Closes and reopens the database (after an I/O failure).
    fn reopen(&self) {
        let Ok(mut slot) = self.db.write() else {
            return;
        };
        drop(slot.take());
        match self.store.open_for_write() {
            Ok(db) => *slot = Some(db),
            Err(error) => tracing::error!(%error, "cannot reopen the state file"),
        }
    }

    /// Closes the file while readers in other processes are waiting for it, then reopens it.
    fn let_readers_in(&mut self) {
        let Some(readers) = &self.readers else {
            return;
        };
        match readers.try_lock() {
            Ok(()) => {
                let _ = readers.unlock();
                return;
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(_)) => return,
        }
        let lazy = std::mem::take(&mut self.lazy);
        if self.commit(lazy).is_err() {
            return;
        }
        let Ok(mut slot) = self.db.write() else {
            return;
        };
        drop(slot.take());
        let deadline = Instant::now() + READERS_GRACE;
        while Instant::now() < deadline {
            match readers.try_lock() {
                Ok(()) => {
                    let _ = readers.unlock();
                    break;
                }
                Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(2)),
                Err(TryLockError::Error(_)) => break,
            }
        }
        match self.store.open_for_write() {
            Ok(db) => *slot = Some(db),
            Err(error) => tracing::error!(%error, "cannot reopen the state file after a reader"),
        }
    }
}
