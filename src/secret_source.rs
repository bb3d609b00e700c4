//! Reads secret values named by `valueFrom`: environment variables of the drover process and
//! files on the controller. One of the two places allowed to read the environment.
//!
//! Values go straight into `Secret`s; nothing here logs or formats them. Secret files are
//! read like every controller file (`manifest_dir::read_file`): inside the allowed roots,
//! regular files only, and at most `MAX_SECRET_FILE_BYTES`.
#![allow(
    clippy::disallowed_methods,
    reason = "reading secrets from the environment is this module's job"
)]

use std::collections::BTreeMap;

use crate::manifest_dir::{self, Roots};
use crate::resolve::Unreadable;
use crate::secret::{Secret, SecretKey};

/// Largest secret file drover reads: a secret is one value (a password, a token, a key).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Reads every requested secret; a missing one is recorded with the reason, not raised.
pub fn read<'a>(
    roots: &Roots,
    keys: impl IntoIterator<Item = &'a SecretKey>,
) -> BTreeMap<SecretKey, Result<Secret, Unreadable>> {
    keys.into_iter()
        .map(|key| {
            let value = match key {
                SecretKey::Env(name) => std::env::var(name).map_err(|e| match e {
                    std::env::VarError::NotPresent => {
                        Unreadable::Absent("it is not set".to_owned())
                    }
                    std::env::VarError::NotUnicode(_) => {
                        Unreadable::Missing("it is not valid UTF-8".to_owned())
                    }
                }),
                SecretKey::File(path) => {
                    manifest_dir::read_file(roots, path, MAX_SECRET_FILE_BYTES).and_then(|bytes| {
                        String::from_utf8(bytes)
                            .map_err(|_| Unreadable::Missing("it is not valid UTF-8".to_owned()))
                    })
                    // A single trailing newline is what `echo secret > file` leaves; it is
                    // not part of the secret.
                    .map(|text| text.strip_suffix('\n').map(str::to_owned).unwrap_or(text))
                }
            };
            (key.clone(), value.map(Secret::new))
        })
        .collect()
}
