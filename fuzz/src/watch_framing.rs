//! Oracle for the `watch_framing` target: the connection watcher's HTTP/1 and HTTP/2 framing.
//!
//! The first input byte is the HTTP/2 control-frame budget, the second a read size; the rest is what
//! a client sends. Fed to the watcher in one read, in reads of that size, and a byte at a time, it
//! must never panic and must reach the same conclusion (state, heads judged, first head refused,
//! flood) however the bytes were split: a client must not change the verdict by timing its writes.

use authgate::server::fuzz_feed;

/// Panics if the watcher panics or its verdict depends on how the bytes were split into reads.
pub fn check(data: &[u8]) {
    let [budget, step, stream @ ..] = data else {
        return;
    };
    let budget = u32::from(*budget);
    let whole = fuzz_feed([stream], budget);
    let step = usize::from(*step).max(1);
    assert_eq!(fuzz_feed(stream.chunks(step), budget), whole, "reads of {step} bytes");
    assert_eq!(fuzz_feed(stream.chunks(1), budget), whole, "reads of 1 byte");
}
