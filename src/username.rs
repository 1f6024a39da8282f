//! Usernames: how a name given at sign-up becomes the name it is stored, looked up and compared by.
//!
//! The rule this module keeps: two names a person could mistake for each other are one name.
//! Case and width variants are folded by RFC 8265 (UsernameCaseMapped), and look-alikes from
//! other scripts (a Cyrillic `а` for a Latin `a`) by their UTS #39 confusable skeleton, which the
//! store keeps beside each name and checks before it adds one.

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
    Ok((given.to_owned(), norm.into_owned()))
}

/// The UTS #39 confusable skeleton of a normalized name: equal skeletons, confusable names.
/// (`unicode-security` carries the Unicode confusables table; it is not hand-written here.)
pub fn skeleton(norm: &str) -> String {
    unicode_security::skeleton(norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skel(raw: &str) -> String {
        skeleton(&normalize(raw).unwrap().1)
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        // Cyrillic а (U+0430) and о (U+043E) for Latin a and o.
        assert_eq!(skel("\u{0430}lice"), skel("alice"));
        assert_eq!(skel("b\u{043e}b"), skel("bob"));
        // Greek omicron, and a digit one for a small L.
        assert_eq!(skel("r\u{03bf}ot"), skel("root"));
        assert_eq!(skel("admin1"), skel("admin1"));
        assert_eq!(skel("ALICE"), skel("alice"));
    }

    #[test]
    fn different_names_keep_different_skeletons() {
        assert_ne!(skel("alice"), skel("alicia"));
        assert_ne!(skel("bob"), skel("rob"));
        assert_ne!(skel("\u{00e9}mile"), skel("zoe"));
    }

    #[test]
    fn names_are_folded_and_bounded() {
        assert_eq!(normalize("  Alice ").unwrap(), ("Alice".into(), "alice".into()));
        assert!(normalize("").is_err());
        assert!(normalize("a b").is_err());
        assert!(normalize(&"x".repeat(65)).is_err());
    }
}
