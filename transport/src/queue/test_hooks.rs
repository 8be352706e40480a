//! Fault injection for tests only (feature `test-hooks`): a message carrying
//! the header `X-Kube-Transport-Test: panic` makes its delivery panic, which is
//! how the tests prove the poison-queue rule.
const MARKER: &[u8] = b"\r\nX-Kube-Transport-Test: panic\r\n";

pub fn maybe_panic(data: &[u8]) {
    if data.windows(MARKER.len()).any(|w| w == MARKER) {
        panic!("test hook: this message panics its processing");
    }
}
