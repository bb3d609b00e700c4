//! The wall clock, read in one place; the core receives time as data.
#![allow(
    clippy::disallowed_methods,
    reason = "this module is where the clock is read"
)]

use crate::state::Timestamp;

/// Now, in milliseconds since the Unix epoch.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp(ms)
}
