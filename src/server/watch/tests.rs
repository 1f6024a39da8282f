//! The watcher's framing, flood and idle rules, fed byte streams directly.

use super::*;

/// Feed `stream` to a fresh watcher in pieces of `step` bytes; the state it ends in.
fn run(stream: &[u8], step: usize) -> String {
    let watch = Watch::new();
    let mut follow = Follow::new(1000);
    for piece in stream.chunks(step) {
        follow.feed(piece, &watch);
    }
    format!("{:?}", follow.state)
}

/// The heads (of `heads` served) the service would refuse.
fn refused_indexes(stream: &[u8], step: usize, heads: u64) -> Vec<u64> {
    let watch = Watch::new();
    let mut follow = Follow::new(1000);
    for piece in stream.chunks(step) {
        follow.feed(piece, &watch);
    }
    (0..heads).filter(|_| watch.refuse_next_head()).collect()
}

const PIPELINE: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: t\r\n\r\n\
GET /d HTTP/1.1\r\nHost: x\r\nX-Body: Content-Length: 3\r\n\r\n";

#[test]
fn honest_pipelines_are_followed_at_any_read_size() {
    for step in [1, 2, 3, 7, 64, PIPELINE.len()] {
        assert_eq!(refused_indexes(PIPELINE, step, 4), Vec::<u64>::new(), "step {step}");
        assert_eq!(run(PIPELINE, step), "Head", "step {step}");
    }
}

#[test]
fn a_body_that_looks_like_a_head_is_not_judged() {
    let body = b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut stream = format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    stream.extend_from_slice(body);
    stream.extend_from_slice(b"GET /b HTTP/1.1\r\n\r\n");
    assert_eq!(refused_indexes(&stream, 5, 2), Vec::<u64>::new());
}

#[test]
fn conflicting_framing_is_refused_from_its_own_head_on() {
    let bad = [
        "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: +5\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: identity\r\n",
    ];
    for headers in bad {
        let stream = format!("GET /ok HTTP/1.1\r\n\r\nPOST /x HTTP/1.1\r\n{headers}\r\n0\r\n\r\n");
        for step in [1, 4, stream.len()] {
            assert_eq!(
                refused_indexes(stream.as_bytes(), step, 2),
                vec![1],
                "{headers:?} step {step}"
            );
        }
    }
}

#[test]
fn the_h2_preface_switches_to_frames_and_counts_control_frames() {
    let mut stream = PREFACE.to_vec();
    let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let ping_ack = [0, 0, 8, 6, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    for _ in 0..10 {
        stream.extend_from_slice(&ping);
        stream.extend_from_slice(&ping_ack);
    }
    for (budget, flooded) in [(10, false), (9, true)] {
        for step in [1, 5, stream.len()] {
            let watch = Watch::new();
            let mut follow = Follow::new(budget);
            for piece in stream.chunks(step) {
                follow.feed(piece, &watch);
            }
            assert_eq!(watch.flooded(), flooded, "budget {budget} step {step}");
        }
    }
}

#[test]
fn upgrades_and_garbage_stop_the_watch() {
    assert_eq!(
        run(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x85junk", 3),
        "Off"
    );
    assert_eq!(run(b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n", 64), "Off");
}

#[test]
fn the_watch_never_stops_silently_later_heads_are_refused() {
    let next = b"POST /b HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let long_ext = format!("5;x={}\r\nhello\r\n0\r\n\r\n", "a".repeat(MAX_LINE + 10));
    let long_trailer = format!("0\r\nX-Pad: {}\r\n\r\n", "a".repeat(MAX_LINE + 10));
    for (first, refused) in [
        // An upgrade that does not switch: the head itself is served, the next one is not.
        ("GET /ws HTTP/1.1\r\nUpgrade: h2c\r\n\r\n".to_owned(), vec![1]),
        // A chunk extension or a trailer line longer than the watcher follows.
        (
            format!("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{long_ext}"),
            vec![1],
        ),
        (
            format!("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{long_trailer}"),
            vec![1],
        ),
        // A head httparse refuses (hyper refuses it too).
        ("GET /x HTTP/1.1\r\nBad Header\r\n\r\n".to_owned(), vec![0, 1]),
    ] {
        let mut stream = first.clone().into_bytes();
        stream.extend_from_slice(next);
        for step in [1, 7, 4096] {
            assert_eq!(refused_indexes(&stream, step, 2), refused, "{first:.60} step {step}");
        }
    }
    // A head too long to follow.
    let mut huge = b"GET /x HTTP/1.1\r\nX-Big: ".to_vec();
    huge.resize(MAX_HEAD + 10, b'a');
    assert_eq!(refused_indexes(&huge, 65536, 1), vec![0]);
}

#[test]
fn idle_waits_for_bodies_in_flight() {
    let watch = Watch::new();
    assert!(watch.is_idle(Duration::ZERO));
    let busy = watch.begin();
    assert!(!watch.is_idle(Duration::ZERO));
    drop(busy);
    assert!(watch.is_idle(Duration::ZERO));
    assert!(!watch.is_idle(Duration::from_secs(5)));
}
