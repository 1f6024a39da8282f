//! authgate: a reverse-proxy authentication gateway.
//!
//! [`Gateway::build`] assembles a gateway from a validated [`config::Config`], and
//! [`Gateway::serve`] runs it on listeners the caller has bound: the binary binds the configured
//! addresses ([`serve`]), the tests bind 127.0.0.1:0. Both take the same path.
//!
//! The modules, top to bottom (a module uses only those below it):
//! - `gateway`: builds every part and runs them (the only module that sees them all);
//! - `server` (main listener, TLS, connection watcher, drain), `admin`, `cli`;
//! - `proxy`: the request pipeline (route, authenticate, authorize, identity step, forward, log);
//! - `api`: the `/api/auth/*` handlers;
//! - `accounts`: account rules and changes, for the API and the CLI;
//! - `idp`: authgate as an OpenID Provider (clients, ID and access tokens; its endpoints are `web`'s);
//! - `auth`: who is calling (the `Authenticator`), keys, passwords, login limits;
//! - `store`: SQL and Redis; `metrics`; `tls`; `config`; `telemetry`;
//! - leaves: `policy` (rules -> public / allow / deny), `routes`, `upgrade`, `username`, `error`, `clock`.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod admin;
pub mod api;
pub mod auth;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod gateway;
pub mod idp;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upgrade;
pub mod username;
pub mod web;

pub use gateway::{Gateway, Listeners, StartError, serve};
