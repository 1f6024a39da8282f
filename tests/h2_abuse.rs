//! The adversarial suite, part 3: HTTP/2 abuse against a live gateway (rapid reset, frame floods,
//! malformed pseudo-headers). Every test asserts what the backend received, or that it received
//! nothing.
//!
//! Two tests bound the process's RSS growth. They share the process with every other test of this
//! binary, so the tests here run one at a time: a neighbour's allocations would count as theirs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, MutexGuard};

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A gateway and its backend (the common [`common::pair`]), and the turn to use them alone.
async fn pair(extra: &str) -> (MutexGuard<'static, ()>, TestUpstream, TestGateway) {
    let turn = ONE_AT_A_TIME.lock().await;
    let (up, gw) = common::pair(extra).await;
    (turn, up, gw)
}

#[tokio::test]
async fn h2_rapid_reset_is_answered_with_goaway_and_the_gateway_stays_healthy() {
    let (_turn, _up, gw) = pair("").await;
    let t = token("u");
    let before = rss_kib();
    let tls = tls_connect(&gw.ca, gw.addr, true).await;
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    let conn_task = tokio::spawn(conn);
    let mut client = client;
    let started = Instant::now();
    let mut sent = 0;
    // CVE-2023-44487: open streams and reset them at once, as fast as the connection allows.
    for i in 0..5000 {
        client = match tokio::time::timeout(Duration::from_secs(2), client.ready()).await {
            Ok(Ok(c)) => c,
            _ => break,
        };
        let req = http::Request::get(format!("https://localhost/r{i}"))
            .header("authorization", bearer(&t))
            .body(())
            .unwrap();
        match client.send_request(req, true) {
            // Dropping the response future resets the stream (RST_STREAM CANCEL).
            Ok((response, _)) => drop(response),
            Err(_) => break,
        }
        sent += 1;
    }
    // The server ends the abusive connection (GOAWAY) instead of serving it forever.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn_task)
        .await
        .expect("the connection was still open after the rapid resets")
        .unwrap();
    println!(
        "rapid reset: {sent} streams queued; connection ended after {:?}: {ended:?}",
        started.elapsed()
    );
    let err = ended.expect_err("the server ended the connection cleanly instead of refusing the abuse");
    // Either the GOAWAY is read, or the server has already dropped the connection while the
    // client was still writing resets (broken pipe / reset): both are the gateway refusing.
    assert!(
        (err.is_go_away() && err.is_remote()) || err.is_io(),
        "unexpected end: {err:?}"
    );
    // Others are still served, and memory stayed bounded.
    let r = gw.h2_client().get("/x", &[("authorization", &bearer(&t))]).await;
    assert_eq!(r.status, 200);
    let growth = rss_kib().saturating_sub(before) as f64 / 1024.0;
    println!("rapid reset: RSS growth {growth:.1} MiB");
    assert!(growth < 64.0, "RSS grew {growth:.1} MiB");
}

/// Write `frames` copies of `one` (stopping when the server stops taking them), then read until the
/// server closes; returns the frame types seen and whether the connection was closed.
async fn flood(gw: &TestGateway, prelude: &[u8], one: &[u8], frames: usize) -> (Vec<u8>, bool) {
    let tls = h2_raw(gw).await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let reader = tokio::spawn(async move { read_frames(&mut rd, Duration::from_secs(2)).await });
    let _ = wr.write_all(prelude).await;
    let batch: Vec<u8> = one.repeat(256);
    for _ in 0..frames / 256 {
        match tokio::time::timeout(Duration::from_secs(3), wr.write_all(&batch)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    tokio::time::timeout(Duration::from_secs(15), reader)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn h2_frame_floods_leave_memory_bounded_and_continuation_floods_are_cut_off() {
    let (_turn, up, gw) = pair("").await;
    let before = rss_kib();
    const GOAWAY: u8 = 7;
    // PING and SETTINGS floods: 200k frames each, whose ACKs are never read. The connection
    // watcher counts control frames: past server.h2_control_frames the abuser is sent GOAWAY and
    // the connection is closed.
    let ping = frame(6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let settings = frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]);
    for (name, control) in [("PING", ping), ("SETTINGS", settings)] {
        let (seen, closed) = flood(&gw, &[], &control, 200_000).await;
        println!(
            "{name} flood: closed={closed}, GOAWAY={}, frames answered={}",
            seen.contains(&GOAWAY),
            seen.len()
        );
        assert!(closed, "{name} flood: connection left open");
    }
    // CONTINUATION flood: a header block that never ends.
    let mut block = vec![0x82, 0x87, 0x84];
    block.extend_from_slice(&[0x40, 0x03, b'x', b'-', b'a', 0x7f, 0x00]);
    block.extend(std::iter::repeat_n(b'a', 127));
    let headers = frame(1, 0x1, 1, &block);
    let cont = frame(
        9,
        0,
        1,
        &[
            0x40, 0x03, b'x', b'-', b'b', 0x10, b'b', b'b', b'b', b'b', b'b', b'b', b'b', b'b', b'b', b'b', b'b', b'b',
            b'b', b'b', b'b', b'b',
        ],
    );
    let (seen, closed) = flood(&gw, &headers, &cont, 100_000).await;
    println!("CONTINUATION flood: closed={closed}, GOAWAY={}", seen.contains(&GOAWAY));
    assert!(closed || seen.contains(&GOAWAY), "CONTINUATION flood not cut off");

    let growth = rss_kib().saturating_sub(before) as f64 / 1024.0;
    println!("h2 floods: RSS growth {growth:.1} MiB");
    assert!(growth < 64.0, "RSS grew {growth:.1} MiB");
    assert_eq!(up.seen.count(), 0);
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("authgate_h2_floods_total") && !l.ends_with(" 0")),
        "flood counter unchanged"
    );
    // Still serving.
    assert_eq!(
        gw.h2_client()
            .get("/x", &[("authorization", &bearer(&token("u")))])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_ping_flood_under_the_budget_is_answered_and_one_over_it_gets_goaway() {
    let (_turn, _up, gw) = pair("[server]\nh2_control_frames = 50\n").await;
    let ping = frame(6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]);
    // 40 PINGs (plus the preface's SETTINGS): answered, connection kept.
    let mut tls = h2_raw(&gw).await;
    tls.write_all(&ping.repeat(40)).await.unwrap();
    // Reading ends after 2 s without a frame: well inside the budget's 10 s window, and long enough
    // for a loaded machine to send all 40 answers.
    let (seen, closed) = read_frames(&mut tls, Duration::from_secs(2)).await;
    assert!(!closed, "closed under the budget");
    assert_eq!(seen.iter().filter(|k| **k == 6).count(), 40, "{seen:?}");
    // 20 more within the window: over the budget.
    tls.write_all(&ping.repeat(20)).await.unwrap();
    let (seen, closed) = read_frames(&mut tls, Duration::from_secs(3)).await;
    assert!(seen.contains(&7), "no GOAWAY: {seen:?}");
    assert!(closed, "connection left open");
}

#[tokio::test]
async fn h2_malformed_pseudo_headers_are_refused_and_not_forwarded() {
    let (_turn, up, gw) = pair("").await;
    let t = token("u");
    let auth = format!("Bearer {t}");
    // Literal header field without indexing, new name (RFC 7541 §6.2.2).
    let literal = |name: &str, value: &str| {
        let mut v = vec![0x00, name.len() as u8];
        v.extend_from_slice(name.as_bytes());
        v.push(value.len() as u8);
        v.extend_from_slice(value.as_bytes());
        v
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "unknown pseudo-header",
            [
                vec![0x82, 0x87, 0x84],
                literal(":evil", "1"),
                literal("authorization", &auth),
            ]
            .concat(),
        ),
        (
            "pseudo-header after a regular one",
            [vec![0x82, 0x87], literal("authorization", &auth), vec![0x84]].concat(),
        ),
        (
            "missing :path",
            [vec![0x82, 0x87], literal("authorization", &auth)].concat(),
        ),
        (
            "duplicate :path",
            [vec![0x82, 0x87, 0x84, 0x84], literal("authorization", &auth)].concat(),
        ),
        (
            "connection-specific header",
            [
                vec![0x82, 0x87, 0x84],
                literal("connection", "keep-alive"),
                literal("authorization", &auth),
            ]
            .concat(),
        ),
    ];
    for (what, block) in cases {
        let mut tls = h2_raw(&gw).await;
        tls.write_all(&frame(1, 0x4 | 0x1, 1, &block)).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let mut buf = [0u8; 4096];
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                // RST_STREAM (3) or GOAWAY (7) answers the stream.
                if got.windows(2).any(|w| w[1] == 3 || w[1] == 7) && got.len() > 20 {
                    break;
                }
            }
        })
        .await;
        assert_eq!(up.seen.count(), 0, "{what} reached the backend");
    }
}
