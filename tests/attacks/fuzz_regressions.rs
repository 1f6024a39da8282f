//! Every input saved under `fuzz/regressions/<target>/` is replayed through the oracle its fuzz target
//! runs (the same source files, from `fuzz/src/`), so a crash the fuzzer once found stays fixed
//! without cargo-fuzz or a fuzzing build.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

#[path = "../../fuzz/src/api_json.rs"]
mod api_json;
#[path = "../../fuzz/src/auth_header.rs"]
mod auth_header;
#[path = "../../fuzz/src/jwt_verify.rs"]
mod jwt_verify;
#[path = "../../fuzz/src/path_rules.rs"]
mod path_rules;
#[path = "../../fuzz/src/watch_framing.rs"]
mod watch_framing;

/// Runs `check` on each saved input of `target`; fails naming every input that panics.
fn replay(target: &str, check: impl Fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut inputs: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    inputs.sort();
    let failed: Vec<String> = inputs
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} saved {target} inputs still fail: {failed:#?}",
        failed.len(),
        inputs.len()
    );
}

#[test]
fn saved_paths_keep_their_meaning_after_decoding() {
    let public = path_rules::public_paths();
    replay("path_rules", |data| path_rules::check(data, &public));
}

#[test]
fn saved_json_bodies_parse_like_serde_json_but_refuse_repeats() {
    replay("api_json", api_json::check);
}

#[test]
fn saved_credential_headers_are_read_unambiguously() {
    replay("auth_header", auth_header::check);
}

#[test]
fn saved_tokens_are_verified_without_panic_or_forgery() {
    let verifiers = jwt_verify::verifiers();
    replay("jwt_verify", |data| jwt_verify::check(data, &verifiers));
}

#[test]
fn saved_client_streams_get_the_same_verdict_at_any_read_size() {
    replay("watch_framing", watch_framing::check);
}
