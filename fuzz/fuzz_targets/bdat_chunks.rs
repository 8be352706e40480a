//! BDAT (RFC 3030): the chunk checker's verdict never depends on where the
//! chunks end (a chunk may end between CR and LF), and what it accepts
//! without BINARYMIME has CRLF line ends only and no NUL, so a hop that later
//! gets the message with DATA sees the same lines; the `BDAT` argument parser
//! never panics and accepts only digits and `LAST`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use transport::fuzzing::{parse_bdat, ChunkChecker, DataError};

fn verdict(input: &[u8], step: usize, max: u64, binary: bool) -> Result<(), DataError> {
    let mut checker = ChunkChecker::new(max, binary);
    for chunk in input.chunks(step) {
        if let Some(e) = checker.feed(chunk) {
            return Err(e);
        }
    }
    assert_eq!(checker.size(), input.len() as u64);
    checker.finish()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let step = usize::from(data[0] % 17).max(1);
    let binary = data[1] & 1 == 1;
    let max = if data[1] & 2 == 0 { 1 << 20 } else { u64::from(data[1]) * 4 };
    let input = &data[2..];
    let whole = verdict(input, input.len().max(1), max, binary);
    assert_eq!(whole, verdict(input, step, max, binary), "verdict depends on the chunk size {step}");
    assert_eq!(whole, verdict(input, 1, max, binary), "verdict depends on byte-sized chunks");
    if whole.is_ok() {
        assert!(input.len() as u64 <= max);
        if !binary {
            assert!(!input.contains(&0), "NUL accepted");
            for (i, &b) in input.iter().enumerate() {
                match b {
                    b'\r' => assert_eq!(input.get(i + 1), Some(&b'\n'), "bare CR accepted at {i}"),
                    b'\n' => assert_eq!(i.checked_sub(1).map(|p| input[p]), Some(b'\r'), "bare LF accepted at {i}"),
                    _ => {}
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(input) {
        if let Some((size, last)) = parse_bdat(text) {
            let again = if last { format!("{size} LAST") } else { size.to_string() };
            assert_eq!(parse_bdat(&again), Some((size, last)));
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' '), "{text:?}");
        }
    }
});
