//! A 256 MiB upload streams through the gateway with bounded memory.
//!
//! The bound is on the RSS of the whole test process, so this test has a binary of its own: in a
//! shared one, a neighbour starting a gateway (each start hashes a 19 MiB argon2 dummy password)
//! would count as growth here.

mod common;

use std::time::Duration;

use common::*;
use http_body_util::BodyExt;

#[tokio::test]
async fn large_upload_streams_with_bounded_memory() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&up.url()).await;
    let t = token("u1");
    let client = gw.client();
    // Warm up TLS, the pool and the allocator before the baseline.
    let warm = client
        .call(
            "POST",
            "/upload",
            &[("authorization", &bearer(&t))],
            Some(vec![0; 1 << 20]),
        )
        .await;
    assert_eq!(warm.status, 200);
    let total: u64 = 256 << 20;
    let baseline = rss_kib();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let req = client
        .request("POST", "/upload")
        .header("authorization", bearer(&t))
        .header("content-length", total.to_string())
        .body(BodyExt::boxed(Generated::new(total, 64 * 1024)))
        .unwrap();
    let resp = client.send(req).await;
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    sampler.abort();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["received"], total);
    assert_eq!(up.seen.last().body_len, total);
    let growth_mib = (peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(baseline)) as f64 / 1024.0;
    println!("256 MiB upload: RSS growth {growth_mib:.1} MiB (client, gateway and upstream in one process)");
    assert!(growth_mib < 32.0, "RSS grew {growth_mib:.1} MiB");
}
