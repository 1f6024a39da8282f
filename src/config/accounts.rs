//! `[accounts]`: where accounts come from.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccounts {
    /// `open` (anyone may register, on the API and the page) or `closed` (accounts come from
    /// the CLI only).
    pub registration: String,
    /// Show the username and password form on the sign-in page (and accept it). Off leaves
    /// single sign-on only; `/api/auth/login` for programs is not affected.
    pub local_sign_in: bool,
}

impl Default for RawAccounts {
    fn default() -> Self {
        RawAccounts {
            registration: "open".into(),
            local_sign_in: true,
        }
    }
}

/// Whether anyone may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Open,
    Closed,
}

pub(super) fn validate(raw: &RawAccounts) -> Result<Registration, ConfigError> {
    match raw.registration.trim().to_ascii_lowercase().as_str() {
        "open" => Ok(Registration::Open),
        "closed" => Ok(Registration::Closed),
        other => Err(ConfigError::invalid(
            "accounts.registration",
            format!("{other:?} is not a registration mode"),
            "use \"open\" or \"closed\"",
        )),
    }
}
