//! Oracle for the `path_rules` target: any byte string as a request path.
//!
//! `check_path` and `classify` must never panic, and a path `check_path` accepts must mean the same
//! thing to a backend that percent-decodes it once: the decoded bytes are valid UTF-8 (no overlong
//! or stray escaped bytes), hold no `\` and no control byte, no `.` or `..` segment even once
//! `;params` are stripped, and no `/`, `\`, `%` or `;` that came from an escape. A path the gateway
//! treats as public must also be public to a backend that normalises it.

use authgate::routes::{ApiPaths, PublicPaths, RouteClass, check_path, classify};

/// The public paths the classification oracle runs with.
pub const PUBLIC: [&str; 3] = ["/api/health", "/docs/*", "/openapi.json"];

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One round of percent-decoding: each byte, and whether it came from an escape.
fn decode_once(path: &str) -> Vec<(u8, bool)> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c)))
        {
            out.push(((h << 4) | l, true));
            i += 3;
            continue;
        }
        out.push((b[i], false));
        i += 1;
    }
    out
}

/// The path as a pessimistic backend routes it: decoded once, `\` read as `/`, `;params` and empty
/// segments dropped, dot segments resolved, ASCII case folded.
fn backend_view(decoded: &[u8]) -> String {
    let text = String::from_utf8_lossy(decoded).replace('\\', "/");
    let mut out: Vec<String> = Vec::new();
    for seg in text.split('/') {
        match seg.split(';').next().unwrap_or("") {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_ascii_lowercase()),
        }
    }
    format!("/{}", out.join("/"))
}

fn backend_is_public(view: &str) -> bool {
    view == "/api/health" || view == "/openapi.json" || view == "/docs" || view.starts_with("/docs/")
}

pub fn public_paths() -> PublicPaths {
    PublicPaths::parse(&PUBLIC.map(String::from)).expect("the oracle's public paths are valid")
}

/// Panics if the gateway's path decision breaks one of the rules above.
pub fn check(data: &[u8], public: &PublicPaths) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if check_path(path).is_err() {
        return;
    }
    let class = classify(path, &ApiPaths::default(), public, "/_auth");
    let decoded = decode_once(path);
    let bytes: Vec<u8> = decoded.iter().map(|(b, _)| *b).collect();
    assert!(
        std::str::from_utf8(&bytes).is_ok(),
        "accepted {path:?}: not valid UTF-8 once decoded"
    );
    for &(b, escaped) in &decoded {
        assert!(b != b'\\', "accepted {path:?}: a backslash once decoded");
        assert!(b >= 0x20 && b != 0x7f, "accepted {path:?}: a control byte once decoded");
        assert!(
            !(escaped && matches!(b, b'/' | b'%' | b';')),
            "accepted {path:?}: an escaped {:?}",
            b as char
        );
    }
    for seg in bytes.split(|b| *b == b'/') {
        let name = seg.split(|b| *b == b';').next().unwrap_or(seg);
        assert!(
            name != b"." && name != b"..",
            "accepted {path:?}: a dot segment once decoded"
        );
    }
    match class {
        RouteClass::AuthApi => assert!(path == "/api/auth" || path.starts_with("/api/auth/"), "{path:?}"),
        RouteClass::Jwks => assert_eq!(path, "/.well-known/jwks.json"),
        RouteClass::Public => assert!(
            backend_is_public(&backend_view(&bytes)),
            "{path:?} is public to the gateway but {:?} to a backend",
            backend_view(&bytes)
        ),
        RouteClass::Web => assert!(path == "/_auth" || path.starts_with("/_auth/"), "{path:?}"),
        RouteClass::Verify => assert_eq!(path, "/_auth/verify"),
        RouteClass::Protected => {}
    }
}
