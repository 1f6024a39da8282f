//! Phase 2b, authorize: the configured [`Policy`] says whether a route is public, and whether an
//! authenticated caller may make this request; each decision is counted under its rule
//! (`authgate_policy_decisions_total{rule,decision}`).
//!
//! The rule this module keeps: a caller the policy refuses gets 403 and the request is never
//! forwarded; the caller's role and groups are read (from the authenticator's memory) only for a
//! rule that names a role or a group. Without `[[policy.rules]]` and with the default default,
//! the pipeline holds no `Authorizer` at all, so the request path pays nothing.

use prometheus_client::metrics::counter::Counter;

use crate::auth::Authenticator;
use crate::auth::principal::Principal;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::policy::{Caller, Decided, FULL, Policy, Verdict};

/// The policy and its counters, made once at start-up.
pub struct Authorizer {
    pub policy: Policy,
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
    /// `None` when the policy changes nothing (no rule, default `authenticated`).
    pub fn new(policy: Policy, metrics: &Metrics) -> Option<Authorizer> {
        if policy.is_open() {
            return None;
        }
        // `all_decided` runs in `slot` order.
        let counters = policy
            .all_decided()
            .map(|d| Verdict::ALL.map(|v| metrics.policy_decision(policy.label(d), v.as_str())))
            .collect();
        Some(Authorizer { policy, counters })
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

    /// Whether `principal` may make the request `d` matched; counted either way. 503 when their
    /// role and groups are needed and neither memory nor the store has them.
    pub async fn allows(&self, authn: &Authenticator, d: Decided, principal: &Principal) -> Result<bool, GatewayError> {
        let access = if self.policy.needs_access(d) {
            Some(authn.access(&principal.user_id).await?)
        } else {
            None
        };
        let caller = Caller {
            user_id: principal.user_id.as_str(),
            access: access.as_deref(),
            scopes: FULL,
        };
        let allowed = self.policy.allows(d, &caller);
        self.count(d, if allowed { Verdict::Allow } else { Verdict::Deny });
        Ok(allowed)
    }
}
