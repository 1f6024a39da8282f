//! Logging set-up: tracing to stderr, human-readable or JSON lines, filtered by `log.level`
//! (or `RUST_LOG` when set). No code in authgate logs a token, secret or password at any level.
//!
//! Audit events (target `authgate::audit`: registrations, logins, tokens, logouts, password
//! changes) are always written as JSON lines, whatever `log.format` and `log.level` say, so that a
//! collector can keep them apart from the operational log.

use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// The target every audit event is logged under.
pub const AUDIT: &str = "authgate::audit";

/// Install the global subscriber. Safe to call more than once (later calls are ignored).
pub fn init(log: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        // rustls warns on every handshake whose SNI is an IP address (a client's choice): one line
        // per connection would let any client flood the log, so only its errors are kept.
        .unwrap_or_else(|| EnvFilter::new(format!("{},rustls=error", log.level)));
    let is_audit = |m: &tracing::Metadata<'_>| m.target() == AUDIT;
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let operational = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let operational = match log.format {
        LogFormat::Json => operational.json().flatten_event(true).with_current_span(false).boxed(),
        LogFormat::Text => operational.boxed(),
    }
    .with_filter(filter.and(filter_fn(move |m| !is_audit(m))));
    let audit = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_filter(filter_fn(is_audit));
    let _ = tracing_subscriber::registry().with(operational).with(audit).try_init();
}
