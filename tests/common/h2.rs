//! Raw HTTP/2 for abuse tests: frames built by hand (RFC 9113 §4.1) on a TLS connection with ALPN
//! h2, and a reader that reports which frame types came back.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::tls_connect;
use super::gateway::TestGateway;

/// One HTTP/2 frame (RFC 9113 §4.1).
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A raw h2 connection: TLS with ALPN h2, the client preface and an empty SETTINGS frame sent.
pub async fn h2_raw(gw: &TestGateway) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = tls_connect(&gw.ca, gw.addr, true).await;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    tls.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    tls
}

/// Frame types read until the server closes or `wait` passes with nothing new.
pub async fn read_frames(tls: &mut (impl tokio::io::AsyncRead + Unpin), wait: Duration) -> (Vec<u8>, bool) {
    let (mut seen, mut buf, mut chunk) = (Vec::new(), Vec::new(), [0u8; 16384]);
    loop {
        match tokio::time::timeout(wait, tls.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, true),
            Err(_) => return (seen, false),
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                while buf.len() >= 9 {
                    let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                    if buf.len() < 9 + len {
                        break;
                    }
                    seen.push(buf[3]);
                    buf.drain(..9 + len);
                }
            }
        }
    }
}
