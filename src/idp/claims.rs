//! What a relying party learns about a person: the claims of an ID token and of `userinfo`, by
//! granted scope.
//!
//! The rule this module keeps: a claim is released only under the scope that names it
//! (`email`: email, email_verified; `profile`: name, preferred_username, role, groups; `groups`:
//! groups, role), and `email_verified` is true only when a provider verified that very address.

use serde::Serialize;

/// Every claim authgate issues, for discovery's `claims_supported`.
pub const SUPPORTED: [&str; 14] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "email",
    "email_verified",
    "name",
    "preferred_username",
    "groups",
    "role",
];

/// A person as authgate knows them.
#[derive(Debug, Clone)]
pub struct Person {
    pub username: String,
    pub email: String,
    pub email_verified: bool,
    /// `user` or `admin`.
    pub role: String,
    pub groups: Vec<String>,
}

/// The claims a set of scopes releases.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Released<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<&'a [String]>,
}

impl Person {
    /// The claims `scope` (space-separated) releases.
    pub fn released(&self, scope: &str) -> Released<'_> {
        let has = |s: &str| scope.split(' ').any(|x| x == s);
        let (email, profile, groups) = (has("email"), has("profile"), has("groups"));
        Released {
            email: email.then_some(self.email.as_str()).filter(|e| !e.is_empty()),
            email_verified: (email && !self.email.is_empty()).then_some(self.email_verified),
            // authgate keeps no display name apart from the username.
            name: profile.then_some(self.username.as_str()),
            preferred_username: profile.then_some(self.username.as_str()),
            role: (profile || groups).then_some(self.role.as_str()),
            groups: (profile || groups).then_some(self.groups.as_slice()),
        }
    }
}

/// An ID token's claims (OpenID Connect Core §2).
#[derive(Debug, Serialize)]
pub struct IdClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub iat: u64,
    pub exp: u64,
    pub auth_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    pub at_hash: String,
    #[serde(flatten)]
    pub person: Released<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Person {
        Person {
            username: "alice".into(),
            email: "alice@example.com".into(),
            email_verified: false,
            role: "admin".into(),
            groups: vec!["research".into()],
        }
    }

    #[test]
    fn each_scope_releases_its_claims_only() {
        let a = alice();
        let none = a.released("openid");
        assert_eq!(serde_json::to_value(&none).unwrap(), serde_json::json!({}));
        let email = serde_json::to_value(a.released("openid email")).unwrap();
        assert_eq!(
            email,
            serde_json::json!({"email": "alice@example.com", "email_verified": false})
        );
        let profile = serde_json::to_value(a.released("openid profile")).unwrap();
        assert_eq!(
            profile,
            serde_json::json!({"name": "alice", "preferred_username": "alice", "role": "admin", "groups": ["research"]})
        );
        let groups = serde_json::to_value(a.released("openid groups")).unwrap();
        assert_eq!(groups, serde_json::json!({"role": "admin", "groups": ["research"]}));
        // A scope is a whole word: `profiles` is not `profile`.
        assert_eq!(a.released("openid profiles emails").name, None);
    }
}
