//! Any bytes as an `/api/auth/*` body: see `authgate_fuzz::api_json` for the rules checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| authgate_fuzz::api_json::check(data));
