//! The gateway's JSON API and what it decides, in one test binary (one link instead of nine):
//! - `accounts`: register, login, me, refresh, logout, password change, limits, rotation;
//! - `api_prefix`: `auth.api_prefix` and `auth.backend_paths`;
//! - `api_tokens`: API tokens for programs, through Bearer or X-API-Key;
//! - `identity`: the signed identity assertion, verified by the backend against the JWKS;
//! - `keys`: signing-key rotation by `kid`, asymmetric algorithms, the JWKS;
//! - `metrics`: the Prometheus series after a scripted session;
//! - `policy`: role, group and user rules end to end;
//! - `scopes`: scoped API tokens end to end;
//! - `seed_flow`: the seed's documented flow, run by its own Python client.

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod api_prefix;
mod api_tokens;
mod identity;
mod keys;
mod metrics;
mod policy;
mod scopes;
mod seed_flow;
