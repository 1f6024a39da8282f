//! Property: over generated hostile paths (percent-encodings, dot segments, `;` parameters, `//`,
//! backslashes, case), the gateway never lets a path through as public that a decoding,
//! normalising backend would route somewhere protected; for plain paths the two decisions agree.

use authgate::routes::{PublicPaths, RouteClass, check_path, classify};
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
    ]
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
    let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
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
        if check_path(&p).is_ok() && classify(&p, &public) == RouteClass::Public {
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
        let gateway_public = classify(&p, &public) == RouteClass::Public;
        prop_assert_eq!(gateway_public, backend_is_public(&p), "{}", p);
    }

    #[test]
    fn accepted_paths_hide_no_dot_segment_or_delimiter(p in path()) {
        if check_path(&p).is_ok() {
            let lower = p.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2e") && !lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%25"));
            prop_assert!(!p.contains('\\'));
            for seg in p.split('/') {
                let name = seg.split(';').next().unwrap_or(seg);
                prop_assert!(name != "." && name != "..", "{}", p);
            }
        }
    }
}
