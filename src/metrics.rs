//! Prometheus metrics. Every label combination is created at start-up and held as a plain atomic
//! handle, so recording on the request path takes no lock and allocates nothing.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::AuthFailure;
use crate::routes::RouteClass;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status_class: &'static str,
    auth: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignInLabels {
    provider: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    rule: String,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: &'static str,
}

/// Where an API token lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLookup {
    /// This process's cache.
    Memory,
    /// The shared Redis cache.
    Redis,
    /// The store (both caches missed).
    Store,
    /// Nowhere: an unknown token.
    Unknown,
}

impl TokenLookup {
    const ALL: [TokenLookup; 4] = [
        TokenLookup::Memory,
        TokenLookup::Redis,
        TokenLookup::Store,
        TokenLookup::Unknown,
    ];

    fn as_str(self) -> &'static str {
        match self {
            TokenLookup::Memory => "memory_hit",
            TokenLookup::Redis => "redis_hit",
            TokenLookup::Store => "store_hit",
            TokenLookup::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// How a request's authentication ended, for the request counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// No credential was needed (public route, auth API).
    None,
    Jwt,
    ApiToken,
    Session,
    Failed,
}

impl AuthOutcome {
    const ALL: [AuthOutcome; 5] = [
        AuthOutcome::None,
        AuthOutcome::Jwt,
        AuthOutcome::ApiToken,
        AuthOutcome::Session,
        AuthOutcome::Failed,
    ];
    fn as_str(self) -> &'static str {
        match self {
            AuthOutcome::None => "none",
            AuthOutcome::Jwt => "jwt",
            AuthOutcome::ApiToken => "api_token",
            AuthOutcome::Session => "session",
            AuthOutcome::Failed => "failed",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

const ROUTES: [RouteClass; 6] = [
    RouteClass::AuthApi,
    RouteClass::Jwks,
    RouteClass::Public,
    RouteClass::Protected,
    RouteClass::Web,
    RouteClass::Verify,
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const REASONS: [AuthFailure; 14] = [
    AuthFailure::Missing,
    AuthFailure::Malformed,
    AuthFailure::TooLarge,
    AuthFailure::BadAlgorithm,
    AuthFailure::ForbiddenHeader,
    AuthFailure::UnknownKey,
    AuthFailure::BadSignature,
    AuthFailure::BadClaims,
    AuthFailure::Expired,
    AuthFailure::NotYetValid,
    AuthFailure::WrongIssuer,
    AuthFailure::WrongAudience,
    AuthFailure::Revoked,
    AuthFailure::UnknownToken,
];

fn route_index(r: RouteClass) -> usize {
    match r {
        RouteClass::AuthApi => 0,
        RouteClass::Jwks => 1,
        RouteClass::Public => 2,
        RouteClass::Protected => 3,
        RouteClass::Web => 4,
        RouteClass::Verify => 5,
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Vec<Counter>,
    /// Requests refused before a route was known (bad path, bad target).
    unrouted: Vec<Counter>,
    auth_failures: Vec<Counter>,
    pub upstream_seconds: Histogram,
    pub tls_handshake_seconds: Histogram,
    pub open_connections: Gauge,
    /// HTTP/2 connections cut for a control-frame flood (rapid reset, PING, SETTINGS).
    pub h2_floods: Counter,
    /// Client-sent identity headers removed before forwarding (a spoofing attempt, or a client
    /// that copied a backend's header).
    pub identity_headers_stripped: Counter,
    /// Revocation syncs with the store: `[full, incremental]`.
    revocation_syncs: [Counter; 2],
    /// Rows a revocation sync read (log rows, or for a full load revocations and gated users).
    pub revocation_sync_rows: Counter,
    /// Revoked `jti`s held in memory now.
    pub revocations_held: Gauge,
    /// Users whose tokens are restricted now (disabled, or a recent session-epoch move).
    pub gated_users: Gauge,
    token_lookups: Vec<Counter>,
    session_lookups: Vec<Counter>,
    oidc_sign_ins: Family<SignInLabels, Counter>,
    oidc_provider_up: Family<ProviderLabels, Gauge>,
    policy_decisions: Family<PolicyLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("authgate");
        let family = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route class, status class and auth outcome",
            family.clone(),
        );
        let mut requests = Vec::with_capacity(ROUTES.len() * 5 * AuthOutcome::ALL.len());
        for r in ROUTES {
            for s in STATUS_CLASSES {
                for a in AuthOutcome::ALL {
                    requests.push(
                        family
                            .get_or_create(&RequestLabels {
                                route: r.as_str(),
                                status_class: s,
                                auth: a.as_str(),
                            })
                            .clone(),
                    );
                }
            }
        }
        let mut unrouted = Vec::with_capacity(5);
        for s in STATUS_CLASSES {
            unrouted.push(
                family
                    .get_or_create(&RequestLabels {
                        route: "none",
                        status_class: s,
                        auth: "none",
                    })
                    .clone(),
            );
        }
        let failures = Family::<ReasonLabels, Counter>::default();
        registry.register("auth_failures", "Refused credentials, by reason", failures.clone());
        let auth_failures = REASONS
            .iter()
            .map(|r| failures.get_or_create(&ReasonLabels { reason: r.as_str() }).clone())
            .collect();

        let upstream_seconds = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "upstream_duration_seconds",
            "Time from forwarding a request to the upstream's response head",
            upstream_seconds.clone(),
        );
        let tls_handshake_seconds = Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0]);
        registry.register(
            "tls_handshake_duration_seconds",
            "Time to complete a TLS handshake",
            tls_handshake_seconds.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections now open",
            open_connections.clone(),
        );
        let h2_floods = Counter::default();
        registry.register(
            "h2_floods",
            "HTTP/2 connections sent GOAWAY for a control-frame flood",
            h2_floods.clone(),
        );
        let identity_headers_stripped = Counter::default();
        registry.register(
            "identity_headers_stripped",
            "Client-sent identity headers removed before forwarding",
            identity_headers_stripped.clone(),
        );
        let syncs = Family::<SyncLabels, Counter>::default();
        registry.register(
            "revocation_syncs",
            "Revocation syncs with the store, full loads and incremental reads of the change log",
            syncs.clone(),
        );
        let revocation_syncs = ["full", "incremental"].map(|kind| syncs.get_or_create(&SyncLabels { kind }).clone());
        let revocation_sync_rows = Counter::default();
        registry.register(
            "revocation_sync_rows",
            "Rows read by revocation syncs",
            revocation_sync_rows.clone(),
        );
        let revocations_held = Gauge::default();
        registry.register(
            "revocations_held",
            "Revoked token ids held in memory",
            revocations_held.clone(),
        );
        let gated_users = Gauge::default();
        registry.register(
            "gated_users",
            "Users whose tokens are restricted (disabled, or sessions ended within a token lifetime)",
            gated_users.clone(),
        );
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "api_token_lookups",
            "API token lookups by where they were answered (hit ratio: memory_hit / all)",
            lookups.clone(),
        );
        let token_lookups = TokenLookup::ALL
            .iter()
            .map(|l| lookups.get_or_create(&LookupLabels { result: l.as_str() }).clone())
            .collect();
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "session_lookups",
            "Browser session lookups by where they were answered (hit ratio: memory_hit / all)",
            lookups.clone(),
        );
        let session_lookups = TokenLookup::ALL
            .iter()
            .map(|l| lookups.get_or_create(&LookupLabels { result: l.as_str() }).clone())
            .collect();
        let oidc_sign_ins = Family::<SignInLabels, Counter>::default();
        registry.register(
            "oidc_sign_ins",
            "Single sign-on callbacks by provider and result (ok, refused)",
            oidc_sign_ins.clone(),
        );
        let oidc_provider_up = Family::<ProviderLabels, Gauge>::default();
        registry.register(
            "oidc_provider_up",
            "1 while a single sign-on provider's metadata and keys are loaded, else 0",
            oidc_provider_up.clone(),
        );
        let policy_decisions = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "policy_decisions",
            "Policy decisions by the rule that decided (its description or #n) and decision (public, allow, deny)",
            policy_decisions.clone(),
        );
        registry.register("store_errors", "Store calls that failed", crate::store::ERRORS.clone());
        registry.register(
            "redis_errors",
            "Redis calls that failed or timed out (the store answered instead)",
            crate::store::cache::ERRORS.clone(),
        );
        Metrics {
            registry,
            requests,
            unrouted,
            auth_failures,
            upstream_seconds,
            tls_handshake_seconds,
            open_connections,
            h2_floods,
            identity_headers_stripped,
            revocation_syncs,
            revocation_sync_rows,
            revocations_held,
            gated_users,
            token_lookups,
            session_lookups,
            oidc_sign_ins,
            oidc_provider_up,
            policy_decisions,
        }
    }

    /// The counter of one rule's decisions of one kind, made at start-up and kept by the caller
    /// (a policy's rules are known then; counting takes no lock).
    pub fn policy_decision(&self, rule: &str, decision: &'static str) -> Counter {
        self.policy_decisions
            .get_or_create(&PolicyLabels {
                rule: rule.to_owned(),
                decision,
            })
            .clone()
    }

    pub fn request(&self, route: Option<RouteClass>, status: u16, auth: AuthOutcome) {
        let s = usize::from((status / 100).clamp(1, 5)) - 1;
        match route {
            Some(r) => self.requests[(route_index(r) * 5 + s) * AuthOutcome::ALL.len() + auth.index()].inc(),
            None => self.unrouted[s].inc(),
        };
    }

    /// One revocation sync: full or incremental, and how many rows it read.
    pub fn revocation_sync(&self, full: bool, rows: u64) {
        self.revocation_syncs[usize::from(!full)].inc();
        self.revocation_sync_rows.inc_by(rows);
    }

    pub fn token_lookup(&self, at: TokenLookup) {
        if let Some(i) = TokenLookup::ALL.iter().position(|l| *l == at) {
            self.token_lookups[i].inc();
        }
    }

    /// One single sign-on callback that signed someone in, or did not.
    pub fn oidc_sign_in(&self, provider: &str, ok: bool) {
        self.oidc_sign_ins
            .get_or_create(&SignInLabels {
                provider: provider.to_owned(),
                result: if ok { "ok" } else { "refused" },
            })
            .inc();
    }

    /// Whether a provider's metadata and keys are loaded.
    pub fn oidc_provider_up(&self, provider: &str, up: bool) {
        self.oidc_provider_up
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
            })
            .set(i64::from(up));
    }

    pub fn session_lookup(&self, at: TokenLookup) {
        if let Some(i) = TokenLookup::ALL.iter().position(|l| *l == at) {
            self.session_lookups[i].inc();
        }
    }

    pub fn auth_failure(&self, reason: AuthFailure) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.auth_failures[i].inc();
        }
    }

    /// Register more metrics (store, cache) before serving starts.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_labels() {
        let m = Metrics::new();
        m.request(Some(RouteClass::Protected), 401, AuthOutcome::Failed);
        m.request(Some(RouteClass::Protected), 200, AuthOutcome::Jwt);
        m.request(None, 400, AuthOutcome::None);
        m.auth_failure(AuthFailure::Expired);
        let text = m.render();
        assert!(
            text.contains(r#"authgate_requests_total{route="protected",status_class="4xx",auth="failed"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"authgate_requests_total{route="protected",status_class="2xx",auth="jwt"} 1"#));
        assert!(text.contains(r#"authgate_requests_total{route="none",status_class="4xx",auth="none"} 1"#));
        assert!(text.contains(r#"authgate_auth_failures_total{reason="expired"} 1"#));
    }
}
