//! JSON bodies of `/api/auth/*`, parsed strictly.
//!
//! The rule this module keeps: a member name appears once per object. `serde_json::Value` keeps
//! the last of two same-named members, so `{"password":"wrong","password":"right"}` would pass one
//! value to a check and another to the code after it; here any repeat, at any depth, is refused
//! with a 400 that names the member.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::GatewayError;

/// The longest member name echoed back in an error.
const MAX_NAME_ECHO: usize = 64;

/// Parse `bytes` as one JSON object with no repeated member names.
pub fn parse_object(bytes: &[u8]) -> Result<Value, GatewayError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(Strict(v)) if v.is_object() => Ok(v),
        Ok(_) => Err(GatewayError::InvalidRequest("Body must be a JSON object")),
        Err(e) => match duplicate_name(&e) {
            Some(name) => Err(GatewayError::DuplicateMember(name.into())),
            None => Err(GatewayError::InvalidRequest("Body is not valid JSON")),
        },
    }
}

/// The marker a duplicate carries through serde's error, which only holds a message.
const DUPLICATE: &str = "\u{0}duplicate member\u{0}";

fn duplicate_name(e: &serde_json::Error) -> Option<String> {
    let msg = e.to_string();
    let rest = msg.strip_prefix(DUPLICATE)?;
    // serde_json appends " at line L column C".
    let name = rest.rsplit_once(" at line ").map_or(rest, |(n, _)| n);
    Some(name.to_owned())
}

/// A `Value` whose objects are checked for repeated names as they are read.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if out.contains_key(&name) {
                let shown: String = name.chars().take(MAX_NAME_ECHO).collect();
                return Err(de::Error::custom(format_args!("{DUPLICATE}{shown}")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(name, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_member_is_refused_by_name() {
        for (body, name) in [
            (r#"{"username":"a","username":"b"}"#, "username"),
            (r#"{"password":"wrong","x":1,"password":"right"}"#, "password"),
            (r#"{"a":{"b":1,"b":2}}"#, "b"),
            (r#"{"a":[{"c":1,"c":1}]}"#, "c"),
            // Escapes are decoded before the names are compared.
            (r#"{"name":"a","n\u0061me":"b"}"#, "name"),
        ] {
            assert_eq!(
                parse_object(body.as_bytes()),
                Err(GatewayError::DuplicateMember(name.into())),
                "{body}"
            );
        }
    }

    #[test]
    fn ordinary_bodies_parse_as_before() {
        let v = parse_object(br#"{"a":1,"b":[1,2,{"c":null}],"d":{"e":-1.5,"f":true},"g":"s"}"#).unwrap();
        let plain: Value =
            serde_json::from_str(r#"{"a":1,"b":[1,2,{"c":null}],"d":{"e":-1.5,"f":true},"g":"s"}"#).unwrap();
        assert_eq!(v, plain);
    }

    #[test]
    fn non_objects_and_bad_json_are_refused() {
        for body in ["[]", "1", "\"x\"", "null", "{", "{} {}", "{\"a\":1}x", ""] {
            assert!(
                matches!(parse_object(body.as_bytes()), Err(GatewayError::InvalidRequest(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // serde_json's recursion limit (128) still applies through this visitor.
        for open in ["[", "{\"a\":"] {
            let body = format!("{{\"x\":{}", open.repeat(100_000));
            assert!(
                matches!(parse_object(body.as_bytes()), Err(GatewayError::InvalidRequest(_))),
                "{open}"
            );
        }
    }

    #[test]
    fn a_long_duplicate_name_is_cut_in_the_answer() {
        let name = "n".repeat(500);
        let body = format!(r#"{{"{name}":1,"{name}":2}}"#);
        match parse_object(body.as_bytes()) {
            Err(GatewayError::DuplicateMember(n)) => assert_eq!(n.len(), MAX_NAME_ECHO),
            other => panic!("{other:?}"),
        }
    }
}
