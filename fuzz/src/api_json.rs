//! Oracle for the `api_json` target: the `/api/auth/*` JSON bodies and the username rules.
//!
//! `strict_json::parse_object` must never panic and must agree with `serde_json` except on repeated
//! member names: on input `serde_json` reads as an object with every name once, it returns the same
//! value; on valid JSON with a repeated name anywhere, it refuses with the first repeat in document
//! order; on anything else it refuses. The repeats are found here by a separate reader that keeps
//! every member (`Repeats`), not by the code under test.
//!
//! Every top-level string of an accepted body, and the whole input as text, also go through
//! `username::normalize` and `username::skeletons`: never a panic, an accepted name is 1 to 64
//! characters as given and has no white space once normalized, and normalizing is idempotent.

use std::fmt;

use authgate::api::strict_json::parse_object;
use authgate::error::GatewayError;
use authgate::username;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The first repeated member name in document order, if any, found while reading the whole input.
#[derive(Debug)]
struct Repeats(Option<String>);

impl<'de> Deserialize<'de> for Repeats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RepeatsVisitor)
    }
}

#[derive(Debug)]
struct RepeatsVisitor;

impl<'de> Visitor<'de> for RepeatsVisitor {
    type Value = Repeats;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Repeats, E> {
        Ok(Repeats(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Repeats, E> {
        Ok(Repeats(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Repeats, E> {
        Ok(Repeats(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Repeats, E> {
        Ok(Repeats(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<Repeats, E> {
        Ok(Repeats(None))
    }
    fn visit_unit<E>(self) -> Result<Repeats, E> {
        Ok(Repeats(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Repeats, A::Error> {
        let mut first = None;
        while let Some(Repeats(r)) = seq.next_element()? {
            first = first.or(r);
        }
        Ok(Repeats(first))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Repeats, A::Error> {
        let mut names: Vec<String> = Vec::new();
        let mut first = None;
        while let Some(name) = map.next_key::<String>()? {
            // A repeat of this object's name comes after everything inside the earlier value.
            if first.is_none() && names.contains(&name) {
                first = Some(name.clone());
            }
            let Repeats(inner) = map.next_value()?;
            first = first.or(inner);
            names.push(name);
        }
        Ok(Repeats(first))
    }
}

/// Panics if the username rules break.
fn check_username(raw: &str) {
    let Ok((given, norm)) = username::normalize(raw) else {
        return;
    };
    assert_eq!(given, raw.trim());
    assert!((1..=64).contains(&given.chars().count()), "{given:?} accepted");
    assert!(
        !norm.is_empty() && !norm.chars().any(char::is_whitespace),
        "{raw:?} normalized to {norm:?}"
    );
    let _ = username::skeletons(&given, &norm);
    if norm.chars().count() <= 64 {
        assert_eq!(
            username::normalize(&norm),
            Ok((norm.clone(), norm.clone())),
            "normalizing {raw:?} is not idempotent"
        );
    }
}

/// Panics if `parse_object` panics or disagrees with the rules above.
pub fn check(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_username(text);
    }
    let strict = parse_object(data);
    if let Ok(object) = &strict {
        for value in object.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(s) = value.as_str() {
                check_username(s);
            }
        }
    }
    let plain = serde_json::from_slice::<Value>(data);
    let repeats = serde_json::from_slice::<Repeats>(data);
    match (plain, repeats) {
        (Ok(plain), Ok(Repeats(None))) if plain.is_object() => {
            assert_eq!(strict, Ok(plain), "a plain object read differently");
        }
        (Ok(_), Ok(Repeats(Some(name)))) => {
            let shown: String = name.chars().take(64).collect();
            assert_eq!(
                strict,
                Err(GatewayError::DuplicateMember(shown.into())),
                "repeat not refused"
            );
        }
        (Ok(_), Ok(Repeats(None))) => {
            assert!(
                matches!(strict, Err(GatewayError::InvalidRequest(_))),
                "a non-object accepted: {strict:?}"
            );
        }
        (plain, repeats) => {
            assert!(
                strict.is_err(),
                "accepted what serde_json refuses: {plain:?} {repeats:?}"
            );
        }
    }
}
