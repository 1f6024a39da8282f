//! Property: over generated hostile paths (percent-encodings of every reserved character in either
//! case, invalid and overlong UTF-8, dot segments, `;` parameters, `//`, backslashes, case, and
//! mixes of them within one segment), the gateway never lets a path through as public that a
//! decoding, normalising backend would route somewhere protected; for plain paths the two
//! decisions agree.

use authgate::routes::{ApiPaths, PublicPaths, RouteClass, check_path, classify};
use proptest::prelude::*;

const PUBLIC: [&str; 3] = ["/api/health", "/docs/*", "/openapi.json"];

fn public() -> PublicPaths {
    PublicPaths::parse(&PUBLIC.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("docs".to_string()),
        Just("api".to_string()),
        Just("health".to_string()),
        Just("admin".to_string()),
        Just("openapi.json".to_string()),
        Just(String::new()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("..;".to_string()),
        Just(";x=1".to_string()),
        Just("docs;v=2".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just("%2f".to_string()),
        Just("%5c".to_string()),
        Just("%252e".to_string()),
        Just("%00".to_string()),
        Just("%64ocs".to_string()),
        Just("DOCS".to_string()),
        Just("Docs".to_string()),
        Just("\\".to_string()),
        Just("a\\..".to_string()),
        "[a-z0-9._~-]{1,6}",
        Just("..%3b".to_string()),
        Just("..%3Bjsessionid=1".to_string()),
        Just("%c0%ae%c0%ae".to_string()),
        Just("%e0%80%ae".to_string()),
        mixed(),
    ]
}

/// Every reserved character of RFC 3986 (gen-delims and sub-delims), `%`, `\\` and `.`,
/// percent-encoded in upper or lower case.
fn encoded_reserved() -> impl Strategy<Value = String> {
    let reserved = b":/?#[]@!$&'()*+,;=%\\.";
    (0..reserved.len(), any::<bool>()).prop_map(move |(i, upper)| {
        let e = format!("%{:02x}", reserved[i]);
        if upper { e.to_uppercase() } else { e }
    })
}

/// Byte sequences that are not UTF-8: overlong forms of `.`, `/` and `\\`, stray continuation
/// bytes, truncated leads, surrogates, and any escaped byte above 0x7f.
fn bad_utf8() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("%c0%ae".to_string()),
        Just("%C0%AE".to_string()),
        Just("%c0%af".to_string()),
        Just("%c1%9c".to_string()),
        Just("%e0%80%ae".to_string()),
        Just("%f0%80%80%ae".to_string()),
        Just("%80".to_string()),
        Just("%c3".to_string()),
        Just("%ed%a0%80".to_string()),
        Just("%ff".to_string()),
        "%[89a-fA-F][0-9a-fA-F]",
    ]
}

/// One segment made of several hostile pieces.
fn mixed() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            encoded_reserved(),
            bad_utf8(),
            Just(".".to_string()),
            Just("..".to_string()),
            Just(";".to_string()),
            Just("%c3%a9".to_string()),
            "[a-z]{1,3}",
        ],
        1..4,
    )
    .prop_map(|pieces| pieces.concat())
}

/// UTF-8 decoded the way a lax decoder does: overlong forms are taken for the character they
/// spell (`%c0%ae` is `.`); anything else it cannot read becomes U+FFFD.
fn lax_utf8(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (len, init) = match b {
            0x00..=0x7f => (1, u32::from(b)),
            0xc0..=0xdf => (2, u32::from(b & 0x1f)),
            0xe0..=0xef => (3, u32::from(b & 0x0f)),
            0xf0..=0xf7 => (4, u32::from(b & 0x07)),
            _ => (0, 0),
        };
        let tail = bytes.get(i + 1..i + len.max(1)).unwrap_or(&[]);
        if len == 0 || tail.len() + 1 != len || tail.iter().any(|c| c & 0xc0 != 0x80) {
            out.push('\u{fffd}');
            i += 1;
            continue;
        }
        let cp = tail.iter().fold(init, |cp, c| (cp << 6) | u32::from(c & 0x3f));
        out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
        i += len;
    }
    out
}

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(segment(), 1..6).prop_map(|segs| format!("/{}", segs.join("/")))
}

/// A pessimistic backend: percent-decodes once, reads `\\` as `/`, strips `;params`, merges `//`,
/// resolves dot segments, and matches public paths ignoring case.
fn backend_is_public(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = ((bytes[i + 1] as char).to_digit(16), (bytes[i + 2] as char).to_digit(16))
        {
            decoded.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    let text = lax_utf8(&decoded).replace('\\', "/");
    let mut out: Vec<String> = Vec::new();
    for seg in text.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_ascii_lowercase()),
        }
    }
    let norm = format!("/{}", out.join("/"));
    norm == "/api/health" || norm == "/openapi.json" || norm == "/docs" || norm.starts_with("/docs/")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn a_public_decision_is_never_an_escalation(p in path()) {
        let public = public();
        if check_path(&p).is_ok() && classify(&p, &ApiPaths::default(), &public, "/_auth") == RouteClass::Public {
            prop_assert!(backend_is_public(&p), "gateway says public, backend routes {p} elsewhere");
        }
    }

    #[test]
    fn plain_paths_get_the_same_decision(segs in proptest::collection::vec("[a-z0-9._~-]{1,6}|docs|api|health|openapi\\.json", 1..5)) {
        let p = format!("/{}", segs.join("/"));
        let public = public();
        // Plain paths: no encodings, no empty or dot segments, no parameters, lower case.
        prop_assume!(segs.iter().all(|s| s != "." && s != ".."));
        prop_assert!(check_path(&p).is_ok());
        let gateway_public = classify(&p, &ApiPaths::default(), &public, "/_auth") == RouteClass::Public;
        prop_assert_eq!(gateway_public, backend_is_public(&p), "{}", p);
    }

    #[test]
    fn accepted_paths_hide_no_dot_segment_or_delimiter(p in path()) {
        if check_path(&p).is_ok() {
            let lower = p.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2e") && !lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%25") && !lower.contains("%3b"));
            // Decoded once, it is UTF-8: no overlong form, no stray byte.
            let bytes = p.as_bytes();
            let mut decoded = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    decoded.push(u8::from_str_radix(&p[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    decoded.push(bytes[i]);
                    i += 1;
                }
            }
            prop_assert!(std::str::from_utf8(&decoded).is_ok(), "{}", p);
            prop_assert!(!p.contains('\\'));
            for seg in p.split('/') {
                let name = seg.split(';').next().unwrap_or(seg);
                prop_assert!(name != "." && name != "..", "{}", p);
            }
        }
    }
}
