//! Test harness: a recording upstream, an in-process gateway on 127.0.0.1:0, real TLS clients, a real
//! browser (`browser`: headless Chromium), a real OpenID Provider (`oidc`: panva's oidc-provider
//! under Node.js) and a real nginx (`nginx`: Debian's, with `auth_request`), one file per job. Test
//! files `use common::*` and get everything re-exported here; the job modules stay private so their
//! names (`h2`, `client`) never shadow a crate in a test file (`browser`, `logscan`, `nginx`, `oidc`
//! and `services` are used by their path).
//!
//! Each test binary (a top-level `tests/*.rs`, or a directory `tests/<name>/main.rs` whose former
//! files are modules) includes the harness and uses part of it, so unused items and re-exports
//! are allowed here (`dead_code` for the whole harness, `unused_imports` for the re-exports).
#![allow(dead_code)]

pub mod browser;
pub mod load;
pub mod logscan;
pub mod nginx;
pub mod oidc;
pub mod python;
pub mod services;

mod accounts;
mod client;
mod gateway;
mod h2;
mod idp;
mod memory;
mod tokens;
mod upstream;
mod web;

#[allow(unused_imports)]
pub use accounts::*;
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use gateway::*;
#[allow(unused_imports)]
pub use h2::*;
#[allow(unused_imports)]
pub use idp::*;
#[allow(unused_imports)]
pub use memory::*;
#[allow(unused_imports)]
pub use tokens::*;
#[allow(unused_imports)]
pub use upstream::*;
#[allow(unused_imports)]
pub use web::*;
