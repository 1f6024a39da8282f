//! Hostile clients against a live gateway, in one test binary (one link instead of five):
//! - `adversarial`: the adversarial suite (smuggling, slow clients, TLS, oversized heads);
//! - `bypasses`: the bypasses an outside attack found (issue 13);
//! - `attack_pass`: a second outside attack, on the fixes for the first;
//! - `path_property`: generated hostile paths never pass as public when they are not;
//! - `fuzz_regressions`: every saved fuzz input replayed through its target's oracle.
//!
//! The HTTP/2 abuse tests (`tests/h2_abuse.rs`) are a binary of their own: two of them bound the
//! RSS growth of the whole test process, which a neighbour test here would add to.

#[path = "../common/mod.rs"]
mod common;

mod adversarial;
mod attack_pass;
mod bypasses;
mod fuzz_regressions;
mod path_property;
