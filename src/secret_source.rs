//! Reads secret values named by `valueFrom`: environment variables of the drover process and
//! files on the controller. One of the two places allowed to read the environment.
//!
//! Values go straight into `Secret`s; nothing here logs or formats them.
#![allow(
    clippy::disallowed_methods,
    reason = "reading secrets from the environment is this module's job"
)]

use std::fs;
use std::path::Path;

use crate::secret::{Secret, SecretKey, Secrets};

/// Reads every requested secret; a missing one is recorded with the reason, not raised.
pub fn read<'a>(dir: &Path, keys: impl IntoIterator<Item = &'a SecretKey>) -> Secrets {
    keys.into_iter()
        .map(|key| {
            let value = match key {
                SecretKey::Env(name) => std::env::var(name).map_err(|e| match e {
                    std::env::VarError::NotPresent => "it is not set".to_owned(),
                    std::env::VarError::NotUnicode(_) => "it is not valid UTF-8".to_owned(),
                }),
                // A single trailing newline is what `echo secret > file` leaves; it is not
                // part of the secret.
                SecretKey::File(path) => fs::read_to_string(dir.join(path))
                    .map(|text| text.strip_suffix('\n').map(str::to_owned).unwrap_or(text))
                    .map_err(|e| crate::manifest_dir::describe_io(&e)),
            };
            (key.clone(), value.map(Secret::new))
        })
        .collect()
}
