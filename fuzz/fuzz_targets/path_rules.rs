//! Any byte string as a request path: the checker must never panic, and a path it accepts must
//! mean the same thing to a decoding, normalising backend (no dot segments or encoded delimiters
//! appear after one round of percent-decoding).
#![no_main]

use authgate::routes::check_path;
use libfuzzer_sys::fuzz_target;

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn decode_once(p: &str) -> Vec<u8> {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    if check_path(path).is_ok() {
        let decoded = decode_once(path);
        assert!(!decoded.contains(&b'\\') && !decoded.contains(&0), "{path}");
        for seg in decoded.split(|b| *b == b'/') {
            let name = seg.split(|b| *b == b';').next().unwrap_or(seg);
            assert!(name != b"." && name != b"..", "{path}");
        }
    }
});
