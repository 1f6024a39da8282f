//! The browser half and sign-in from elsewhere, in one test binary (one link instead of five):
//! - `web`: the browser pages over HTTP, and the attacks on them;
//! - `browser`: the same flows in headless Chromium (one chromedriver per test, as before);
//! - `oidc_provider`: the OpenID Provider the single sign-on tests use, tested on its own;
//! - `sso`: single sign-on against a real OpenID Provider;
//! - `forward_auth`: `GET /_auth/verify`, directly and behind Debian's nginx.

#[path = "../common/mod.rs"]
mod common;

mod browser;
mod forward_auth;
mod oidc_provider;
mod sso;
mod web;
