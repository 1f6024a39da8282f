//! Phase 2b, authorize: the configured [`Policy`] says whether a route is public, and whether an
//! authenticated caller may make this request within their credential's scopes; each decision is
//! counted under its rule (`authgate_policy_decisions_total{rule,decision}`). The proxy calls it,
//! and so can any other door that decides for a request (a forward-auth endpoint): match with
//! [`Authorizer::matching`], then [`Authorizer::allows`].
//!
//! The rule this module keeps: a caller the policy refuses gets 403 and the request is never
//! forwarded; the caller's role and groups are read (from the authenticator's memory) only for a
//! rule that names a role or a group. Scopes are enforced with rules or without: without
//! `[[policy.rules]]` (and with the default default) every authenticated caller is allowed within
//! their scopes, and a credential holding `full` (every JWT and session) is let through at once,
//! with no path matched, no allocation and nothing counted.

use prometheus_client::metrics::counter::Counter;

use crate::auth::Authenticator;
use crate::auth::principal::Principal;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::policy::{Caller, Decided, Effect, Policy, Verdict};

/// The policy and its counters, made once at start-up.
pub struct Authorizer {
    pub policy: Policy,
    /// No rule and the default default: only scopes can refuse.
    open: bool,
    /// `[public, allow, deny]` per [`Decided`], in the order of `slot`.
    counters: Vec<[Counter; 3]>,
}

fn slot(d: Decided) -> usize {
    match d {
        Decided::PublicPaths => 0,
        Decided::Default => 1,
        Decided::Rule(i) => 2 + i,
    }
}

impl Authorizer {
    pub fn new(policy: Policy, metrics: &Metrics) -> Authorizer {
        let open = policy.is_open();
        // `all_decided` runs in `slot` order.
        let counters = policy
            .all_decided()
            .map(|d| {
                if open && d != Decided::Default {
                    // Without rules only the default decides (for scoped credentials): the rest are
                    // never counted, so not registered either.
                    Verdict::ALL.map(|_| Counter::default())
                } else {
                    Verdict::ALL.map(|v| metrics.policy_decision(policy.label(d), v.as_str()))
                }
            })
            .collect();
        Authorizer { policy, open, counters }
    }

    /// Whether there is no policy to speak of (no rule, default `authenticated`): nothing is public
    /// beyond `auth.public_paths`, and only a credential's scopes can refuse.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// What decides a request to `path`: the first matching rule, else the default. Without rules,
    /// the default, at no cost.
    pub fn matching(&self, method: &http::Method, path: &str) -> Decided {
        if self.open {
            Decided::Default
        } else {
            self.policy.matching(method, path)
        }
    }

    /// Whether this decision is one to name (in the access line) and count: every decision with
    /// rules; without them, only those about a scoped credential.
    pub fn decides(&self, principal: &Principal) -> bool {
        !self.open || !principal.scopes.is_full()
    }

    pub fn count(&self, d: Decided, v: Verdict) {
        let i = match v {
            Verdict::Public => 0,
            Verdict::Allow => 1,
            Verdict::Deny => 2,
        };
        if let Some(c) = self.counters.get(slot(d)) {
            c[i].inc();
        }
    }

    /// Whether `principal` may make the request `d` matched, doing `effect`: the rule admits its
    /// owner and the request is within the credential's scopes ([`Policy::allows`]); counted
    /// either way. 503 when their role and groups are needed and neither memory nor the store has
    /// them.
    pub async fn allows(
        &self,
        authn: &Authenticator,
        d: Decided,
        effect: Effect,
        principal: &Principal,
    ) -> Result<bool, GatewayError> {
        if !self.decides(principal) {
            return Ok(true);
        }
        let access = if self.policy.needs_access(d) {
            // Boxed: the store read is rare, and its future large.
            Some(Box::pin(authn.access(&principal.user_id)).await?)
        } else {
            None
        };
        let caller = Caller {
            user_id: principal.user_id.as_str(),
            access: access.as_deref(),
            scopes: &principal.scopes,
        };
        let allowed = self.policy.allows(d, &caller, effect);
        self.count(d, if allowed { Verdict::Allow } else { Verdict::Deny });
        Ok(allowed)
    }
}
