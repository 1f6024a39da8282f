//! Arbitrary credential headers and upgrade query: see `authgate_fuzz::auth_header`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| authgate_fuzz::auth_header::check(data));
