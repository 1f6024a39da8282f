//! Benchmark: login latency, and the proxied p99 with and without 20 concurrent logins.
//!
//! `cargo bench --bench login_load` prints the figures. The gateway runs on its own runtime
//! (`BENCH_GATEWAY_THREADS`, default 2 workers), the upstream and the load generator on another.
//! Proxied load is closed-loop over TLS keep-alive connections, with a valid JWT on each request.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use http_body_util::BodyExt;
use serde_json::json;

const PASSWORD: &str = "benchmark password";
const PROXY_CONNECTIONS: usize = 4;
const PHASE: Duration = Duration::from_secs(6);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// One keep-alive TLS connection sending GETs until `stop`, one every `every` (or back to back when
/// `None`); returns per-request latencies. When the loop falls behind schedule, latency is measured
/// from the scheduled send time, so a stall also counts against the requests it delayed.
async fn proxy_loop(
    ca: std::path::PathBuf,
    addr: std::net::SocketAddr,
    token: String,
    stop: Arc<AtomicBool>,
    every: Option<Duration>,
) -> Vec<Duration> {
    let tls = tls_connect(&ca, addr, false).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::with_capacity(50_000);
    let auth = bearer(&token);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(every) = every {
            next += every;
            tokio::time::sleep_until(next.into()).await;
        }
        // Timer wake-ups are up to ~1 ms late; only a loop more than 2 ms behind schedule (a real
        // stall) is charged from the scheduled time.
        let woke = Instant::now();
        let scheduled = if every.is_some() && woke.duration_since(next) > Duration::from_millis(2) {
            next
        } else {
            woke
        };
        let req = http::Request::get("/api/data")
            .header("host", "localhost")
            .header("authorization", &auth)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
        out.push(scheduled.elapsed());
    }
    out
}

async fn login(client: &Client, user: &str) -> (u16, Duration) {
    let body = json!({"username": user, "password": PASSWORD}).to_string().into_bytes();
    let t = Instant::now();
    let r = client
        .call(
            "POST",
            "/api/auth/login",
            &[("content-type", "application/json")],
            Some(body),
        )
        .await;
    (r.status, t.elapsed())
}

async fn phase(
    gw_ca: &std::path::Path,
    addr: std::net::SocketAddr,
    token: &str,
    logins: usize,
    rate: Option<u32>,
) -> (Vec<Duration>, Vec<Duration>) {
    let every = rate.map(|r| Duration::from_secs_f64(PROXY_CONNECTIONS as f64 / f64::from(r)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut proxies = Vec::new();
    for _ in 0..PROXY_CONNECTIONS {
        proxies.push(tokio::spawn(proxy_loop(
            gw_ca.to_owned(),
            addr,
            token.to_owned(),
            stop.clone(),
            every,
        )));
    }
    let mut loginers = Vec::new();
    for i in 0..logins {
        let (ca, stop) = (gw_ca.to_owned(), stop.clone());
        loginers.push(tokio::spawn(async move {
            let client = Client::new(&ca, addr, false);
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, d) = login(&client, &format!("bench{}", i % 4)).await;
                assert_eq!(status, 200);
                lat.push(d);
            }
            lat
        }));
    }
    tokio::time::sleep(PHASE).await;
    stop.store(true, Ordering::Relaxed);
    let mut proxied = Vec::new();
    for p in proxies {
        proxied.extend(p.await.unwrap());
    }
    let mut login_lat = Vec::new();
    for l in loginers {
        login_lat.extend(l.await.unwrap());
    }
    proxied.sort();
    login_lat.sort();
    (proxied, login_lat)
}

fn main() {
    let threads: usize = std::env::var("BENCH_GATEWAY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let gateway_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let up = load_rt.block_on(TestUpstream::start());
    let extra = std::env::var("BENCH_EXTRA_TOML").unwrap_or_default();
    // Plenty of headroom in the limiter: the benchmark logs in thousands of times from one IP.
    let extra = format!("[login]\nmax_failures_per_ip = 1000000\nmax_failures_per_account = 1000000\n{extra}");
    let gw = gateway_rt.block_on(TestGateway::builder(&up.url()).extra(&extra).start());
    let (ca, addr) = (gw.ca.clone(), gw.addr);

    load_rt.block_on(async {
        let client = Client::new(&ca, addr, false);
        for i in 0..4 {
            let body = json!({"username": format!("bench{i}"), "password": PASSWORD, "email": "b@example.com"});
            let r = client.call("POST", "/api/auth/register", &[("content-type", "application/json")], Some(body.to_string().into_bytes())).await;
            assert_eq!(r.status, 201);
        }
        let r = client
            .call("POST", "/api/auth/login", &[("content-type", "application/json")], Some(json!({"username": "bench0", "password": PASSWORD}).to_string().into_bytes()))
            .await;
        let token = r.json()["access_token"].as_str().unwrap().to_owned();

        // Login latency alone (sequential).
        let mut alone = Vec::new();
        for _ in 0..30 {
            alone.push(login(&client, "bench1").await.1);
        }
        alone.sort();

        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        println!("authgate login_load benchmark ({threads} gateway workers, {cores} cores, {PROXY_CONNECTIONS} proxied connections)");
        println!("login latency, alone:            median {:.1} ms  (n={})", ms(percentile(&alone, 0.5)), alone.len());

        let _ = phase(&ca, addr, &token, 0, None).await; // warm-up
        let rate: u32 = std::env::var("BENCH_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
        let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        for (label, rate) in [(format!("fixed {rate} req/s"), Some(rate)), ("saturated (closed loop)".to_owned(), None)] {
            println!("-- proxied load: {label}, {rounds} rounds of {}s per phase", PHASE.as_secs());
            let (mut q99s, mut b99s, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for round in 1..=rounds {
                let (quiet, _) = phase(&ca, addr, &token, 0, rate).await;
                let (busy, logins) = phase(&ca, addr, &token, 20, rate).await;
                let (q99, b99) = (percentile(&quiet, 0.99), percentile(&busy, 0.99));
                println!(
                    "   round {round}: no logins {:>6.0} req/s p99 {:.2} ms | 20 logins {:>6.0} req/s p99 {:.2} ms (login median {:.0} ms, {} done) | ratio {:.2}",
                    quiet.len() as f64 / PHASE.as_secs_f64(),
                    ms(q99),
                    busy.len() as f64 / PHASE.as_secs_f64(),
                    ms(b99),
                    ms(percentile(&logins, 0.5)),
                    logins.len(),
                    b99.as_secs_f64() / q99.as_secs_f64()
                );
                q99s.push(ms(q99));
                b99s.push(ms(b99));
                ratios.push(b99.as_secs_f64() / q99.as_secs_f64());
            }
            let ratio = median(ratios);
            println!(
                "   median: p99 {:.2} ms without, {:.2} ms with logins; ratio {ratio:.2} (target <= 2.00: {})",
                median(q99s),
                median(b99s),
                if ratio <= 2.0 { "met" } else { "NOT met" }
            );
        }
    });
    drop(gw);
}
