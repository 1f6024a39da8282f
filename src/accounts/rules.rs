//! The account rules, written once for the JSON API and the CLI (and the browser pages to come): what a username,
//! an email address, a password, an API token's name, lifetime and scopes may be.
//!
//! The rule this module keeps: every check is a pure function that answers with the field and a
//! short message, never with the refused value (it may be a password).

use std::ops::RangeInclusive;

use super::AccountError;

/// Passwords: 12 to 128 characters, any Unicode, never truncated (ASVS 2.1.1, 2.1.2).
pub const PASSWORD_CHARS: RangeInclusive<usize> = 12..=128;

/// The longest email address (RFC 5321 §4.5.3.1.3: a 256-octet path less its angle brackets).
pub const EMAIL_MAX_BYTES: usize = 254;

/// An API token's name: 1 to this many characters, no control characters.
pub const TOKEN_NAME_MAX_CHARS: usize = 100;

/// The longest lifetime an API token may ask for: ten years, in seconds.
pub const MAX_TOKEN_LIFETIME: u64 = 10 * 365 * 24 * 3600;

/// The username as given (trimmed) and its normalised form (PRECIS UsernameCaseMapped).
pub fn username(raw: &str) -> Result<(String, String), AccountError> {
    crate::username::normalize(raw).map_err(|_| AccountError::Invalid {
        field: "username",
        message: "must be 1 to 64 letters, digits or symbols, without spaces",
    })
}

/// The email address, trimmed.
pub fn email(raw: &str) -> Result<&str, AccountError> {
    let email = raw.trim();
    if email.len() > EMAIL_MAX_BYTES || !email_address::EmailAddress::is_valid(email) {
        return Err(AccountError::Invalid {
            field: "email",
            message: "is not a valid email address",
        });
    }
    Ok(email)
}

/// A new password, checked under the name of the field it came in.
pub fn password(field: &'static str, password: &str) -> Result<(), AccountError> {
    if !PASSWORD_CHARS.contains(&password.chars().count()) {
        return Err(AccountError::Invalid {
            field,
            message: "must be 12 to 128 characters",
        });
    }
    Ok(())
}

/// An API token's name, trimmed.
pub fn token_name(raw: &str) -> Result<&str, AccountError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > TOKEN_NAME_MAX_CHARS || name.chars().any(char::is_control) {
        return Err(AccountError::Invalid {
            field: "name",
            message: "must be 1 to 100 characters",
        });
    }
    Ok(name)
}

/// A role: `user` or `admin`.
pub fn role(raw: &str) -> Result<crate::policy::Role, AccountError> {
    crate::policy::Role::parse(raw.trim()).ok_or(AccountError::Invalid {
        field: "role",
        message: "must be user or admin",
    })
}

/// A local group's name, trimmed: 1 to 64 visible ASCII characters, as `group:<name>` in a policy
/// names it.
pub fn group_name(raw: &str) -> Result<&str, AccountError> {
    let name = raw.trim();
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(AccountError::Invalid {
            field: "group",
            message: "must be 1 to 64 visible ASCII characters, without spaces",
        });
    }
    Ok(name)
}

/// An API token's scopes, as given (no trimming, no case folding): 1 to
/// [`MAX_SCOPES`](crate::policy::scopes::MAX_SCOPES) names, each 1 to 64 of `a-z 0-9 _ . : -`,
/// duplicates dropped in order. `None` (not given) is `["full"]`, what every token did before.
pub fn token_scopes(raw: Option<&[&str]>) -> Result<Vec<String>, AccountError> {
    use crate::policy::scopes;
    let Some(raw) = raw else {
        return Ok(vec![scopes::FULL.to_owned()]);
    };
    let invalid = |message| AccountError::Invalid {
        field: "scopes",
        message,
    };
    if raw.is_empty() {
        return Err(invalid(
            "must name at least one scope: read, full, or a name a policy rule grants",
        ));
    }
    if raw.len() > scopes::MAX_SCOPES {
        return Err(invalid("may name at most 16 scopes"));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for name in raw {
        if !scopes::is_name(name) {
            return Err(invalid("must each be 1 to 64 of a-z 0-9 _ . : -"));
        }
        if !out.iter().any(|n| n == name) {
            out.push((*name).to_owned());
        }
    }
    Ok(out)
}

/// An API token's lifetime in seconds, when it has one.
pub fn token_lifetime(seconds: Option<u64>) -> Result<Option<u64>, AccountError> {
    match seconds {
        Some(n) if !(1..=MAX_TOKEN_LIFETIME).contains(&n) => Err(AccountError::Invalid {
            field: "expires_in",
            message: "must be a whole number of seconds from 1 to 315360000",
        }),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: AccountError) -> &'static str {
        match e {
            AccountError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_email_over_254_bytes_is_refused_however_it_arrives() {
        let long = format!("{}@example.com", "a".repeat(EMAIL_MAX_BYTES));
        assert_eq!(field(email(&long).unwrap_err()), "email");
        assert_eq!(email("  alice@example.com ").unwrap(), "alice@example.com");
        assert_eq!(field(email("not-an-address").unwrap_err()), "email");
    }

    #[test]
    fn passwords_are_counted_in_characters_not_bytes() {
        assert!(password("password", &"é".repeat(12)).is_ok());
        assert_eq!(
            field(password("new_password", &"x".repeat(11)).unwrap_err()),
            "new_password"
        );
        assert!(password("password", &"x".repeat(129)).is_err());
    }

    #[test]
    fn token_names_and_lifetimes_have_bounds() {
        assert_eq!(token_name("  ci  ").unwrap(), "ci");
        for bad in ["", "   ", "a\nb", &"n".repeat(101)] {
            assert_eq!(field(token_name(bad).unwrap_err()), "name", "{bad:?}");
        }
        assert_eq!(token_lifetime(None).unwrap(), None);
        assert_eq!(
            token_lifetime(Some(MAX_TOKEN_LIFETIME)).unwrap(),
            Some(MAX_TOKEN_LIFETIME)
        );
        for bad in [0, MAX_TOKEN_LIFETIME + 1] {
            assert_eq!(field(token_lifetime(Some(bad)).unwrap_err()), "expires_in");
        }
    }

    #[test]
    fn token_scopes_are_checked_strictly_and_default_to_full() {
        assert_eq!(token_scopes(None).unwrap(), ["full"]);
        assert_eq!(
            token_scopes(Some(&["read", "ingest", "read", "docs:write"])).unwrap(),
            ["read", "ingest", "docs:write"]
        );
        let many: Vec<String> = (0..17).map(|i| format!("s{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(token_scopes(Some(&many[..16])).is_ok());
        let long = "x".repeat(65);
        for bad in [
            &[][..],
            &many[..],
            &[""],
            &[" read"],
            &["Read"],
            &["a b"],
            &[long.as_str()],
            &["ré"],
        ] {
            assert_eq!(field(token_scopes(Some(bad)).unwrap_err()), "scopes", "{bad:?}");
        }
    }
}
