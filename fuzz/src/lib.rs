//! The fuzz targets' oracles, one module per target in `fuzz_targets/`.
//!
//! The rule this crate keeps: each module's `check` panics exactly when the gateway breaks a rule
//! (or panics itself), and uses nothing but the main crate's own dependencies, so
//! `tests/attacks/fuzz_regressions.rs` includes the same files and replays `fuzz/regressions/<target>/`
//! under plain `cargo test`, without cargo-fuzz.

pub mod api_json;
pub mod auth_header;
pub mod jwt_verify;
pub mod path_rules;
pub mod watch_framing;
