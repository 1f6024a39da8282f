//! A client's bytes under the connection watcher: see `authgate_fuzz::watch_framing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| authgate_fuzz::watch_framing::check(data));
