//! May they: the `[[policy.rules]]` that decide, per method and path, whether a request is public,
//! allowed for this caller, or refused (403), and which rule decided.
//!
//! The rule this module keeps: rules are tried in order and the first whose methods and paths
//! match decides alone (no fall-through); a caller matched by its `deny` is refused even when its
//! `allow` names them too; paths are matched exactly as `auth.public_paths` are (the strict path,
//! after `routes::check_path`), except that a rule which is not `public` sees the path as the most
//! lenient backend would (escapes decoded, `;params` dropped, `//` read as `/`), so
//! `/api/%61dmin/x`, `/api/admin;x/y` and `//api/admin/x` cannot slip past a deny. Nothing here
//! does I/O: the caller's role and groups are handed in.
//!
//! A credential's scopes narrow what its owner may do, never widen it ([`Policy::allows`]): the
//! rule (or default) must allow the caller, and a credential without `full` must also be within its
//! scopes: `read` permits reads, and a scope `X` permits a request whose rule names `scope:X` in
//! its `allow`.

mod index;
pub mod scopes;

use std::borrow::Cow;

use http::Method;

pub use scopes::{Effect, Scopes};

use crate::routes::PublicPaths;

/// A user's one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    User,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// What policies know of a user beyond their id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub role: Role,
    /// Local and provider groups.
    pub groups: Box<[Box<str>]>,
}

/// Who may: one entry of an `allow` or `deny` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Anyone, with or without a credential (`allow` only, and alone).
    Public,
    /// Any authenticated caller.
    Authenticated,
    Role(Role),
    Group(Box<str>),
    User(Box<str>),
    /// A credential's scope: in `allow`, held or `full`; in `deny`, held as named.
    Scope(Box<str>),
}

impl Subject {
    /// `public`, `authenticated`, `role:admin`, `group:<name>`, `user:<id>` or `scope:<name>`.
    pub fn parse(s: &str) -> Option<Subject> {
        let named = |v: &str| -> Option<Box<str>> {
            (!v.is_empty() && v.bytes().all(|b| (0x21..0x7f).contains(&b))).then(|| v.into())
        };
        Some(match s.split_once(':') {
            None if s == "public" => Subject::Public,
            None if s == "authenticated" => Subject::Authenticated,
            Some(("role", r)) => Subject::Role(Role::parse(r)?),
            Some(("group", g)) => Subject::Group(named(g)?),
            Some(("user", u)) => Subject::User(named(u)?),
            Some(("scope", c)) => Subject::Scope(scopes::is_name(c).then(|| c.into())?),
            _ => return None,
        })
    }

    fn needs_access(&self) -> bool {
        matches!(self, Subject::Role(_) | Subject::Group(_))
    }

    /// Whether an `allow` entry lets `c` in: `scope:X` matches a credential holding `X` or `full`.
    fn allows(&self, c: &Caller<'_>) -> bool {
        match self {
            Subject::Scope(s) => c.scopes.is_full() || c.scopes.holds(s),
            other => other.is_caller(c),
        }
    }

    /// Whether a `deny` entry keeps `c` out: `scope:X` matches only a credential holding `X` itself,
    /// so `deny = ["scope:read"]` keeps read-only tokens out without refusing every login.
    fn denies(&self, c: &Caller<'_>) -> bool {
        match self {
            Subject::Scope(s) => c.scopes.holds(s),
            other => other.is_caller(c),
        }
    }

    fn is_caller(&self, c: &Caller<'_>) -> bool {
        match self {
            Subject::Public | Subject::Authenticated => true,
            Subject::Role(r) => c.access.is_some_and(|a| a.role == *r),
            Subject::Group(g) => c.access.is_some_and(|a| a.groups.iter().any(|x| x == g)),
            Subject::User(u) => c.user_id == &**u,
            Subject::Scope(_) => false,
        }
    }

    /// The custom scope this `allow` entry grants, if it is one (`read` and `full` are not).
    fn grants(&self) -> Option<&str> {
        match self {
            Subject::Scope(s) if !scopes::is_builtin(s) => Some(s),
            _ => None,
        }
    }
}

/// An authenticated caller, as a rule sees them.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user_id: &'a str,
    /// Their role and groups: read only for a rule that names a role or group
    /// ([`Policy::needs_access`]); `None` reads as neither.
    pub access: Option<&'a Access>,
    /// The credential's scopes ([`Scopes::FULL`] for all but scoped API tokens).
    pub scopes: &'a Scopes,
}

/// `policy.default`: what a request no rule matches gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// Any authenticated caller (the behaviour without policies).
    #[default]
    Authenticated,
    /// Refused (403) for every caller.
    Deny,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    pub paths: PublicPaths,
    pub allow: Vec<Subject>,
    pub deny: Vec<Subject>,
    /// The description, or `#<n>` (1-based), at most 64 bytes: the access line's `rule` and the
    /// metric's label.
    pub label: Box<str>,
}

impl Rule {
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.allows_method(method) && self.paths.matches(path)
    }

    fn allows_method(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }

    /// Whether `earlier`, tried first, matches every request this rule matches.
    pub fn shadowed_by(&self, earlier_methods: Option<&[Method]>, earlier_paths: &PublicPaths) -> bool {
        let methods = match (earlier_methods, &self.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(e), Some(m)) => m.iter().all(|x| e.contains(x)),
        };
        methods && earlier_paths.covers(&self.paths)
    }

    fn is_public(&self) -> bool {
        self.allow.contains(&Subject::Public)
    }
}

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// `auth.public_paths` (the shorthand for `public` rules placed first).
    PublicPaths,
    /// `[[policy.rules]]`, 0-based.
    Rule(usize),
    Default,
}

/// What a decision was, for the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Public,
    Allow,
    Deny,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Public, Verdict::Allow, Verdict::Deny];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Public => "public",
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// The rules in order and the default.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    pub default: Fallback,
    /// The rules' paths, for [`Policy::matching`].
    index: index::PathIndex,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(Vec::new(), Fallback::default())
    }
}

impl Policy {
    pub fn new(rules: Vec<Rule>, default: Fallback) -> Policy {
        let index = index::PathIndex::new(&rules);
        Policy { rules, default, index }
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// No rule and the default default: exactly the behaviour without policies, at no cost.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty() && self.default == Fallback::Authenticated
    }

    /// The first rule whose methods and paths match, else the default. (`auth.public_paths` is
    /// matched before this, by `routes::classify`.)
    pub fn matching(&self, method: &Method, path: &str) -> Decided {
        if self.rules.is_empty() {
            return Decided::Default;
        }
        // `public` opens the exact path only; every other rule also catches its variants.
        let lenient = lenient(path);
        self.index
            .first(&self.rules, method, path, &lenient)
            .map_or(Decided::Default, Decided::Rule)
    }

    /// Whether `d` lets the request through without a credential.
    pub fn is_public(&self, d: Decided) -> bool {
        match d {
            Decided::PublicPaths => true,
            Decided::Rule(i) => self.rules.get(i).is_some_and(Rule::is_public),
            Decided::Default => false,
        }
    }

    /// Whether deciding `d` needs the caller's role and groups.
    pub fn needs_access(&self, d: Decided) -> bool {
        match d {
            Decided::Rule(i) => self
                .rules
                .get(i)
                .is_some_and(|r| r.allow.iter().chain(&r.deny).any(Subject::needs_access)),
            Decided::PublicPaths | Decided::Default => false,
        }
    }

    /// Whether `caller` may make the request `d` matched, doing `effect`: the rule admits them
    /// (not denied, and allowed), and the request is within their credential's scopes.
    pub fn allows(&self, d: Decided, caller: &Caller<'_>, effect: Effect) -> bool {
        self.admits(d, caller) && self.within_scopes(d, caller.scopes, effect)
    }

    /// Whether the rule `d` (or the default) admits `caller`: not denied, and allowed.
    fn admits(&self, d: Decided, caller: &Caller<'_>) -> bool {
        match d {
            Decided::PublicPaths => true,
            Decided::Default => self.default == Fallback::Authenticated,
            Decided::Rule(i) => self
                .rules
                .get(i)
                .is_some_and(|r| !r.deny.iter().any(|s| s.denies(caller)) && allowed_by(&r.allow, caller)),
        }
    }

    /// Whether a request `d` matched, doing `effect`, is within `scopes`: always with `full` or on
    /// a public route; a read with `read`; otherwise only where the matched rule's `allow` names
    /// `scope:X` for a custom scope `X` they hold.
    pub fn within_scopes(&self, d: Decided, scopes: &Scopes, effect: Effect) -> bool {
        if scopes.permits(effect) || self.is_public(d) {
            return true;
        }
        match d {
            Decided::Rule(i) => self
                .rules
                .get(i)
                .is_some_and(|r| r.allow.iter().filter_map(Subject::grants).any(|s| scopes.holds(s))),
            Decided::PublicPaths | Decided::Default => false,
        }
    }

    /// The name of what decided, for the access line and the metric.
    pub fn label(&self, d: Decided) -> &str {
        match d {
            Decided::PublicPaths => "auth.public_paths",
            Decided::Default => "default",
            Decided::Rule(i) => self.rules.get(i).map_or("default", |r| &r.label),
        }
    }

    /// Every label and decision the metric can see, for counters made at start-up.
    pub fn all_decided(&self) -> impl Iterator<Item = Decided> + '_ {
        [Decided::PublicPaths, Decided::Default]
            .into_iter()
            .chain((0..self.rules.len()).map(Decided::Rule))
    }
}

/// Whether an `allow` list lets `caller` in. Its entries that name people (`authenticated`, a
/// role, a group, a user) decide who; its `scope:` entries say which of their credentials may
/// ([`Policy::within_scopes`]), so `["group:research", "scope:ingest"]` admits research members,
/// with a login or an `ingest` token, and nobody else. A list of scopes alone names no one: it
/// admits any caller whose credential holds one of them or `full`.
fn allowed_by(allow: &[Subject], caller: &Caller<'_>) -> bool {
    let names_people = allow.iter().any(|s| !matches!(s, Subject::Scope(_)));
    allow
        .iter()
        .filter(|s| names_people != matches!(s, Subject::Scope(_)))
        .any(|s| s.allows(caller))
}

/// `path` (already passed by `routes::check_path`, so no escape decodes to `/`, `\`, `.`, `;`
/// or `%`, and the decoded bytes are UTF-8) as a lenient backend reads it: escapes decoded,
/// each segment's `;params` dropped, empty segments collapsed. Borrowed when nothing changes.
pub fn lenient(path: &str) -> Cow<'_, str> {
    if !path.bytes().any(|b| b == b'%' || b == b';') && !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').skip(1) {
        let segment = segment.split(';').next().unwrap_or_default();
        if segment.is_empty() {
            continue;
        }
        out.push('/');
        out.push_str(&decode(segment));
    }
    if out.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

fn decode(segment: &str) -> Cow<'_, str> {
    if !segment.contains('%') {
        return Cow::Borrowed(segment);
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: Option<&[&str]>, paths: &[&str], allow: &[&str], deny: &[&str]) -> Rule {
        Rule {
            methods: methods.map(|m| m.iter().map(|x| x.parse().unwrap()).collect()),
            paths: PublicPaths::parse(&paths.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap(),
            allow: allow.iter().map(|s| Subject::parse(s).unwrap()).collect(),
            deny: deny.iter().map(|s| Subject::parse(s).unwrap()).collect(),
            label: "r".into(),
        }
    }

    fn access(role: Role, groups: &[&str]) -> Access {
        Access {
            role,
            groups: groups.iter().map(|g| Box::from(*g)).collect(),
        }
    }

    fn caller<'a>(id: &'a str, a: &'a Access) -> Caller<'a> {
        Caller {
            user_id: id,
            access: Some(a),
            scopes: &Scopes::FULL,
        }
    }

    fn allowed(p: &Policy, method: &str, path: &str, c: &Caller<'_>) -> Option<bool> {
        let method = method.parse().unwrap();
        let d = p.matching(&method, path);
        (!p.is_public(d)).then(|| p.allows(d, c, Effect::of(&method, false)))
    }

    #[test]
    fn the_vocabulary_parses_and_nothing_else_does() {
        assert_eq!(Subject::parse("public"), Some(Subject::Public));
        assert_eq!(Subject::parse("authenticated"), Some(Subject::Authenticated));
        assert_eq!(Subject::parse("role:admin"), Some(Subject::Role(Role::Admin)));
        assert_eq!(
            Subject::parse("group:research"),
            Some(Subject::Group("research".into()))
        );
        assert_eq!(Subject::parse("user:u-1"), Some(Subject::User("u-1".into())));
        assert_eq!(Subject::parse("scope:read"), Some(Subject::Scope("read".into())));
        assert_eq!(
            Subject::parse("scope:docs:write"),
            Some(Subject::Scope("docs:write".into()))
        );
        for bad in [
            "",
            "admin",
            "role:root",
            "group:",
            "group:a b",
            "user:",
            "everyone",
            "Public",
            "scope",
            "scope:",
            "scope:Read",
            "scope:a*",
        ] {
            assert_eq!(Subject::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn first_match_wins_and_does_not_fall_through() {
        let p = Policy::new(
            vec![
                rule(None, &["/api/admin/*"], &["role:admin"], &[]),
                rule(None, &["/api/*"], &["authenticated"], &[]),
            ],
            Fallback::Deny,
        );
        let user = access(Role::User, &[]);
        let admin = access(Role::Admin, &[]);
        assert_eq!(allowed(&p, "GET", "/api/admin/x", &caller("u", &user)), Some(false));
        assert_eq!(allowed(&p, "GET", "/api/admin/x", &caller("a", &admin)), Some(true));
        assert_eq!(allowed(&p, "GET", "/api/other", &caller("u", &user)), Some(true));
        assert_eq!(p.matching(&Method::GET, "/api/admin"), Decided::Rule(0));
        assert_eq!(p.matching(&Method::GET, "/api/adminx"), Decided::Rule(1));
    }

    #[test]
    fn a_deny_catches_the_variants_a_lenient_backend_reads_as_its_path() {
        assert_eq!(lenient("/api/x"), "/api/x");
        assert!(matches!(lenient("/api/x"), Cow::Borrowed(_)));
        assert_eq!(lenient("/api/%61dmin/x"), "/api/admin/x");
        assert_eq!(lenient("/api/admin;jsessionid=1/x"), "/api/admin/x");
        assert_eq!(lenient("//api//admin/"), "/api/admin/");
        assert_eq!(lenient("/;x"), "/");
        let p = Policy::new(
            vec![
                rule(None, &["/open/*"], &["public"], &[]),
                rule(None, &["/api/admin/*"], &["role:admin"], &[]),
            ],
            Fallback::Authenticated,
        );
        for path in ["/api/%61dmin/x", "/api/admin;x/y", "//api/admin/x", "/api//admin"] {
            assert_eq!(p.matching(&Method::GET, path), Decided::Rule(1), "{path}");
        }
        // `public` opens the exact path only.
        assert_eq!(p.matching(&Method::GET, "/open/x"), Decided::Rule(0));
        assert_eq!(p.matching(&Method::GET, "//open/x"), Decided::Default);
        assert_eq!(p.matching(&Method::GET, "/%6fpen/x"), Decided::Default);
    }

    #[test]
    fn the_default_is_authenticated_or_deny() {
        let user = access(Role::User, &[]);
        let mut p = Policy::default();
        assert!(p.is_open());
        assert_eq!(allowed(&p, "GET", "/x", &caller("u", &user)), Some(true));
        p.default = Fallback::Deny;
        assert!(!p.is_open());
        assert_eq!(p.matching(&Method::GET, "/x"), Decided::Default);
        assert_eq!(allowed(&p, "GET", "/x", &caller("u", &user)), Some(false));
        assert_eq!(p.label(Decided::Default), "default");
    }

    #[test]
    fn each_allow_kind_matches_its_callers_only() {
        let p = Policy::new(
            vec![
                rule(None, &["/role"], &["role:admin"], &[]),
                rule(None, &["/group"], &["group:research"], &[]),
                rule(None, &["/user"], &["user:alice-id"], &[]),
                rule(None, &["/scope"], &["scope:full"], &[]),
                rule(None, &["/other-scope"], &["scope:read"], &[]),
                rule(None, &["/any"], &["authenticated"], &[]),
                rule(None, &["/open/*"], &["public"], &[]),
            ],
            Fallback::Deny,
        );
        let plain = access(Role::User, &["staff"]);
        let admin = access(Role::Admin, &[]);
        let researcher = access(Role::User, &["staff", "research"]);
        let (bob, root, rae, alice) = (
            caller("bob", &plain),
            caller("root", &admin),
            caller("rae", &researcher),
            caller("alice-id", &plain),
        );
        for (path, who, expected) in [
            ("/role", &root, true),
            ("/role", &bob, false),
            ("/group", &rae, true),
            ("/group", &bob, false),
            ("/group", &root, false),
            ("/user", &alice, true),
            ("/user", &bob, false),
            ("/scope", &bob, true),
            // `full` holds every scope an `allow` names.
            ("/other-scope", &bob, true),
            ("/any", &bob, true),
        ] {
            assert_eq!(allowed(&p, "GET", path, who), Some(expected), "{path} {}", who.user_id);
        }
        assert_eq!(allowed(&p, "GET", "/open/x", &bob), None, "public needs no caller");
        assert!(p.is_public(p.matching(&Method::POST, "/open")));
        // Role and group rules need the caller's access; the others do not.
        assert!(p.needs_access(Decided::Rule(0)) && p.needs_access(Decided::Rule(1)));
        assert!(!p.needs_access(Decided::Rule(2)) && !p.needs_access(Decided::Default));
        // Without access read, neither a role nor a group matches.
        let unknown = Caller {
            user_id: "root",
            access: None,
            scopes: &Scopes::FULL,
        };
        assert_eq!(allowed(&p, "GET", "/role", &unknown), Some(false));
    }

    #[test]
    fn deny_overrides_allow() {
        let p = Policy::new(
            vec![rule(
                None,
                &["/docs/*"],
                &["authenticated", "role:admin"],
                &["group:contractors", "user:mallory"],
            )],
            Fallback::Authenticated,
        );
        let admin_contractor = access(Role::Admin, &["contractors"]);
        let plain = access(Role::User, &[]);
        assert_eq!(
            allowed(&p, "GET", "/docs/a", &caller("x", &admin_contractor)),
            Some(false)
        );
        assert_eq!(allowed(&p, "GET", "/docs/a", &caller("mallory", &plain)), Some(false));
        assert_eq!(allowed(&p, "GET", "/docs/a", &caller("bob", &plain)), Some(true));
    }

    #[test]
    fn methods_narrow_a_rule() {
        let p = Policy::new(
            vec![
                rule(Some(&["GET", "HEAD"]), &["/api/collections/*"], &["authenticated"], &[]),
                rule(None, &["/api/collections/*"], &["role:admin"], &[]),
            ],
            Fallback::Deny,
        );
        let user = access(Role::User, &[]);
        let admin = access(Role::Admin, &[]);
        assert_eq!(
            allowed(&p, "GET", "/api/collections/1", &caller("u", &user)),
            Some(true)
        );
        assert_eq!(
            allowed(&p, "HEAD", "/api/collections/1", &caller("u", &user)),
            Some(true)
        );
        assert_eq!(
            allowed(&p, "DELETE", "/api/collections/1", &caller("u", &user)),
            Some(false)
        );
        assert_eq!(
            allowed(&p, "DELETE", "/api/collections/1", &caller("a", &admin)),
            Some(true)
        );
        assert_eq!(p.matching(&Method::DELETE, "/api/collections/1"), Decided::Rule(1));
    }

    #[test]
    fn a_rule_is_shadowed_only_when_an_earlier_one_covers_it_entirely() {
        let paths = |p: &[&str]| PublicPaths::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let get = [Method::GET];
        let later = rule(Some(&["GET"]), &["/api/a", "/api/b/*"], &["authenticated"], &[]);
        assert!(later.shadowed_by(None, &paths(&["/api/*"])));
        assert!(later.shadowed_by(Some(&get), &paths(&["/api/a", "/api/b/*"])));
        assert!(later.shadowed_by(None, &paths(&["/*"])));
        assert!(!later.shadowed_by(Some(&[Method::POST]), &paths(&["/api/*"])));
        assert!(!later.shadowed_by(None, &paths(&["/api/a"])), "/api/b/* is left");
        assert!(
            !later.shadowed_by(None, &paths(&["/api/b"])),
            "an exact path covers no prefix"
        );
        let any_method = rule(None, &["/api/a"], &["authenticated"], &[]);
        assert!(!any_method.shadowed_by(Some(&get), &paths(&["/api/*"])));
    }

    fn scoped<'a>(id: &'a str, a: &'a Access, scopes: &'a Scopes) -> Caller<'a> {
        Caller {
            user_id: id,
            access: Some(a),
            scopes,
        }
    }

    #[test]
    fn read_permits_only_reads_wherever_the_owner_may_go() {
        let p = Policy::new(
            vec![
                rule(None, &["/research/*"], &["group:research"], &[]),
                rule(None, &["/readers/*"], &["scope:read"], &[]),
            ],
            Fallback::Authenticated,
        );
        let read = Scopes::from_names(&["read"]);
        let member = access(Role::User, &["research"]);
        let outsider = access(Role::User, &[]);
        for (method, path, who, expected) in [
            ("GET", "/x", &member, true),
            ("HEAD", "/x", &member, true),
            ("POST", "/x", &member, false),
            ("PUT", "/x", &member, false),
            ("DELETE", "/x", &member, false),
            ("GET", "/research/a", &member, true),
            ("POST", "/research/a", &member, false),
            // The owner's groups still decide: the token is no more than its owner.
            ("GET", "/research/a", &outsider, false),
            // A rule naming `scope:read` admits it, and it still only reads.
            ("GET", "/readers/a", &outsider, true),
            ("POST", "/readers/a", &outsider, false),
        ] {
            assert_eq!(
                allowed(&p, method, path, &scoped("u", who, &read)),
                Some(expected),
                "{method} {path}"
            );
        }
        // A WebSocket handshake is not a read.
        let d = p.matching(&Method::GET, "/x");
        assert!(!p.allows(d, &scoped("u", &member, &read), Effect::of(&Method::GET, true)));
        assert!(p.allows(d, &scoped("u", &member, &Scopes::FULL), Effect::of(&Method::GET, true)));
    }

    #[test]
    fn a_custom_scope_passes_only_where_a_rule_names_it() {
        let p = Policy::new(
            vec![
                rule(Some(&["POST"]), &["/ingest/*"], &["scope:ingest"], &[]),
                rule(None, &["/docs/*"], &["authenticated"], &[]),
                rule(None, &["/both/*"], &["group:research", "scope:ingest"], &[]),
            ],
            Fallback::Authenticated,
        );
        let ingest = Scopes::from_names(&["ingest"]);
        let other = Scopes::from_names(&["export"]);
        let read = Scopes::from_names(&["read"]);
        let plain = access(Role::User, &[]);
        let yes = |m, path, s| allowed(&p, m, path, &scoped("u", &plain, s));
        assert_eq!(yes("POST", "/ingest/a", &ingest), Some(true));
        assert_eq!(yes("POST", "/ingest/a", &Scopes::FULL), Some(true));
        assert_eq!(yes("POST", "/ingest/a", &other), Some(false));
        assert_eq!(yes("POST", "/ingest/a", &read), Some(false));
        // Nowhere that does not name it: not a rule of `authenticated`, not the default, not GET.
        assert_eq!(yes("POST", "/docs/a", &ingest), Some(false));
        assert_eq!(yes("GET", "/docs/a", &ingest), Some(false));
        assert_eq!(yes("GET", "/elsewhere", &ingest), Some(false));
        assert_eq!(yes("GET", "/elsewhere", &Scopes::FULL), Some(true));
        // A rule naming people and a scope: its people, with a login or that scope's token; an
        // `ingest` token of anyone else is refused, as its owner would be.
        assert_eq!(yes("DELETE", "/both/a", &ingest), Some(false));
        assert_eq!(yes("DELETE", "/both/a", &Scopes::FULL), Some(false));
        let research = access(Role::User, &["research"]);
        let member = |s| allowed(&p, "DELETE", "/both/a", &scoped("u", &research, s));
        assert_eq!(member(&ingest), Some(true));
        assert_eq!(member(&Scopes::FULL), Some(true));
        assert_eq!(member(&other), Some(false));
        // Holding nothing (unreadable scopes) permits nothing.
        let none = Scopes::from_names::<&str>(&[]);
        assert_eq!(yes("GET", "/docs/a", &none), Some(false));
    }

    #[test]
    fn a_scope_in_deny_matches_only_its_holders() {
        let p = Policy::new(
            vec![rule(None, &["/admin/*"], &["authenticated"], &["scope:read"])],
            Fallback::Authenticated,
        );
        let plain = access(Role::User, &[]);
        let read = Scopes::from_names(&["read"]);
        assert_eq!(allowed(&p, "GET", "/admin/x", &scoped("u", &plain, &read)), Some(false));
        assert_eq!(
            allowed(&p, "GET", "/admin/x", &scoped("u", &plain, &Scopes::FULL)),
            Some(true)
        );
        assert_eq!(allowed(&p, "GET", "/other", &scoped("u", &plain, &read)), Some(true));
    }
}
