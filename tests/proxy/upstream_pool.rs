//! The upstream connection pool, against a backend written on raw TCP so that each test decides
//! exactly how the backend ends its connections: kept alive, closed silently after an answer,
//! `Connection: close`, or a body the client walks away from.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the raw backend treats a connection after answering.
#[derive(Clone, Copy, PartialEq)]
enum After {
    KeepAlive,
    /// Close 20 ms after answering, without saying so (a backend's keep-alive timeout): the
    /// connection the gateway pooled goes stale.
    SilentClose,
    /// Answer with `Connection: close` and close.
    AnnouncedClose,
}

struct RawBackend {
    url: String,
    connections: Arc<AtomicUsize>,
    /// Connections that ended (the gateway closed them, or the backend did).
    ended: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

/// A backend that answers each request on a connection with `<n>:<target>:<x-user-id>`, where n
/// counts that connection's requests; `/big` gets 4 MiB instead, and `/empty` a 204.
async fn raw_backend(after: After) -> RawBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (conns, done, reqs) = (connections.clone(), ended.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            conns.fetch_add(1, Ordering::SeqCst);
            let (done, reqs) = (done.clone(), reqs.clone());
            tokio::spawn(async move {
                serve_raw(stream, after, reqs).await;
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    RawBackend {
        url,
        connections,
        ended,
        requests,
    }
}

async fn serve_raw(mut stream: TcpStream, after: After, requests: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                break head;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        n += 1;
        requests.fetch_add(1, Ordering::SeqCst);
        let head_only = head.starts_with("HEAD ");
        let target = head.split(' ').nth(1).unwrap_or("").to_owned();
        let user = head
            .lines()
            .find_map(|l| l.strip_prefix("x-user-id: "))
            .unwrap_or("-")
            .to_owned();
        let close = if after == After::AnnouncedClose {
            "connection: close\r\n"
        } else {
            ""
        };
        let ok = match target.as_str() {
            "/big" => {
                let body = vec![b'x'; 4 << 20];
                let head = format!("HTTP/1.1 200 OK\r\n{close}content-length: {}\r\n\r\n", body.len());
                stream.write_all(head.as_bytes()).await.is_ok() && stream.write_all(&body).await.is_ok()
            }
            "/empty" => stream
                .write_all(format!("HTTP/1.1 204 No Content\r\n{close}\r\n").as_bytes())
                .await
                .is_ok(),
            _ => {
                let mut body = format!("{n}:{target}:{user}");
                let head = format!("HTTP/1.1 200 OK\r\n{close}content-length: {}\r\n\r\n", body.len());
                if head_only {
                    body.clear();
                }
                stream.write_all(format!("{head}{body}").as_bytes()).await.is_ok()
            }
        };
        if after == After::SilentClose {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !ok || after != After::KeepAlive {
            return;
        }
    }
}

async fn get(gw: &TestGateway, method: &str, path: &str, user: &str) -> (u16, String) {
    let r = gw
        .client()
        .call(method, path, &[("authorization", &bearer(&token(user)))], None)
        .await;
    (r.status, r.text())
}

#[tokio::test]
async fn one_kept_alive_connection_carries_sequential_requests() {
    let backend = raw_backend(After::KeepAlive).await;
    let gw = TestGateway::start(&backend.url).await;
    for i in 1..=5 {
        let (status, body) = get(&gw, "GET", &format!("/r{i}"), &format!("u{i}")).await;
        assert_eq!(status, 200);
        // The n-th request on the one backend connection, with its own path and user.
        assert_eq!(body, format!("{i}:/r{i}:u{i}"));
    }
    // Bodiless answers (HEAD, 204) give the connection back too.
    let (status, _) = get(&gw, "HEAD", "/h", "u").await;
    assert_eq!(status, 200);
    let (status, _) = get(&gw, "GET", "/empty", "u").await;
    assert_eq!(status, 204);
    let (_, body) = get(&gw, "GET", "/after", "u9").await;
    assert_eq!(body, "8:/after:u9");
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout_with_no_traffic() {
    let backend = raw_backend(After::KeepAlive).await;
    let gw = TestGateway::builder(&backend.url)
        .extra("[upstream]\npool_idle_timeout = \"1s\"\n")
        .start()
        .await;
    // Two requests at once: two connections, both pooled afterwards.
    let (a, b) = tokio::join!(get(&gw, "GET", "/big", "u1"), get(&gw, "GET", "/big", "u2"));
    assert_eq!((a.0, b.0), (200, 200));
    let opened = backend.connections.load(Ordering::SeqCst);
    assert!((1..=2).contains(&opened), "{opened}");
    // Within the timeout they stay open.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.ended.load(Ordering::SeqCst), 0);
    // After it, with no request to prompt it, the gateway closes them.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while backend.ended.load(Ordering::SeqCst) < opened {
        assert!(
            std::time::Instant::now() < deadline,
            "idle connections still open after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backend.ended.load(Ordering::SeqCst), opened);
    // And the next request opens a fresh one.
    let (status, body) = get(&gw, "GET", "/again", "u3").await;
    assert_eq!((status, body.as_str()), (200, "1:/again:u3"));
    assert_eq!(backend.connections.load(Ordering::SeqCst), opened + 1);
}

#[tokio::test]
async fn a_connection_the_backend_closed_is_never_reused() {
    for after in [After::SilentClose, After::AnnouncedClose] {
        let backend = raw_backend(after).await;
        let gw = TestGateway::start(&backend.url).await;
        for i in 1..=5 {
            let (status, body) = get(&gw, "GET", &format!("/r{i}"), "u").await;
            assert_eq!(status, 200, "request {i}: {body}");
            assert_eq!(body, format!("1:/r{i}:u"));
            // The next request comes after the backend has closed the connection.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(backend.connections.load(Ordering::SeqCst), 5);
        assert_eq!(backend.requests.load(Ordering::SeqCst), 5);
    }
}

#[tokio::test]
async fn a_response_the_client_abandons_does_not_leak_into_the_next_one() {
    let backend = raw_backend(After::KeepAlive).await;
    let gw = TestGateway::start(&backend.url).await;
    // Read the head of a 4 MiB answer and a few bytes, then drop the client connection.
    let client = gw.client();
    let req = client
        .request("GET", "/big")
        .header("authorization", bearer(&token("u")))
        .body(boxed(http_body_util::Empty::new()))
        .unwrap();
    let resp = client.send(req).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    drop(body);
    // Every later request gets its own answer, never the rest of the abandoned body.
    for i in 1..=3 {
        let (status, text) = get(&gw, "GET", &format!("/next{i}"), "v").await;
        assert_eq!(status, 200);
        assert!(
            text.ends_with(&format!(":/next{i}:v")),
            "{i}: {}",
            &text[..text.len().min(80)]
        );
    }
    // The abandoned connection was closed rather than pooled.
    assert!(backend.connections.load(Ordering::SeqCst) >= 2);
}
