//! The gateway's background tasks: revocation upkeep, the Redis revocation bus, certificate
//! reloads, and the API-token `last_used_at` writer.
//!
//! The rule this module keeps: none of them is on the request path, each stops when the gateway
//! stops, and a failure is logged and retried, never fatal: the gateway keeps serving on the last
//! good state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Gateway;
use crate::accounts::Accounts;
use crate::auth::Authenticator;
use crate::store::cache::{self, Redis};

/// Start every background task; they end once `stop` is cancelled.
pub(super) fn start(gw: &Gateway, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(maintain(
        gw.authn.clone(),
        gw.accounts.clone(),
        gw.config.store.sync_interval,
        stop.clone(),
    ))];
    gw.oidc.spawn_loading(gw.metrics.clone(), stop.clone());
    if let Some(redis) = &gw.redis {
        tasks.push(tokio::spawn(run_bus(gw.authn.clone(), redis.clone(), stop.clone())));
    }
    if let (Some(certs), Some(t)) = (gw.certs.clone(), gw.config.tls.as_ref()) {
        let (cert, interval) = (t.cert.clone(), t.reload_interval);
        tasks.push(tokio::spawn(watch_certificates(certs, cert, interval, stop.clone())));
    }
    if let Some(touched) = gw.touched.lock().ok().and_then(|mut rx| rx.take()) {
        let writer = tokio::spawn(crate::auth::record_token_use(gw.store.clone(), touched));
        // Best effort: the writer is stopped, not drained, when the gateway stops.
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            stop.cancelled().await;
            writer.abort();
        }));
    }
    tasks
}

/// Periodic upkeep: re-sync revocations from the store (changes made by other replicas or the
/// CLI), purge what has expired, sweep the login limiter.
async fn maintain(authn: Arc<Authenticator>, accounts: Arc<Accounts>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match authn.sync().await {
            Ok(synced) => tracing::debug!(full = synced.full, rows = synced.rows, "revocation sync"),
            Err(e) => tracing::warn!(error = %e, "revocation sync from the store failed; keeping the last state"),
        }
        if last_purge.elapsed() > Duration::from_secs(600) {
            last_purge = Instant::now();
            authn.purge_expired().await;
            accounts.limits().sweep();
        }
    }
}

/// Keep the bus connected: subscribe, catch up from the store, apply events; on any drop, retry.
/// Anything published while this replica was away is in the store, so after every (re)connect it
/// re-reads the store and drops cached API tokens that may have been deleted meanwhile.
async fn run_bus(authn: Arc<Authenticator>, redis: Arc<Redis>, stop: CancellationToken) {
    loop {
        if stop.is_cancelled() {
            return;
        }
        if redis.connect().await
            && let Some(pubsub) = redis.subscribe().await
        {
            authn.forget_cached_tokens();
            if let Err(e) = authn.reload().await {
                tracing::warn!(error = %e, "store re-sync after redis reconnect failed");
            }
            tracing::info!("connected to the redis revocation bus");
            redis.set_bus_connected(true);
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    () = stop.cancelled() => {
                        redis.set_bus_connected(false);
                        return;
                    }
                    msg = messages.next() => match msg {
                        Some(msg) => {
                            if let Some(event) = cache::decode(&msg) {
                                authn.apply(event);
                            }
                        }
                        None => break,
                    },
                }
            }
            redis.set_bus_connected(false);
            tracing::warn!("lost the redis revocation bus; reconnecting");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Swap in replaced certificate files for new handshakes; a broken pair keeps the old one serving.
async fn watch_certificates(
    certs: Arc<crate::tls::CertStore>,
    cert: std::path::PathBuf,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let checked = certs.clone();
        match tokio::task::spawn_blocking(move || checked.reload_if_changed()).await {
            Ok(Ok(true)) => tracing::info!(cert = %cert.display(), "certificate reloaded"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "new certificate pair rejected; still serving the previous one"),
            Err(_) => {}
        }
    }
}
