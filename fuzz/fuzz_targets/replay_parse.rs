//! Replay-directory files: never a panic; an accepted file has a sender line,
//! at least one recipient that parses as an SMTP recipient again, and message
//! data with CRLF line ends only.
#![no_main]
use libfuzzer_sys::fuzz_target;
use transport::fuzzing::parse_rcpt;
use transport::server::replay::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = parse(data) else { return };
    assert!(!msg.recipients.is_empty());
    for r in &msg.recipients {
        parse_rcpt(&format!("TO:<{}>", r.address)).expect("an accepted recipient parses again");
    }
    let d = &msg.data;
    for (i, &b) in d.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(d.get(i + 1), Some(&b'\n'), "bare CR in replay data");
        }
        if b == b'\n' {
            assert!(i > 0 && d[i - 1] == b'\r', "bare LF in replay data");
        }
    }
});
