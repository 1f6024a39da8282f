//! A watcher under hyper on every client connection. It sees the bytes hyper reads, never changes
//! them, and reports what hyper does not:
//!
//! - HTTP/1.1 framing that hyper tolerates but an ingress refuses: `Content-Length` together with
//!   `Transfer-Encoding`, more than one of either, a `Content-Length` that is not plain digits, or a
//!   `Transfer-Encoding` other than a single `chunked`. The request is answered 400 and the
//!   connection closed before the proxy sees it.
//! - HTTP/2 control-frame floods: PING, SETTINGS, RST_STREAM (rapid reset, CVE-2023-44487),
//!   PRIORITY and empty DATA frames past `server.h2_control_frames` in a 10 s window. The abuser is
//!   sent GOAWAY, no more of its bytes are read, and the connection is closed.
//! - When the client last sent a request (any byte on HTTP/1.1, a HEADERS or DATA frame on HTTP/2,
//!   never a PING answer), for `server.idle_timeout`.
//!
//! It follows message boundaries (heads, `Content-Length` and chunked bodies, HTTP/2 frame headers)
//! and stops watching at anything it does not follow: an upgrade, a line longer than it follows,
//! or bytes hyper will refuse itself. It never stops silently: every later HTTP/1 head on that
//! connection is refused.
//!
//! It also closes the connection gracefully (nginx's lingering close): when hyper shuts the
//! connection down, the write side is shut first, and what the client still sends (a body the
//! gateway refused early) is read and dropped for a bounded time and number of bytes, so the
//! kernel does not answer it with a reset that destroys the gateway's answer unread.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A head longer than this is hyper's to refuse (431); the watcher stops following.
const MAX_HEAD: usize = 256 * 1024;
const MAX_HEADERS: usize = 128;
/// A chunk-size or trailer line longer than this is not something a client sends honestly.
const MAX_LINE: usize = 4096;
const FLOOD_WINDOW_MS: u64 = 10_000;
const NONE: u64 = u64::MAX;

/// What one connection's watcher and its request handlers share.
pub struct Watch {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last request activity.
    last_active: AtomicU64,
    /// Index of the first HTTP/1 head to refuse (`NONE` if none).
    refuse_from: AtomicU64,
    /// HTTP/1 heads handed to the service so far.
    served: AtomicU64,
    in_flight: AtomicUsize,
    flooded: AtomicBool,
    /// The watcher stopped following an HTTP/1 connection at an `Upgrade` or CONNECT head.
    unfollowed: AtomicBool,
    /// The connection switched protocols: it is a tunnel now, and closes without lingering.
    switched: AtomicBool,
    alarm: Notify,
}

impl Watch {
    pub fn new() -> Arc<Watch> {
        Arc::new(Watch {
            epoch: Instant::now(),
            last_active: AtomicU64::new(0),
            refuse_from: AtomicU64::new(NONE),
            served: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            flooded: AtomicBool::new(false),
            unfollowed: AtomicBool::new(false),
            switched: AtomicBool::new(false),
            alarm: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_active.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Called by the service for each HTTP/1 request, in order: whether its head must be refused.
    pub fn refuse_next_head(&self) -> bool {
        let index = self.served.fetch_add(1, Ordering::Relaxed);
        index >= self.refuse_from.load(Ordering::Relaxed)
    }

    /// A request is in progress until the returned guard (kept in the response body) is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    pub fn flooded(&self) -> bool {
        self.flooded.load(Ordering::Relaxed)
    }

    /// Whether the watcher stopped following this HTTP/1 connection at an `Upgrade` or CONNECT
    /// head (it has always read a head before hyper hands that request to the service). Unless
    /// the connection now switches protocols, it must end after the answer: a later request on it
    /// would go unwatched.
    pub fn unfollowed(&self) -> bool {
        self.unfollowed.load(Ordering::Relaxed)
    }

    /// The service answered 101: the connection is a tunnel from now on. Its close must not
    /// linger: a half-closed tunnel still carries the client's bytes to the backend.
    pub fn switched(&self) {
        self.switched.store(true, Ordering::Relaxed);
    }

    /// Resolves once the connection has been flagged as a flood.
    pub async fn flood_alarm(&self) {
        while !self.flooded() {
            self.alarm.notified().await;
        }
    }

    /// When to look at the connection again for `idle`: when it would turn idle, or a quarter of
    /// `idle` from now while a request is in flight (its end does not wake the connection's task).
    pub fn next_idle_check(&self, idle: Duration) -> tokio::time::Instant {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return tokio::time::Instant::now() + idle / 4;
        }
        let last = Duration::from_millis(self.last_active.load(Ordering::Relaxed));
        tokio::time::Instant::from_std(self.epoch + last + idle)
    }

    /// No request in flight and none started for `idle`.
    pub fn is_idle(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.now_ms().saturating_sub(self.last_active.load(Ordering::Relaxed)) >= millis(idle)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Marks a request in flight; dropped when its response body ends (or is abandoned).
pub struct Busy(Arc<Watch>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until it ends.
pub struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B> Tracked<B> {
    pub fn new(body: B, busy: Busy) -> Self {
        Tracked { body, _busy: busy }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Lingering close: the longest time spent reading and dropping after the write side is shut,
/// the longest wait for the next byte, and the most bytes dropped. Past any of them the socket is
/// closed, unread bytes or not.
const LINGER_TIME: Duration = Duration::from_secs(10);
const LINGER_IDLE: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 32 << 20;

/// The client side of a connection, watched.
pub struct Watched<I> {
    io: I,
    watch: Arc<Watch>,
    follow: Follow,
    /// Set once the write side is shut: the lingering close under way.
    linger: Option<Box<Linger>>,
}

impl<I> Watched<I> {
    pub fn new(io: I, watch: Arc<Watch>, h2_control_frames: u32) -> Self {
        Watched {
            io,
            watch,
            follow: Follow::new(h2_control_frames),
            linger: None,
        }
    }
}

/// A lingering close in progress.
struct Linger {
    until: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
    dropped: u64,
}

impl Linger {
    fn new() -> Linger {
        let now = tokio::time::Instant::now();
        Linger {
            until: now + LINGER_TIME,
            timer: Box::pin(tokio::time::sleep_until(now + LINGER_IDLE)),
            dropped: 0,
        }
    }

    /// Read and drop until the client closes, an error, or a limit. Always ends `Ready(Ok)`: the
    /// answer is written; what happens to the client's leftovers is not an error of this side.
    fn drain<I: AsyncRead + Unpin>(&mut self, io: &mut I, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    self.dropped += buf.filled().len() as u64;
                    if self.dropped >= LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                    let idle = (tokio::time::Instant::now() + LINGER_IDLE).min(self.until);
                    self.timer.as_mut().reset(idle);
                }
                // The client closed (or broke) its side: nothing is left to lose.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match self.timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.watch.flooded() {
            // Read nothing more from an abuser; the server closes the connection shortly.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if polled.is_ready() && buf.filled().len() > before {
            this.follow.feed(&buf.filled()[before..], &this.watch);
        }
        polled
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            // TLS close_notify, then the TCP write side: the client now sees the end of the answer.
            std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            if this.watch.flooded() || this.watch.switched.load(Ordering::Relaxed) {
                // Nothing more is read from an abuser, nor taken from a tunnel's client.
                return Poll::Ready(Ok(()));
            }
            this.linger = Some(Box::new(Linger::new()));
        }
        match &mut this.linger {
            Some(linger) => linger.drain(&mut this.io, cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Where the watcher is in the client's byte stream.
#[derive(Debug)]
enum State {
    /// Collecting an HTTP/1 head (or the HTTP/2 preface, on the first one).
    Head,
    /// A body of known length: this many bytes still to pass.
    Body(u64),
    Chunked(Chunk),
    /// HTTP/2 frames: header bytes collected so far, payload bytes still to pass.
    H2 {
        header: [u8; 9],
        have: usize,
        skip: u64,
    },
    /// Not following any more: an upgrade, or input hyper refuses itself.
    Off,
}

#[derive(Debug)]
enum Chunk {
    /// The chunk-size line: the size so far, whether past its digits, the line length.
    Size {
        size: u64,
        digits_done: bool,
        len: usize,
    },
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk; `len` of the current line.
    Trailer {
        len: usize,
    },
}

struct Follow {
    state: State,
    /// A head that arrived over several reads.
    head: Vec<u8>,
    heads: u64,
    control_budget: u32,
    window_start: u64,
    window_count: u32,
}

impl Follow {
    fn new(control_budget: u32) -> Self {
        Follow {
            state: State::Head,
            head: Vec::new(),
            heads: 0,
            control_budget,
            window_start: 0,
            window_count: 0,
        }
    }

    fn feed(&mut self, mut data: &[u8], watch: &Watch) {
        if !matches!(self.state, State::H2 { .. } | State::Off) {
            watch.touch();
        }
        while !data.is_empty() {
            data = match &mut self.state {
                State::Off => return,
                State::Head => self.head_bytes(data, watch),
                State::Body(left) => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                    &data[n..]
                }
                State::Chunked(chunk) => match chunk_bytes(chunk, data) {
                    Some((rest, done)) => {
                        if done {
                            self.state = State::Head;
                        }
                        rest
                    }
                    None => {
                        // A chunk or trailer line this watcher will not follow: the request it
                        // belongs to goes on, but no later one on this connection is served.
                        self.stop(watch, self.heads);
                        return;
                    }
                },
                State::H2 { header, have, skip } => {
                    if *skip > 0 {
                        let n = usize::try_from(*skip).unwrap_or(usize::MAX).min(data.len());
                        *skip -= n as u64;
                        &data[n..]
                    } else {
                        let n = (9 - *have).min(data.len());
                        header[*have..*have + n].copy_from_slice(&data[..n]);
                        *have += n;
                        if *have == 9 {
                            let (kind, flags) = (header[3], header[4]);
                            let len = (u64::from(header[0]) << 16) | (u64::from(header[1]) << 8) | u64::from(header[2]);
                            *have = 0;
                            *skip = len;
                            self.h2_frame(kind, flags, len, watch);
                        }
                        &data[n..]
                    }
                }
            };
        }
    }

    /// One HTTP/2 frame header from the client.
    fn h2_frame(&mut self, kind: u8, flags: u8, len: u64, watch: &Watch) {
        const END_STREAM: u8 = 0x1;
        const ACK: u8 = 0x1;
        let control = match kind {
            0 => len == 0 && flags & END_STREAM == 0,
            1 | 9 => false,
            2 | 3 => true,
            4 | 6 => flags & ACK == 0,
            _ => false,
        };
        if matches!(kind, 0 | 1 | 9) && !control {
            watch.touch();
        }
        if !control {
            return;
        }
        let now = watch.now_ms();
        if now.saturating_sub(self.window_start) >= FLOOD_WINDOW_MS {
            self.window_start = now;
            self.window_count = 0;
        }
        self.window_count += 1;
        if self.window_count > self.control_budget {
            self.state = State::Off;
            watch.flooded.store(true, Ordering::Relaxed);
            watch.alarm.notify_one();
        }
    }

    /// Bytes while collecting a head; returns what follows the head (or nothing, if incomplete).
    fn head_bytes<'a>(&mut self, data: &'a [u8], watch: &Watch) -> &'a [u8] {
        // Empty lines before a request line are allowed (RFC 9112 §2.2).
        let data = if self.head.is_empty() {
            let skip = data.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
            &data[skip..]
        } else {
            data
        };
        if data.is_empty() {
            return data;
        }
        if self.heads == 0 && self.head.len() < PREFACE.len() {
            // Compared in place: the first read of every connection allocates nothing here.
            let rest = &PREFACE[self.head.len()..];
            let n = rest.len().min(data.len());
            if self.head == PREFACE[..self.head.len()] && rest[..n] == data[..n] {
                if n < rest.len() {
                    self.head.extend_from_slice(data);
                    return &[];
                }
                self.head = Vec::new();
                self.state = State::H2 {
                    header: [0; 9],
                    have: 0,
                    skip: 0,
                };
                return &data[n..];
            }
            if !self.head.is_empty() && self.head == PREFACE[..self.head.len()] {
                // Bytes held because they began like the HTTP/2 preface turned out to be an
                // HTTP/1 head after all: follow them from the start, as if read at once (fuzzing
                // found a head end hidden in them when the client sent one byte at a time).
                let mut held = std::mem::take(&mut self.head);
                held.extend_from_slice(data);
                self.feed(&held, watch);
                return &[];
            }
        }
        // The common case: a whole head in one read, parsed in place.
        if self.head.is_empty() {
            if let Some(end) = head_end(data, 0) {
                self.judge(&data[..end], watch);
                return &data[end..];
            }
            self.head.extend_from_slice(data);
            return self.overflow(watch);
        }
        let scanned = self.head.len().saturating_sub(3);
        self.head.extend_from_slice(data);
        match head_end(&self.head, scanned) {
            Some(end) => {
                let head = std::mem::take(&mut self.head);
                self.judge(&head[..end], watch);
                let from_data = end - (head.len() - data.len());
                self.head = head;
                self.head.clear();
                &data[from_data..]
            }
            None => self.overflow(watch),
        }
    }

    fn overflow(&mut self, watch: &Watch) -> &'static [u8] {
        if self.head.len() > MAX_HEAD {
            self.head = Vec::new();
            self.stop(watch, self.heads);
        }
        &[]
    }

    /// Follow no further. The watcher never stops silently: every HTTP/1 head from `refuse_from`
    /// on is refused (400, `Connection: close`), so nothing on this connection passes unwatched,
    /// however the watcher came to stop and however far ahead of the service it has read.
    fn stop(&mut self, watch: &Watch, refuse_from: u64) {
        watch.refuse_from.fetch_min(refuse_from, Ordering::Relaxed);
        self.state = State::Off;
    }

    /// One complete head: decide whether to refuse it and how its body is framed.
    fn judge(&mut self, head: &[u8], watch: &Watch) {
        let index = self.heads;
        self.heads += 1;
        // Left uninitialised: httparse fills only what it parses (4 KiB not zeroed per request).
        let mut headers = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let Ok(httparse::Status::Complete(_)) = req.parse_with_uninit_headers(head, &mut headers) else {
            // hyper answers this itself (400 or 431) and closes; were it to accept it, it is 400.
            self.stop(watch, index);
            return;
        };
        match framing(&req) {
            Framing::Refuse => self.stop(watch, index),
            Framing::Stop => {
                // What follows an upgrade may not be HTTP/1: this request is served, none after it.
                watch.unfollowed.store(true, Ordering::Relaxed);
                self.stop(watch, index + 1);
            }
            Framing::Length(0) => self.state = State::Head,
            Framing::Length(n) => self.state = State::Body(n),
            Framing::Chunked => {
                self.state = State::Chunked(Chunk::Size {
                    size: 0,
                    digits_done: false,
                    len: 0,
                })
            }
        }
    }
}

/// The fuzzer's way in (`fuzz/src/watch_framing.rs`): `reads` fed in order to a fresh watcher with a
/// control-frame budget of `budget`. Returns what the watcher concluded, for comparing runs: the
/// state it ends in, the heads it judged, the first head to refuse, and whether it saw a flood.
#[doc(hidden)]
pub fn fuzz_feed<'a>(reads: impl IntoIterator<Item = &'a [u8]>, budget: u32) -> String {
    let watch = Watch::new();
    let mut follow = Follow::new(budget);
    for read in reads {
        follow.feed(read, &watch);
    }
    format!(
        "{:?} heads={} refuse_from={} flooded={}",
        follow.state,
        follow.heads,
        watch.refuse_from.load(Ordering::Relaxed),
        watch.flooded()
    )
}

/// The end of a head (just past its empty line) in `buf`, looking from `from` on.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    for nl in memchr::memchr_iter(b'\n', &buf[from..]) {
        let at = from + nl + 1;
        match &buf[at..] {
            [b'\n', ..] => return Some(at + 1),
            [b'\r', b'\n', ..] => return Some(at + 2),
            _ => {}
        }
    }
    None
}

#[derive(Debug, PartialEq)]
enum Framing {
    Refuse,
    /// Follow no further (an upgrade or CONNECT: what comes next is not HTTP/1).
    Stop,
    Length(u64),
    Chunked,
}

fn framing(req: &httparse::Request<'_, '_>) -> Framing {
    let (mut lengths, mut encodings) = (Vec::new(), Vec::new());
    let mut upgrade = req.method == Some("CONNECT");
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths.push(h.value);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encodings.push(h.value);
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    let framing = match (lengths.as_slice(), encodings.as_slice()) {
        ([], []) => Framing::Length(0),
        ([], [te]) if te.trim_ascii().eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
        ([cl], []) => match content_length(cl) {
            Some(n) => Framing::Length(n),
            None => Framing::Refuse,
        },
        _ => Framing::Refuse,
    };
    match framing {
        Framing::Refuse => Framing::Refuse,
        _ if upgrade => Framing::Stop,
        f => f,
    }
}

fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Bytes of a chunked body. Returns the rest of `data` and whether the body ended there, or
/// `None` for framing hyper will refuse itself.
fn chunk_bytes<'a>(chunk: &mut Chunk, mut data: &'a [u8]) -> Option<(&'a [u8], bool)> {
    while !data.is_empty() {
        match chunk {
            Chunk::Size { size, digits_done, len } => {
                let b = data[0];
                data = &data[1..];
                *len += 1;
                if *len > MAX_LINE {
                    return None;
                }
                if b == b'\n' {
                    *chunk = if *size == 0 {
                        Chunk::Trailer { len: 0 }
                    } else {
                        Chunk::Data(*size)
                    };
                } else if !*digits_done {
                    match (b as char).to_digit(16) {
                        Some(d) => *size = size.checked_mul(16)?.checked_add(u64::from(d))?,
                        None => *digits_done = true,
                    }
                }
            }
            Chunk::Data(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                *left -= n as u64;
                data = &data[n..];
                if *left == 0 {
                    *chunk = Chunk::DataEnd;
                }
            }
            Chunk::DataEnd => {
                let b = data[0];
                data = &data[1..];
                if b == b'\n' {
                    *chunk = Chunk::Size {
                        size: 0,
                        digits_done: false,
                        len: 0,
                    };
                }
            }
            Chunk::Trailer { len } => {
                let b = data[0];
                data = &data[1..];
                if b == b'\n' {
                    if *len == 0 {
                        return Some((data, true));
                    }
                    *len = 0;
                } else if b != b'\r' || *len > 0 {
                    *len += 1;
                    if *len > MAX_LINE {
                        return None;
                    }
                }
            }
        }
    }
    Some((data, false))
}

#[cfg(test)]
mod tests;
