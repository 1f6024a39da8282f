//! The proxying core and the backends behind it, in one test binary (one link instead of six):
//! - `gateway`: the gateway core end to end (real sockets, a rustls client, a recording upstream);
//! - `upstream_pool`: the upstream connection pool against a raw-TCP backend;
//! - `differential`: the gateway in front of the real Python servers RAG backends run on;
//! - `rag_clients`: what the RAG backends' own clients read from the gateway;
//! - `ragflow_profile`: the `ragflow` profile with RAGFlow's real SDK;
//! - `services_smoke`: the throwaway PostgreSQL and Redis servers of `tests/common/services.rs`.

#[path = "../common/mod.rs"]
mod common;

mod differential;
mod gateway;
mod rag_clients;
mod ragflow_profile;
mod services_smoke;
mod upstream_pool;
