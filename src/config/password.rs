//! `[password]`: argon2id cost and the hashing threads' concurrency and priority.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur};

/// How long a hashing thread keeps its argon2 block after its last hash, unless
/// `password.memory_idle_timeout` says otherwise.
pub const DEFAULT_MEMORY_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPassword {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// How many hashes may run at once (0: one per core).
    pub hash_concurrency: usize,
    /// CPU niceness of the hashing threads (0 to 19): higher yields more readily to proxying.
    pub hash_niceness: u32,
    /// A hashing thread that has not hashed for this long gives its argon2 block back (0: after
    /// every hash).
    pub memory_idle_timeout: Dur,
}

impl Default for RawPassword {
    fn default() -> Self {
        RawPassword {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            hash_concurrency: 0,
            hash_niceness: 19,
            memory_idle_timeout: Dur(DEFAULT_MEMORY_IDLE_TIMEOUT),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PasswordConfig {
    pub params: PasswordParams,
    pub hash_concurrency: usize,
    pub hash_niceness: u32,
    pub memory_idle_timeout: Duration,
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy)]
pub struct PasswordParams {
    /// Memory cost `m`, in KiB.
    pub memory_kib: u32,
    /// Time cost `t` (passes over memory).
    pub iterations: u32,
    /// Lanes `p`.
    pub parallelism: u32,
}

impl Default for PasswordParams {
    /// The OWASP minimum for Argon2id: m = 19 MiB, t = 2, p = 1.
    fn default() -> Self {
        PasswordParams {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

pub(super) fn validate(raw: &RawPassword) -> Result<PasswordConfig, ConfigError> {
    // OWASP's argon2id floor: m = 19 MiB, t = 2, p = 1.
    if raw.memory_kib < 19 * 1024 || raw.iterations < 2 || raw.parallelism < 1 {
        return Err(ConfigError::invalid(
            "password",
            format!(
                "(m={} KiB, t={}, p={}) is below OWASP's argon2id minimum",
                raw.memory_kib, raw.iterations, raw.parallelism
            ),
            "use memory_kib >= 19456, iterations >= 2, parallelism >= 1",
        ));
    }
    if raw.memory_kib > 4 * 1024 * 1024 || raw.iterations > 100 || raw.parallelism > 64 {
        return Err(ConfigError::invalid(
            "password",
            "asks for more than 4 GiB, 100 iterations or 64 lanes",
            "use values near the defaults (memory_kib = 19456, iterations = 2, parallelism = 1)",
        ));
    }
    if raw.hash_niceness > 19 {
        return Err(ConfigError::invalid(
            "password.hash_niceness",
            format!("is {}", raw.hash_niceness),
            "use 0 (normal priority) to 19 (lowest); the default is 19",
        ));
    }
    if raw.memory_idle_timeout.0 > Duration::from_secs(3600) {
        return Err(ConfigError::invalid(
            "password.memory_idle_timeout",
            format!("is {:?}", raw.memory_idle_timeout.0),
            "use a duration from \"0s\" (give the block back after every hash) to \"1h\"; the default is \"2s\"",
        ));
    }
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    Ok(PasswordConfig {
        params: PasswordParams {
            memory_kib: raw.memory_kib,
            iterations: raw.iterations,
            parallelism: raw.parallelism,
        },
        hash_concurrency: if raw.hash_concurrency == 0 {
            cores
        } else {
            raw.hash_concurrency
        },
        hash_niceness: raw.hash_niceness,
        memory_idle_timeout: raw.memory_idle_timeout.0,
    })
}
