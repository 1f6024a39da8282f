//! authgate as an OpenID Provider, in one test binary (one link instead of three):
//! - `provider`: every endpoint spoken to by hand over real TLS, and each refusal;
//! - `relying_parties`: real relying-party libraries (Authlib in Chromium, PyJWT as RAGFlow does);
//! - `attacks`: an attacker's pass (look-alike URIs, injections, forgeries, CSRF).

#[path = "../common/mod.rs"]
mod common;

mod attacks;
mod provider;
mod relying_parties;
