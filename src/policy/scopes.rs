//! What a credential may do within its owner's rights: `full` (all of it), `read` (GET and HEAD),
//! and names that a rule grants with `scope:<name>`.
//!
//! The rule this module keeps: a credential never does more than its owner may, and less is the
//! answer to anything unclear: a name outside the alphabet, or scopes that cannot be read, are held
//! as no scope at all (which permits nothing but public routes). Holding exactly `full`, the case of
//! every JWT, cookie session and provider bearer, costs no allocation.

use std::fmt;
use std::sync::Arc;

use http::Method;

/// The built-in scope that permits everything the owner may do.
pub const FULL: &str = "full";
/// The built-in scope that permits reads only: GET and HEAD, never a WebSocket handshake.
pub const READ: &str = "read";
/// At most this many scopes per credential.
pub const MAX_SCOPES: usize = 16;
/// A scope's name is 1 to this many bytes of `a-z 0-9 _ . : -`.
pub const MAX_NAME_BYTES: usize = 64;

/// Whether `name` may be a scope's name: 1 to 64 of `a-z 0-9 _ . : -`.
pub fn is_name(name: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Whether `name` is `full` or `read`, which a rule's `scope:<name>` never widens.
pub fn is_builtin(name: &str) -> bool {
    name == FULL || name == READ
}

/// What a request does, as scopes see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// GET or HEAD, and not a WebSocket handshake.
    Read,
    /// Anything else: another method, or a WebSocket (a GET that opens a two-way channel).
    Write,
}

impl Effect {
    pub fn of(method: &Method, websocket: bool) -> Effect {
        if !websocket && (method == Method::GET || method == Method::HEAD) {
            Effect::Read
        } else {
            Effect::Write
        }
    }
}

/// A credential's scopes. `None` is exactly `full`.
#[derive(Clone, PartialEq, Eq)]
pub struct Scopes(Option<Arc<[Box<str>]>>);

impl Scopes {
    /// Exactly `full`: JWTs, cookie sessions, provider bearers, and API tokens made without scopes.
    pub const FULL: Scopes = Scopes(None);

    /// Scopes from their names, as stored. A name that is not [`is_name`] is dropped (it could
    /// never be granted); an empty list holds nothing.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Scopes {
        if let [only] = names
            && only.as_ref() == FULL
        {
            return Scopes::FULL;
        }
        Scopes(Some(
            names
                .iter()
                .map(AsRef::as_ref)
                .filter(|n| is_name(n))
                .map(Box::from)
                .collect(),
        ))
    }

    /// Whether these include `full`: the owner's rights, all of them.
    pub fn is_full(&self) -> bool {
        self.0.as_ref().is_none_or(|names| names.iter().any(|n| &**n == FULL))
    }

    /// Whether `name` is one of these, as given (`full` does not hold `read` here).
    pub fn holds(&self, name: &str) -> bool {
        match &self.0 {
            None => name == FULL,
            Some(names) => names.iter().any(|n| &**n == name),
        }
    }

    /// Whether these permit `effect` where no rule grants a scope by name: everything with `full`,
    /// a read with `read`.
    pub fn permits(&self, effect: Effect) -> bool {
        self.is_full() || (effect == Effect::Read && self.holds(READ))
    }

    /// The names, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let held: &[Box<str>] = self.0.as_deref().unwrap_or_default();
        self.0
            .is_none()
            .then_some(FULL)
            .into_iter()
            .chain(held.iter().map(|n| &**n))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_a_small_alphabet() {
        for good in ["read", "full", "ingest", "a", "docs:write", "v1.2_x-y", &"x".repeat(64)] {
            assert!(is_name(good), "{good}");
        }
        for bad in ["", "Read", "a b", "é", "a/b", "a*", &"x".repeat(65), "a\n"] {
            assert!(!is_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn full_alone_is_the_free_case_and_names_read_back_in_order() {
        assert_eq!(Scopes::from_names(&["full"]), Scopes::FULL);
        assert!(Scopes::FULL.is_full() && Scopes::FULL.holds("full") && !Scopes::FULL.holds("read"));
        assert_eq!(Scopes::FULL.names().collect::<Vec<_>>(), ["full"]);
        let s = Scopes::from_names(&["ingest", "read"]);
        assert!(!s.is_full() && s.holds("read") && s.holds("ingest") && !s.holds("full"));
        assert_eq!(s.names().collect::<Vec<_>>(), ["ingest", "read"]);
        assert!(Scopes::from_names(&["read", "full"]).is_full());
    }

    #[test]
    fn what_cannot_be_read_holds_nothing() {
        let none = Scopes::from_names::<&str>(&[]);
        assert!(!none.is_full() && !none.permits(Effect::Read));
        let bad = Scopes::from_names(&["FULL", "read write"]);
        assert!(!bad.is_full() && !bad.permits(Effect::Read) && bad.names().next().is_none());
    }

    #[test]
    fn read_permits_get_and_head_but_not_a_websocket() {
        let read = Scopes::from_names(&["read"]);
        assert!(read.permits(Effect::of(&Method::GET, false)));
        assert!(read.permits(Effect::of(&Method::HEAD, false)));
        assert!(!read.permits(Effect::of(&Method::GET, true)));
        for m in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ] {
            assert!(!read.permits(Effect::of(&m, false)), "{m}");
            assert!(Scopes::FULL.permits(Effect::of(&m, false)), "{m}");
        }
        assert!(!Scopes::from_names(&["ingest"]).permits(Effect::Read));
    }
}
