//! The DATA reader against a plain reference decoder: the outcome never
//! depends on how the input is split into reads, the end is only ever
//! `<CRLF>.<CRLF>`, and an accepted message is exactly the unstuffed lines
//! (so no bare CR or LF, the SMTP smuggling carriers, can get through).
#![no_main]
use libfuzzer_sys::fuzz_target;
use transport::fuzzing::{DataError, DataReader};

type Outcome = (Option<usize>, Result<Vec<u8>, DataError>);

fn run(input: &[u8], step: usize, max: u64) -> Outcome {
    let mut reader = DataReader::new(max);
    let mut out = Vec::new();
    let mut consumed = 0;
    for chunk in input.chunks(step) {
        if let Some(n) = reader.feed(chunk, &mut out) {
            assert!(n <= chunk.len());
            return (Some(consumed + n), reader.finish().map(|()| out));
        }
        consumed += chunk.len();
    }
    (None, reader.finish().map(|()| out))
}

/// The obvious decoder: lines end with CRLF, `.` alone ends, a leading dot goes.
fn reference(consumed: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let body = consumed.strip_suffix(b".\r\n").expect("ends with the terminator");
    for line in body.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n"), "a line without CRLF was accepted: {line:?}");
        let content = &line[..line.len() - 2];
        assert!(!content.contains(&b'\r') && !content.contains(&b'\n'), "bare line end accepted: {line:?}");
        assert_ne!(content, b".", "a lone dot before the end did not end the data");
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let step = usize::from(data[0] % 17).max(1);
    let max = if data[1] & 1 == 0 { 1 << 20 } else { u64::from(data[1]) * 4 };
    let input = &data[2..];
    let whole = run(input, input.len().max(1), max);
    let pieces = run(input, step, max);
    let bytes = run(input, 1, max);
    assert_eq!(whole, pieces, "outcome depends on the read size {step}");
    assert_eq!(whole, bytes, "outcome depends on byte-by-byte reads");
    if let Some(end) = whole.0 {
        let consumed = &input[..end];
        assert!(consumed == b".\r\n" || consumed.ends_with(b"\r\n.\r\n"), "ended without CRLF.CRLF");
        if let Ok(out) = &whole.1 {
            assert!(out.len() as u64 <= max);
            assert!(!out.contains(&0));
            assert_eq!(out, &reference(consumed));
        }
    }
});
