//! The DSN builder with arbitrary reports: never a panic; the report has CRLF
//! line ends only (when the original has), header lines of at most 998 octets
//! (RFC 5322 §2.1.1), 7-bit but for a UTF-8 sender in To:, parses as a
//! multipart/report, and its (global-)delivery-status part has one
//! Final-Recipient per recipient.
#![no_main]
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mail_parser::MimeHeaders;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use transport::dsn::{build, Action, DsnInput, DsnRecipient};
use transport::envelope::Ret;
use transport::fuzzing::stored_address;

#[derive(Arbitrary, Debug)]
struct Rcpt {
    final_recipient: String,
    original_recipient: Option<String>,
    action: u8,
    status: String,
    diagnostic: Option<String>,
    remote_mta: Option<String>,
    last_attempt: Option<u32>,
    will_retry_until: Option<u32>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    reporting_mta: String,
    postmaster: String,
    to: String,
    envid: Option<String>,
    arrival: u32,
    now: u32,
    recipients: Vec<Rcpt>,
    original: Vec<u8>,
    hdrs: bool,
    max_attach: u16,
    text: Option<String>,
}

fn time(s: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(s))
}

fn crlf_only(d: &[u8]) -> bool {
    d.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => d.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && d[i - 1] == b'\r',
        _ => true,
    })
}

fuzz_target!(|input: Input| {
    if input.recipients.is_empty() || input.recipients.len() > 50 {
        return;
    }
    // The config checks the postmaster (a first run of this target found that a
    // non-ASCII one ends up raw in From:). The original sender may be a UTF-8
    // address (SMTPUTF8): the report is then a global one (RFC 6533).
    if !input.postmaster.is_ascii() {
        return;
    }
    let recipients: Vec<DsnRecipient> = input
        .recipients
        .iter()
        .map(|r| DsnRecipient {
            final_recipient: stored_address(&r.final_recipient),
            original_recipient: r.original_recipient.clone(),
            action: [Action::Failed, Action::Delayed, Action::Delivered, Action::Relayed][usize::from(r.action % 4)],
            status: r.status.clone(),
            diagnostic: r.diagnostic.clone(),
            remote_mta: r.remote_mta.clone(),
            last_attempt: r.last_attempt.map(time),
            will_retry_until: r.will_retry_until.map(time),
        })
        .collect();
    let to = stored_address(&input.to);
    let report = build(&DsnInput {
        reporting_mta: &input.reporting_mta,
        message_id: "report@fuzz.test",
        postmaster: &stored_address(&input.postmaster),
        to: &to,
        envid: input.envid.as_deref(),
        arrival: time(input.arrival),
        now: time(input.now),
        recipients: &recipients,
        original: &input.original,
        ret: input.hdrs.then_some(Ret::Hdrs),
        max_attach: u64::from(input.max_attach),
        text: input.text.as_deref(),
    });
    if crlf_only(&input.original) {
        assert!(crlf_only(&report), "bare CR or LF in the report");
    }
    let end = report.windows(4).position(|w| w == b"\r\n\r\n").expect("a header section");
    for line in report[..end].split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "header line of {} octets: {:?}...", line.len(), String::from_utf8_lossy(&line[..40]));
        // 7-bit, but for a UTF-8 sender's address in To: (an SMTPUTF8 report).
        let utf8_to = !input.to.is_ascii() && line.starts_with(b"To:") && std::str::from_utf8(line).is_ok();
        assert!(line.is_ascii() || utf8_to, "8-bit header line {:?}", String::from_utf8_lossy(line));
    }
    let parsed = mail_parser::MessageParser::default().parse(&report).expect("the report parses");
    let status = parsed
        .parts
        .iter()
        .find(|p| {
            p.content_type().is_some_and(|c| matches!(c.subtype(), Some("delivery-status" | "global-delivery-status")))
        })
        .expect("a message/delivery-status part");
    let body = String::from_utf8_lossy(status.contents());
    let finals = body.lines().filter(|l| l.starts_with("Final-Recipient:")).count();
    assert_eq!(finals, recipients.len(), "{body}");
    for line in body.lines() {
        assert!(line.len() <= 998, "delivery-status line of {} octets", line.len());
    }
});
