//! The writer lock: one `plan -o`/`apply` at a time per state file.
//!
//! An advisory `flock` on `<state>.lock`, which the kernel releases when its holder dies,
//! so a crashed apply never leaves a lock a person must remove. The file also holds who
//! took it (pid, host, command, since) for the message the next writer shows; finding that
//! text under a free lock means the last holder died, and is reported as a takeover.
#![allow(
    clippy::disallowed_methods,
    reason = "waiting for the lock needs the clock"
)]

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::state::Timestamp;
use crate::store::Error;

/// Who holds (or last held) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub since: Timestamp,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} (`{}`) since {}",
            self.pid, self.host, self.command, self.since
        )
    }
}

/// A held writer lock; released when dropped.
#[derive(Debug)]
pub struct WriterLock {
    file: File,
    path: PathBuf,
    /// Set when the lock was taken over from a holder that died.
    pub taken_over_from: Option<Holder>,
}

/// The lock file beside a state file.
pub fn lock_path(state: &Path) -> PathBuf {
    beside(state, ".lock")
}

/// `<state><suffix>`: the files that live beside a state file (lock, backup, readers).
pub fn beside(state: &Path, suffix: &str) -> PathBuf {
    let mut name = state
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(suffix);
    state.with_file_name(name)
}

impl WriterLock {
    /// Takes the lock, waiting up to `timeout` (zero: fail at once if it is held).
    pub fn acquire(state: &Path, me: &Holder, timeout: Duration) -> Result<WriterLock, Error> {
        let path = lock_path(state);
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(dir)
            .map_err(|source| Error::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode_0600()
            .open(&path)
            .map_err(|source| Error::Lock {
                path: path.clone(),
                source,
            })?;
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    let holder = read_holder(&mut file);
                    return Err(Error::Locked {
                        path: state.to_owned(),
                        holder,
                        waited: timeout,
                    });
                }
                Err(TryLockError::Error(source)) => return Err(Error::Lock { path, source }),
            }
        }
        let taken_over_from = read_holder(&mut file);
        let text = serde_json::to_string(me).unwrap_or_default();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(|source| Error::Lock {
                path: path.clone(),
                source,
            })?;
        Ok(WriterLock {
            file,
            path,
            taken_over_from,
        })
    }

    /// Who holds the lock on `state` right now, if anyone.
    pub fn holder(state: &Path) -> Option<Holder> {
        let path = lock_path(state);
        let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(_) => read_holder(&mut file),
        }
    }

    /// Clears a lock file's holder text (`drover state unlock`): for filesystems where
    /// `flock` does not work, or a holder that hung.
    pub fn clear(state: &Path) -> Result<Option<Holder>, Error> {
        let path = lock_path(state);
        let Ok(mut file) = OpenOptions::new().read(true).write(true).open(&path) else {
            return Ok(None);
        };
        let holder = read_holder(&mut file);
        std::fs::remove_file(&path).map_err(|source| Error::Lock { path, source })?;
        Ok(holder)
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Empty the holder text first, so a clean exit is never mistaken for a crash.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
        let _ = &self.path;
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// `OpenOptions::mode(0o600)` behind a name that reads well in a builder chain.
trait ModeExt {
    fn mode_0600(&mut self) -> &mut Self;
}

impl ModeExt for OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}
