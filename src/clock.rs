//! Wall-clock time in whole seconds since the Unix epoch, as tokens and the store count it.
//!
//! The rule this module keeps: a clock before 1970 reads as 0 instead of failing, so no caller
//! has a time error to handle. It depends on nothing in the crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
