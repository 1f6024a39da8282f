//! Usernames: how a name given at sign-up becomes the name it is stored, looked up and compared by.
//!
//! The rule this module keeps: two names a person could mistake for each other are one name.
//! Case and width variants are folded by RFC 8265 (UsernameCaseMapped), and look-alikes (a
//! Cyrillic `а` for a Latin `a`, `I` for `l`, `0` for `o`) by their UTS #39 confusable skeletons,
//! which the store keeps beside each name and checks before it adds one.

use crate::error::GatewayError;

/// RFC 8265 UsernameCaseMapped: trimmed, width-mapped, case-folded, NFC. Returns (as given, normalized).
pub fn normalize(raw: &str) -> Result<(String, String), GatewayError> {
    use precis_profiles::UsernameCaseMapped;
    use precis_profiles::precis_core::profile::PrecisFastInvocation;
    const BAD: GatewayError = GatewayError::InvalidField {
        field: "username",
        message: "must be 1 to 64 letters, digits or symbols, without spaces",
    };
    let given = raw.trim();
    if given.is_empty() || given.chars().count() > 64 {
        return Err(BAD);
    }
    let norm = UsernameCaseMapped::enforce(given).map_err(|_| BAD)?;
    // Normalizing must be idempotent: the check of allowed characters runs before NFC, so NFC can
    // compose one the profile refuses (`=` and U+0338 into `≠`; found by fuzzing). Such a name is
    // refused rather than stored in a form that would itself be refused.
    if UsernameCaseMapped::enforce(norm.as_ref()).ok().as_deref() != Some(norm.as_ref()) {
        return Err(BAD);
    }
    Ok((given.to_owned(), norm.into_owned()))
}

/// A name's two look-alike keys: the UTS #39 confusable skeleton of its normalized form and of the
/// form it was given in, each lowercased. Both are needed: folding case first loses `I` for `l`
/// (`AIice`), and the table's prototypes are partly upper case (`0` maps to `O`, so `b0b`).
/// Two names are look-alikes when a key of one equals a key of the other. (`unicode-security`
/// carries Unicode's confusables table; it is not hand-written here.)
pub fn skeletons(given: &str, norm: &str) -> [String; 2] {
    let key = |s: &str| unicode_security::skeleton(s).collect::<String>().to_lowercase();
    [key(norm), key(given.trim())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alike(a: &str, b: &str) -> bool {
        let keys = |raw: &str| {
            let (given, norm) = normalize(raw).unwrap();
            skeletons(&given, &norm)
        };
        let (a, b) = (keys(a), keys(b));
        a.iter().any(|k| b.contains(k))
    }

    #[test]
    fn look_alikes_share_a_key() {
        // Cyrillic а (U+0430) and о (U+043E) for Latin a and o; a Greek omicron.
        assert!(alike("\u{0430}lice", "alice"));
        assert!(alike("b\u{043e}b", "bob"));
        assert!(alike("r\u{03bf}ot", "root"));
        // A capital I for a small L, a digit one for a small L, a zero for an o.
        assert!(alike("AIice", "alice"));
        assert!(alike("Alice", "AIice"));
        assert!(alike("a1ice", "alice"));
        assert!(alike("b0b", "bob"));
        assert!(alike("ALICE", "alice"));
    }

    #[test]
    fn different_names_keep_different_keys() {
        assert!(!alike("alice", "alicia"));
        assert!(!alike("bob", "rob"));
        assert!(!alike("\u{00e9}mile", "zoe"));
        assert!(!alike("carol", "karol"));
    }

    #[test]
    fn names_are_folded_and_bounded() {
        assert_eq!(normalize("  Alice ").unwrap(), ("Alice".into(), "alice".into()));
        assert!(normalize("").is_err());
        assert!(normalize("a b").is_err());
        assert!(normalize(&"x".repeat(65)).is_err());
        // NFC would compose a refused symbol: the name is refused, not stored in a refused form.
        assert!(normalize("=\u{338}\u{338}\u{338}").is_err());
        assert!(normalize(">\u{338}>").is_err());
    }
}
