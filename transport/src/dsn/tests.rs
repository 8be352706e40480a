//! Reports are parsed back with mail-parser: what a mail client or a bounce
//! processor would see.
use super::*;
use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders};
use std::time::{Duration, UNIX_EPOCH};

/// 2013-06-27T21:08:37Z, a Thursday (the seed's day).
fn arrival() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_372_367_317)
}

const ORIGINAL: &[u8] = b"From: Alice <alice@contoso.com>\r\n\
To: bob@fabrikam.com, carol@fabrikam.com\r\n\
Subject: =?utf-8?q?Quarterly_r=C3=A9sults?=\r\n\
Message-ID: <orig-1@contoso.com>\r\n\
\r\n\
Hello Bob,\r\n\
the numbers are in.\r\n";

/// An address as a queue record holds it: read back without parsing, so also one no
/// SMTP session would have taken (a corrupt record).
fn stored(addr: &str) -> envelope::Address {
    serde_json::from_value(serde_json::Value::String(addr.into())).expect("a string")
}

fn recipient(addr: &str, action: Action, status: &str) -> DsnRecipient {
    DsnRecipient {
        final_recipient: stored(addr),
        original_recipient: None,
        action,
        status: status.to_string(),
        diagnostic: None,
        remote_mta: None,
        last_attempt: None,
        will_retry_until: None,
    }
}

/// The postmaster and the original sender of the reports [`input`] builds.
static POSTMASTER: std::sync::LazyLock<envelope::Address> =
    std::sync::LazyLock::new(|| stored("postmaster@contoso.com"));
static ALICE: std::sync::LazyLock<envelope::Address> = std::sync::LazyLock::new(|| stored("alice@contoso.com"));

fn input<'a>(recipients: &'a [DsnRecipient], original: &'a [u8]) -> DsnInput<'a> {
    DsnInput {
        reporting_mta: "edge1.contoso.com",
        message_id: "report-1@edge1.contoso.com",
        postmaster: &POSTMASTER,
        to: &ALICE,
        envid: None,
        arrival: arrival(),
        now: arrival() + Duration::from_secs(4 * 3600),
        recipients,
        original,
        ret: None,
        max_attach: 10 * 1024 * 1024,
        text: None,
    }
}

fn parse(raw: &[u8]) -> Message<'_> {
    MessageParser::new().parse(raw).expect("the report parses")
}

/// The three parts of the multipart/report, after checking its content type.
fn report_parts<'a>(msg: &'a Message<'a>) -> [&'a MessagePart<'a>; 3] {
    let ct = msg.content_type().expect("Content-Type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let ids = msg.root_part().sub_parts().expect("multipart");
    assert_eq!(ids.len(), 3, "human part, delivery-status, original");
    let part = |i: usize| &msg.parts[ids[i] as usize];
    [part(0), part(1), part(2)]
}

fn content_type(part: &MessagePart<'_>) -> String {
    let ct = part.content_type().expect("part Content-Type");
    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default())
}

/// The delivery-status body as field groups (per-message first), each a
/// list of (name, unfolded value), read with mail-parser's header parser.
fn status_groups(part: &MessagePart<'_>) -> Vec<Vec<(String, String)>> {
    assert_eq!(content_type(part), "message/delivery-status");
    let body = std::str::from_utf8(part.contents()).expect("delivery-status is ASCII");
    assert!(body.is_ascii());
    body.split("\r\n\r\n")
        .filter(|g| !g.trim().is_empty())
        .map(|g| {
            let block = format!("{g}\r\n\r\n");
            let parsed = MessageParser::new().parse_headers(block.as_bytes()).expect("fields parse");
            parsed
                .headers_raw()
                .map(|(n, v)| (n.to_string(), v.replace("\r\n", "").trim().to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn get<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn names(group: &[(String, String)]) -> Vec<&str> {
    group.iter().map(|(n, _)| n.as_str()).collect()
}

/// Every line ends with CRLF and stays within SMTP's line limit.
fn assert_wire_safe(raw: &[u8]) {
    for (i, b) in raw.iter().enumerate() {
        if *b == b'\n' {
            assert_eq!(raw.get(i.wrapping_sub(1)), Some(&b'\r'), "bare LF at {i}");
        }
        if *b == b'\r' {
            assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    for line in raw.split(|b| *b == b'\n') {
        assert!(line.len() <= 1000, "line of {} octets", line.len());
    }
}

#[test]
fn failure_report_for_several_recipients() {
    let mut bob = recipient("bob@fabrikam.com", Action::Failed, "5.1.1");
    bob.original_recipient = Some("rfc822;Bob+2BSales@fabrikam.com".into());
    bob.diagnostic = Some("550 5.1.1 User unknown".into());
    bob.remote_mta = Some("mx1.fabrikam.com".into());
    bob.last_attempt = Some(arrival() + Duration::from_secs(60));
    let mut carol = recipient("carol@fabrikam.com", Action::Failed, "5.2.2");
    carol.diagnostic = Some("552 5.2.2 Mailbox full".into());
    carol.remote_mta = Some("mx2.fabrikam.com".into());
    let recipients = [bob, carol];
    let mut inp = input(&recipients, ORIGINAL);
    inp.envid = Some("QQ314159+2Bx");
    let raw = build(&inp);
    assert_wire_safe(&raw);
    // Everything is 7-bit: the UTF-8 subject is encoded, the original is ASCII.
    assert!(raw.is_ascii());

    let msg = parse(&raw);
    let from = msg.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.name(), Some("Mail Delivery System"));
    assert_eq!(from.address(), Some("postmaster@contoso.com"));
    assert_eq!(msg.to().and_then(|a| a.first()).and_then(|a| a.address()), Some("alice@contoso.com"));
    assert_eq!(msg.subject(), Some("Undeliverable: Quarterly résults"));
    assert_eq!(msg.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
    assert_eq!(msg.header_raw("MIME-Version").map(str::trim), Some("1.0"));
    let date = msg.date().expect("Date");
    assert_eq!((date.year, date.month, date.day, date.hour), (2013, 6, 28, 1), "Date is input.now");
    let id = msg.message_id().expect("Message-ID");
    assert!(id.ends_with("@edge1.contoso.com"), "{id}");

    let [human, status, original] = report_parts(&msg);
    assert_eq!(content_type(human), "text/plain");
    let text = human.text_contents().expect("text");
    assert!(text.contains("Your message couldn't be delivered to the following recipients"), "{text}");
    assert!(text.contains("bob@fabrikam.com: 550 5.1.1 User unknown (remote server: mx1.fabrikam.com)"), "{text}");
    assert!(text.contains("carol@fabrikam.com: 552 5.2.2 Mailbox full (remote server: mx2.fabrikam.com)"), "{text}");
    assert!(text.contains("Reporting server: edge1.contoso.com"), "{text}");

    let groups = status_groups(status);
    assert_eq!(groups.len(), 3, "{groups:?}");
    assert_eq!(names(&groups[0]), ["Reporting-MTA", "Original-Envelope-Id", "Arrival-Date"]);
    assert_eq!(get(&groups[0], "Reporting-MTA"), Some("dns; edge1.contoso.com"));
    assert_eq!(get(&groups[0], "Original-Envelope-Id"), Some("QQ314159+x"));
    assert_eq!(get(&groups[0], "Arrival-Date"), Some("Thu, 27 Jun 2013 21:08:37 +0000"));

    let bob = &groups[1];
    assert_eq!(
        names(bob),
        [
            "Original-Recipient",
            "Final-Recipient",
            "Action",
            "Status",
            "Remote-MTA",
            "Diagnostic-Code",
            "Last-Attempt-Date"
        ]
    );
    assert_eq!(get(bob, "Original-Recipient"), Some("rfc822;Bob+Sales@fabrikam.com"));
    assert_eq!(get(bob, "Final-Recipient"), Some("rfc822; bob@fabrikam.com"));
    assert_eq!(get(bob, "Action"), Some("failed"));
    assert_eq!(get(bob, "Status"), Some("5.1.1"));
    assert_eq!(get(bob, "Remote-MTA"), Some("dns; mx1.fabrikam.com"));
    assert_eq!(get(bob, "Diagnostic-Code"), Some("smtp; 550 5.1.1 User unknown"));
    assert_eq!(get(bob, "Last-Attempt-Date"), Some("Thu, 27 Jun 2013 21:09:37 +0000"));

    let carol = &groups[2];
    assert_eq!(names(carol), ["Final-Recipient", "Action", "Status", "Remote-MTA", "Diagnostic-Code"]);
    assert_eq!(get(carol, "Final-Recipient"), Some("rfc822; carol@fabrikam.com"));
    assert_eq!(get(carol, "Status"), Some("5.2.2"));

    // The whole original comes back as a message/rfc822 part.
    assert_eq!(content_type(original), "message/rfc822");
    let inner = original.message().expect("nested message");
    assert_eq!(inner.message_id(), Some("orig-1@contoso.com"));
    assert_eq!(inner.body_text(0).as_deref(), Some("Hello Bob,\r\nthe numbers are in.\r\n"));
}

#[test]
fn delay_report_says_until_when_the_server_keeps_trying() {
    let mut bob = recipient("bob@fabrikam.com", Action::Delayed, "4.4.7");
    bob.diagnostic = Some("451 4.4.0 Primary target IP address responded with: 421 4.4.2 Connection dropped".into());
    bob.remote_mta = Some("mx1.fabrikam.com".into());
    bob.last_attempt = Some(arrival() + Duration::from_secs(3 * 3600 + 55 * 60));
    bob.will_retry_until = Some(arrival() + Duration::from_secs(2 * 86400));
    let recipients = [bob];
    let raw = build(&input(&recipients, ORIGINAL));
    assert_wire_safe(&raw);
    let msg = parse(&raw);
    assert_eq!(msg.subject(), Some("Delivery delayed: Quarterly résults"));
    let [human, status, _] = report_parts(&msg);
    let text = human.text_contents().expect("text");
    // now = arrival + 4 h; expiry at arrival + 2 d: 1 day and 20 hours left.
    assert!(text.contains("Delivery has not been completed yet"), "{text}");
    assert!(
        text.contains("until Sat, 29 Jun 2013 21:08:37 +0000 (that is 1 day, 20 hours and 0 minutes from now)"),
        "{text}"
    );
    let groups = status_groups(status);
    assert_eq!(get(&groups[1], "Action"), Some("delayed"));
    assert_eq!(get(&groups[1], "Status"), Some("4.4.7"));
    assert_eq!(get(&groups[1], "Will-Retry-Until"), Some("Sat, 29 Jun 2013 21:08:37 +0000"));
    assert_eq!(get(&groups[1], "Last-Attempt-Date"), Some("Fri, 28 Jun 2013 01:03:37 +0000"));
    assert_eq!(get(&groups[0], "Original-Envelope-Id"), None, "no ENVID given");
}

#[test]
fn success_reports_delivered_and_relayed() {
    let mut bob = recipient("bob@fabrikam.com", Action::Delivered, "2.0.0");
    bob.diagnostic = Some("250 2.6.0 Queued as 12345".into());
    let recipients = [bob];
    let msg_raw = build(&input(&recipients, ORIGINAL));
    let msg = parse(&msg_raw);
    assert_eq!(msg.subject(), Some("Delivered: Quarterly résults"));
    let [human, status, _] = report_parts(&msg);
    assert!(human.text_contents().expect("text").contains("has been delivered to the following recipients"));
    let groups = status_groups(status);
    assert_eq!(get(&groups[1], "Action"), Some("delivered"));
    assert_eq!(get(&groups[1], "Status"), Some("2.0.0"));
    assert_eq!(get(&groups[1], "Will-Retry-Until"), None);

    let carol = recipient("carol@fabrikam.com", Action::Relayed, "2.0.0");
    let recipients = [carol];
    let raw = build(&input(&recipients, ORIGINAL));
    let msg = parse(&raw);
    assert_eq!(msg.subject(), Some("Relayed: Quarterly résults"));
    let [_, status, _] = report_parts(&msg);
    assert_eq!(get(&status_groups(status)[1], "Action"), Some("relayed"));
}

#[test]
fn mixed_outcomes_use_the_worst_for_the_subject_and_custom_text_for_it() {
    let failed = recipient("bob@fabrikam.com", Action::Failed, "5.1.1");
    let delivered = recipient("carol@fabrikam.com", Action::Delivered, "2.0.0");
    let recipients = [delivered, failed];
    let mut inp = input(&recipients, ORIGINAL);
    inp.text = Some("Contoso mail could not reach someone.\nCall the help desk.");
    let raw = build(&inp);
    assert_wire_safe(&raw);
    let msg = parse(&raw);
    assert!(msg.subject().expect("subject").starts_with("Undeliverable: "));
    let [human, status, _] = report_parts(&msg);
    let text = human.text_contents().expect("text");
    assert!(text.contains("Contoso mail could not reach someone.\r\nCall the help desk."), "{text}");
    assert!(!text.contains("couldn't be delivered"), "custom text replaces the failure paragraph: {text}");
    assert!(text.contains("has been delivered to the following recipients"), "{text}");
    assert!(text.contains("bob@fabrikam.com: status 5.1.1"), "{text}");
    let groups = status_groups(status);
    assert_eq!(get(&groups[1], "Final-Recipient"), Some("rfc822; carol@fabrikam.com"));
    assert_eq!(get(&groups[2], "Final-Recipient"), Some("rfc822; bob@fabrikam.com"));
}

#[test]
fn ret_hdrs_returns_the_header_section_only() {
    let recipients = [recipient("bob@fabrikam.com", Action::Failed, "5.1.1")];
    let mut inp = input(&recipients, ORIGINAL);
    inp.ret = Some(Ret::Hdrs);
    let raw = build(&inp);
    assert_wire_safe(&raw);
    let msg = parse(&raw);
    let [human, _, original] = report_parts(&msg);
    assert_eq!(content_type(original), "text/rfc822-headers");
    let headers = original.text_contents().expect("headers");
    let expected = std::str::from_utf8(ORIGINAL).expect("ascii").split("\r\n\r\n").next().expect("headers");
    assert_eq!(headers.trim_end(), expected);
    assert!(!headers.contains("the numbers are in"));
    assert!(!String::from_utf8_lossy(&raw).contains("the numbers are in"));
    assert!(human.text_contents().expect("text").contains("headers are attached"));
}

#[test]
fn ret_full_is_the_default_within_the_attach_limit() {
    let recipients = [recipient("bob@fabrikam.com", Action::Failed, "5.1.1")];
    let mut inp = input(&recipients, ORIGINAL);
    inp.ret = Some(Ret::Full);
    inp.max_attach = ORIGINAL.len() as u64;
    let raw = build(&inp);
    let msg = parse(&raw);
    assert_eq!(content_type(report_parts(&msg)[2]), "message/rfc822", "exactly at the limit: whole message");

    inp.max_attach = ORIGINAL.len() as u64 - 1;
    let raw = build(&inp);
    let msg = parse(&raw);
    let [_, _, original] = report_parts(&msg);
    assert_eq!(content_type(original), "text/rfc822-headers", "over the limit: headers only");
    assert!(original.text_contents().expect("headers").contains("Message-ID: <orig-1@contoso.com>"));
    assert!(!String::from_utf8_lossy(&raw).contains("the numbers are in"));
}

#[test]
fn hostile_diagnostic_stays_on_one_line() {
    let mut bob = recipient("bob@fabrikam.com", Action::Failed, "not a status\r\nX-Evil: 1");
    bob.diagnostic =
        Some("550 5.7.1 Denied\r\nX-Injected: yes\r\n\r\nFinal-Recipient: rfc822; mallory@evil.example\n".into());
    bob.remote_mta = Some("mx.fabrikam.com\r\nX-Host-Injected: yes".into());
    let recipients = [bob];
    let mut inp = input(&recipients, ORIGINAL);
    let to = stored("alice@contoso.com>\r\nBcc: <everyone@example.com");
    inp.to = &to;
    let raw = build(&inp);
    assert_wire_safe(&raw);
    let msg = parse(&raw);
    assert!(msg.bcc().is_none(), "the sender address cannot add a header");
    assert_eq!(
        msg.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some("alice@contoso.comBcc: everyone@example.com")
    );
    let [human, status, _] = report_parts(&msg);
    let groups = status_groups(status);
    assert_eq!(groups.len(), 2, "no extra recipient group was injected: {groups:?}");
    let bob = &groups[1];
    assert_eq!(names(bob), ["Final-Recipient", "Action", "Status", "Remote-MTA", "Diagnostic-Code"]);
    assert_eq!(get(bob, "Final-Recipient"), Some("rfc822; bob@fabrikam.com"));
    assert_eq!(
        get(bob, "Diagnostic-Code"),
        Some("smtp; 550 5.7.1 Denied X-Injected: yes Final-Recipient: rfc822; mallory@evil.example")
    );
    assert_eq!(get(bob, "Status"), Some("5.7.1"), "an invalid status falls back to the reply's code");
    assert_eq!(get(bob, "Remote-MTA"), Some("dns; mx.fabrikam.comX-Host-Injected:yes"));
    let text = human.text_contents().expect("text");
    assert!(text.lines().all(|l| !l.starts_with("X-Injected")), "{text}");
}

/// What fuzzing found (RELIABILITY.md): values no SMTP session can produce
/// but a corrupt record could, each longer than a line, still give a report
/// a client can parse with every line within the limit.
#[test]
fn overlong_values_are_cut_to_a_valid_report() {
    let long = "x".repeat(1500);
    let mut bob = recipient(&format!("{long}@fabrikam.com"), Action::Failed, "5.1.1");
    bob.original_recipient = Some(format!("rfc822;{long}@fabrikam.com"));
    let recipients = [bob];
    let mut inp = input(&recipients, ORIGINAL);
    let envid = format!("id{long}");
    let to = stored(&format!("alice {long}@contoso.com"));
    inp.envid = Some(&envid);
    inp.to = &to;
    let raw = build(&inp);
    assert_wire_safe(&raw);
    let msg = parse(&raw);
    let to = msg.to().and_then(|a| a.first()).and_then(|a| a.address()).expect("To: address");
    assert!(to.starts_with("alice xxx") && to.ends_with("..."), "{to}");
    let [_, status, _] = report_parts(&msg);
    let groups = status_groups(status);
    assert_eq!(groups.len(), 2, "{groups:?}");
    let fr = get(&groups[1], "Final-Recipient").expect("Final-Recipient");
    assert!(fr.starts_with("rfc822; xxx") && fr.ends_with("..."), "{fr}");
    assert!(get(&groups[1], "Original-Recipient").is_some_and(|v| v.ends_with("...")));
    assert!(get(&groups[0], "Original-Envelope-Id").is_some_and(|v| v.starts_with("idxxx") && v.ends_with("...")));
}

#[test]
fn hostile_subject_cannot_add_report_headers() {
    // "Hi\r\nBcc: everyone@example.com" hidden in an encoded word.
    let original = b"Subject: =?utf-8?b?SGkNCkJjYzogZXZlcnlvbmVAZXhhbXBsZS5jb20=?=\r\n\r\nbody\r\n";
    let recipients = [recipient("bob@fabrikam.com", Action::Failed, "5.1.1")];
    let raw = build(&input(&recipients, original));
    assert_wire_safe(&raw);
    let msg = parse(&raw);
    assert_eq!(msg.subject(), Some("Undeliverable: Hi Bcc: everyone@example.com"));
    assert!(msg.bcc().is_none());
}

#[test]
fn null_subject() {
    let recipients = [recipient("bob@fabrikam.com", Action::Failed, "5.1.1")];
    let original = b"From: alice@contoso.com\r\n\r\nno subject here\r\n";
    let msg_raw = build(&input(&recipients, original));
    assert_eq!(parse(&msg_raw).subject(), Some("Undeliverable"));
    let blank = b"From: alice@contoso.com\r\nSubject:   \r\n\r\nblank subject\r\n";
    let msg_raw = build(&input(&recipients, blank));
    assert_eq!(parse(&msg_raw).subject(), Some("Undeliverable"));
}

#[test]
fn eight_bit_original_is_returned_unencoded_and_labelled() {
    let original = "Subject: caf\u{e9}\r\n\r\nd\u{e9}j\u{e0} vu\r\n".as_bytes();
    let recipients = [recipient("bob@fabrikam.com", Action::Failed, "5.1.1")];
    let raw = build(&input(&recipients, original));
    let msg = parse(&raw);
    let [_, _, part] = report_parts(&msg);
    assert_eq!(part.content_transfer_encoding(), Some("8bit"));
    assert_eq!(part.message().and_then(|m| m.body_text(0)).as_deref(), Some("d\u{e9}j\u{e0} vu\r\n"));

    // Headers only: 8-bit header text is encoded so the report stays 7-bit.
    let mut inp = input(&recipients, original);
    inp.ret = Some(Ret::Hdrs);
    let raw = build(&inp);
    assert!(raw.is_ascii());
    let msg = parse(&raw);
    let [_, _, part] = report_parts(&msg);
    assert_eq!(part.text_contents().map(str::trim_end), Some("Subject: caf\u{e9}"));
}

#[test]
fn a_report_naming_utf8_addresses_is_the_global_kind() {
    // RFC 6533: report-type and parts of the global kind, the address as it is.
    let recipients = [recipient("jörg@bücher.example", Action::Failed, "5.6.7")];
    let mut inp = input(&recipients, ORIGINAL);
    inp.ret = Some(Ret::Hdrs);
    let raw = build(&inp);
    assert_wire_safe(&raw);
    let text = String::from_utf8(raw.clone()).expect("UTF-8");
    let msg = parse(&raw);
    assert_eq!(msg.content_type().and_then(|c| c.attribute("report-type")), Some("global-delivery-status"));
    let ids = msg.root_part().sub_parts().expect("multipart");
    let part = |i: usize| &msg.parts[ids[i] as usize];
    assert_eq!(content_type(part(1)), "message/global-delivery-status");
    assert_eq!(content_type(part(2)), "message/global-headers");
    assert!(text.contains("Final-Recipient: utf-8; jörg@bücher.example\r\n"), "{text}");

    // ASCII addresses only: the RFC 3464 kind, as before.
    let recipients = [recipient("bob@fabrikam.com", Action::Failed, "5.1.1")];
    let raw = build(&input(&recipients, ORIGINAL));
    assert_eq!(parse(&raw).content_type().and_then(|c| c.attribute("report-type")), Some("delivery-status"));
}
