//! The benchmarks' load generator: closed-loop GETs over keep-alive TLS connections.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use super::client::tls_connect;

/// Request i's credential header, or `None` to stop that connection early.
pub type Credential = Arc<dyn Fn(usize) -> Option<(&'static str, String)> + Send + Sync>;

/// GET `path` back to back on each of `connections` keep-alive TLS connections for `phase`,
/// request i carrying `header(i)`; every answer must be 200. Returns (req/s, requests).
pub async fn closed_loop(
    ca: &Path,
    addr: SocketAddr,
    path: &'static str,
    connections: usize,
    phase: Duration,
    header: Credential,
) -> (f64, usize) {
    let (rate, latencies) = closed_loop_timed(ca, addr, path, connections, phase, header).await;
    (rate, latencies.len())
}

/// [`closed_loop`], also returning each request's latency (send to the end of the body), sorted.
pub async fn closed_loop_timed(
    ca: &Path,
    addr: SocketAddr,
    path: &'static str,
    connections: usize,
    phase: Duration,
    header: Credential,
) -> (f64, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (ca, stop, next, header) = (ca.to_owned(), stop.clone(), next.clone(), header.clone());
        tasks.push(tokio::spawn(async move {
            let tls = tls_connect(&ca, addr, false).await;
            let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut done = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let Some((name, value)) = header(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let req = http::Request::get(path)
                    .header("host", "localhost")
                    .header(name, value)
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap();
                let sent = Instant::now();
                let resp = send.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap();
                done.push(sent.elapsed());
            }
            done
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    latencies.sort_unstable();
    (latencies.len() as f64 / started.elapsed().as_secs_f64(), latencies)
}

/// The nearest-rank `q` percentile (0 < q <= 100) of ascending `sorted`, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}
