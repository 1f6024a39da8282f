//! Raw and self-signed tokens: see `authgate_fuzz::jwt_verify` for the rules checked.
#![no_main]

use std::sync::LazyLock;

use authgate::auth::jwt::Verifier;
use authgate_fuzz::jwt_verify;
use libfuzzer_sys::fuzz_target;

static VERIFIERS: LazyLock<Vec<Verifier>> = LazyLock::new(jwt_verify::verifiers);

fuzz_target!(|data: &[u8]| jwt_verify::check(data, &VERIFIERS));
