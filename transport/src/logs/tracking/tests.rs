//! The tracking log as an administrator uses it: events written through the
//! [`Record`] builder on a [`ManualClock`], then found with Get-MessageTrackingLog's
//! filters.
use super::*;
use crate::clock::ManualClock;
use crate::envelope::{MessageId, Origin, Recipient};
use std::time::{Duration, SystemTime};
use time::format_description::well_known::Rfc3339;

fn at(s: &str) -> SystemTime {
    OffsetDateTime::parse(s, &Rfc3339).expect("test time").into()
}

fn open(dir: &Path, clock: &ManualClock, subjects: bool) -> TrackingLog {
    let settings = TrackingSettings {
        retention: LogSettings {
            directory: dir.to_path_buf(),
            max_age: Duration::from_secs(30 * 86400),
            max_directory_size: 1000 * 1024 * 1024,
            max_file_size: 10 * 1024 * 1024,
        },
        subjects,
    };
    TrackingLog::open(&settings, Arc::new(clock.clone())).expect("open the tracking log")
}

/// `from` empty: the null sender.
fn envelope(id: u64, from: &str, to: &[&str]) -> Envelope {
    let origin = Origin {
        connector: "Default".into(),
        client_ip: Some("192.0.2.7".parse().unwrap()),
        helo: "client.example".into(),
        tls: false,
        source: Default::default(),
    };
    let address = |text: &str| crate::envelope::Address::parse(text).unwrap();
    let recipients = to.iter().map(|r| Recipient::new(address(r))).collect();
    Envelope {
        subject: Some("Quarterly, \"final\" figures".into()),
        internet_message_id: Some(format!("<m{id}@example.org>").into()),
        ..Envelope::new(MessageId(id), (!from.is_empty()).then(|| address(from)), recipients, 1234, origin, 0)
    }
}

fn query() -> TrackingQuery {
    TrackingQuery::default()
}

fn events(records: &[TrackingRecord]) -> Vec<(u64, TrackingEvent)> {
    records.iter().map(|r| (r.internal_message_id, r.event_id)).collect()
}

#[test]
fn the_fields_line_and_the_column_numbers_agree() {
    let names: Vec<&str> = FIELDS.split(',').collect();
    assert_eq!(names.len(), FIELD_COUNT);
    for (name, index) in [
        ("date-time", col::DATE_TIME),
        ("client-ip", col::CLIENT_IP),
        ("client-hostname", col::CLIENT_HOSTNAME),
        ("server-ip", col::SERVER_IP),
        ("server-hostname", col::SERVER_HOSTNAME),
        ("source-context", col::SOURCE_CONTEXT),
        ("connector-id", col::CONNECTOR_ID),
        ("source", col::SOURCE),
        ("event-id", col::EVENT_ID),
        ("internal-message-id", col::INTERNAL_MESSAGE_ID),
        ("message-id", col::MESSAGE_ID),
        ("recipient-address", col::RECIPIENT_ADDRESS),
        ("recipient-status", col::RECIPIENT_STATUS),
        ("total-bytes", col::TOTAL_BYTES),
        ("recipient-count", col::RECIPIENT_COUNT),
        ("related-recipient-address", col::RELATED_RECIPIENT_ADDRESS),
        ("reference", col::REFERENCE),
        ("message-subject", col::MESSAGE_SUBJECT),
        ("sender-address", col::SENDER_ADDRESS),
        ("return-path", col::RETURN_PATH),
        ("message-info", col::MESSAGE_INFO),
    ] {
        assert_eq!(names[index], name);
    }
}

#[test]
fn a_message_life_is_found_by_message_id_sender_recipient_and_event() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(at("2026-12-07T08:00:00Z"));
    let log = open(dir.path(), &clock, false);
    let a = envelope(1, "Alice@Example.org", &["bob@example.com", "carol@example.net"]);
    let b = envelope(2, "dave@example.org", &["erin@example.com"]);
    log.record(TrackingEvent::Receive, TrackingSource::Smtp, &a)
        .all_recipients()
        .client(a.origin.client_ip, &a.origin.helo)
        .server(None, "mail-0.example.test")
        .connector("Default")
        .write();
    log.record(TrackingEvent::Receive, TrackingSource::Smtp, &b).all_recipients().write();
    clock.advance(Duration::from_secs(5));
    log.record(TrackingEvent::Send, TrackingSource::Smtp, &a)
        .recipients([(0, "250 2.1.5 Ok".into())])
        .server(Some("198.51.100.25".parse().unwrap()), "mx.example.com")
        .connector("Internet")
        .write();
    log.record(TrackingEvent::Defer, TrackingSource::Smtp, &a)
        .recipients([(1, "451 4.7.1 greylisted; try later".into())])
        .write();

    let all = log.search(&query()).unwrap();
    assert_eq!(
        events(&all),
        [(1, TrackingEvent::Receive), (2, TrackingEvent::Receive), (1, TrackingEvent::Send), (1, TrackingEvent::Defer)]
    );
    let receive = &all[0];
    assert_eq!(receive.timestamp, "2026-12-07T08:00:00.000Z");
    assert_eq!(receive.client_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(receive.client_hostname.as_deref(), Some("client.example"));
    assert_eq!(receive.server_hostname.as_deref(), Some("mail-0.example.test"));
    assert_eq!(receive.connector_id.as_deref(), Some("Default"));
    assert_eq!(receive.source, "SMTP");
    assert_eq!(receive.message_id.as_deref(), Some("<m1@example.org>"));
    assert_eq!(receive.recipients, ["bob@example.com", "carol@example.net"]);
    assert!(receive.recipient_status.is_empty());
    assert_eq!((receive.total_bytes, receive.recipient_count), (1234, 2));
    assert_eq!(receive.sender, "Alice@Example.org");
    assert_eq!(receive.message_subject, None, "subjects are off by default");
    let send = &all[2];
    assert_eq!(send.recipients, ["bob@example.com"]);
    assert_eq!(send.recipient_status, ["250 2.1.5 Ok"]);
    assert_eq!(send.server_ip.as_deref(), Some("198.51.100.25"));
    assert_eq!(send.timestamp, "2026-12-07T08:00:05.000Z");
    // A status with the list separator keeps the lists in step.
    assert_eq!(all[3].recipient_status, ["451 4.7.1 greylisted, try later"]);

    let by_id = log.search(&TrackingQuery { message_id: Some("m1@example.org".into()), ..query() }).unwrap();
    assert_eq!(events(&by_id), [(1, TrackingEvent::Receive), (1, TrackingEvent::Send), (1, TrackingEvent::Defer)]);
    let by_sender = log.search(&TrackingQuery { sender: Some("<alice@EXAMPLE.org>".into()), ..query() }).unwrap();
    assert_eq!(by_sender.len(), 3, "the sender compares without regard to case or brackets");
    let by_recipient = log
        .search(&TrackingQuery { recipients: vec!["nobody@x".into(), "ERIN@example.com".into()], ..query() })
        .unwrap();
    assert_eq!(events(&by_recipient), [(2, TrackingEvent::Receive)]);
    let carol = log.search(&TrackingQuery { recipients: vec!["carol@example.net".into()], ..query() }).unwrap();
    assert_eq!(events(&carol), [(1, TrackingEvent::Receive), (1, TrackingEvent::Defer)], "SEND named only bob");
    let sends = log.search(&TrackingQuery { event_id: Some(TrackingEvent::Send), ..query() }).unwrap();
    assert_eq!(events(&sends), [(1, TrackingEvent::Send)]);
    let internal = log.search(&TrackingQuery { internal_message_id: Some(2), ..query() }).unwrap();
    assert_eq!(events(&internal), [(2, TrackingEvent::Receive)]);
    let first = log.search(&TrackingQuery { result_size: Some(ResultSize::Rows(2)), ..query() }).unwrap();
    assert_eq!(events(&first), [(1, TrackingEvent::Receive), (2, TrackingEvent::Receive)], "the oldest first");
}

#[test]
fn a_dsn_is_found_by_the_message_id_it_reports_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(at("2026-12-07T08:00:00Z"));
    let log = open(dir.path(), &clock, false);
    let original = envelope(1, "alice@example.org", &["bob@example.com"]);
    let mut report = envelope(2, "", &["alice@example.org"]);
    report.mail_from = None;
    log.record(TrackingEvent::Fail, TrackingSource::Smtp, &original)
        .recipients([(0, "550 5.1.1 no such user".into())])
        .write();
    log.record(TrackingEvent::Dsn, TrackingSource::Dsn, &report)
        .all_recipients()
        .reference("<m1@example.org>")
        .message_info("failed")
        .write();
    let found = log.search(&TrackingQuery { message_id: Some("<m1@example.org>".into()), ..query() }).unwrap();
    assert_eq!(events(&found), [(1, TrackingEvent::Fail), (2, TrackingEvent::Dsn)]);
    assert_eq!(found[1].reference.as_deref(), Some("<m1@example.org>"));
    assert_eq!(found[1].sender, "", "the null sender");
    assert_eq!(found[1].message_info.as_deref(), Some("failed"));
}

#[test]
fn the_time_window_reads_only_the_days_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(at("2026-12-05T23:59:59Z"));
    let log = open(dir.path(), &clock, false);
    for id in 1..=3 {
        log.record(TrackingEvent::Receive, TrackingSource::Smtp, &envelope(id, "a@x", &["b@y"]))
            .all_recipients()
            .write();
        clock.advance(Duration::from_secs(86400));
    }
    let files = std::fs::read_dir(dir.path().join("MessageTracking")).unwrap().count();
    assert_eq!(files, 3, "one file a day");
    let window = |start: &str, end: &str| {
        let q = TrackingQuery { start: Some(start.into()), end: Some(end.into()), ..query() };
        events(&log.search(&q).unwrap())
    };
    assert_eq!(window("2026-12-06T00:00:00Z", "2026-12-07T00:00:00Z"), [(2, TrackingEvent::Receive)]);
    assert_eq!(
        window("2026-12-06T23:59:59Z", "2026-12-08T00:00:00Z"),
        [(2, TrackingEvent::Receive), (3, TrackingEvent::Receive)]
    );
    // An offset is taken as the time it names: 2026-12-05T23:59:59Z, the day before in UTC.
    assert_eq!(window("2026-12-06T00:59:59+01:00", "2026-12-07T00:00:00+01:00"), [(1, TrackingEvent::Receive)]);
    assert_eq!(
        window("2026-12-05T23:59:59Z", "2026-12-06T00:00:00Z"),
        [(1, TrackingEvent::Receive)],
        "the end is exclusive"
    );

    let bad = log.search(&TrackingQuery { start: Some("yesterday".into()), ..query() }).unwrap_err();
    assert!(matches!(bad, SearchError::Query { field: "start", .. }), "{bad}");
    assert!(bad.to_string().contains("RFC 3339"), "{bad}");
    let backwards = TrackingQuery {
        start: Some("2026-12-07T00:00:00Z".into()),
        end: Some("2026-12-06T00:00:00Z".into()),
        ..query()
    };
    assert!(matches!(log.search(&backwards), Err(SearchError::Query { field: "end", .. })));
}

#[test]
fn a_row_cut_short_by_a_crash_is_never_answered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(at("2026-12-07T08:00:00Z"));
    {
        let log = open(dir.path(), &clock, false);
        log.record(TrackingEvent::Receive, TrackingSource::Smtp, &envelope(1, "a@x", &["b@y"]))
            .all_recipients()
            .write();
    }
    // The process died in the middle of its next row.
    let tracking = dir.path().join("MessageTracking");
    let file = std::fs::read_dir(&tracking).unwrap().next().unwrap().unwrap().path();
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("2026-12-07T08:00:01.000Z,,,,,,,SMTP,SEND,1,<m1@example.org>,b@y,250 2.0");
    std::fs::write(&file, text).unwrap();
    // After the restart the log goes on in a new file; the torn row stays unanswered.
    let log = open(dir.path(), &clock, false);
    log.record(TrackingEvent::Send, TrackingSource::Smtp, &envelope(1, "a@x", &["b@y"]))
        .recipients([(0, "250 2.0.0 queued".into())])
        .write();
    let found = log.search(&query()).unwrap();
    assert_eq!(events(&found), [(1, TrackingEvent::Receive), (1, TrackingEvent::Send)]);
    assert_eq!(found[1].recipient_status, ["250 2.0.0 queued"]);
}

#[test]
fn subjects_only_when_asked_and_hostile_text_stays_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(at("2026-12-07T08:00:00Z"));
    let log = open(dir.path(), &clock, true);
    let mut env = envelope(1, "a@x", &["b@y"]);
    env.subject = Some("line one\r\n2026-12-07T08:00:00.000Z,,,,,,,SMTP,SEND,9,forged".into());
    log.record(TrackingEvent::Receive, TrackingSource::Smtp, &env).all_recipients().write();
    log.record(TrackingEvent::Receive, TrackingSource::Smtp, &envelope(2, "a@x", &["b@y"])).all_recipients().write();
    let found = log.search(&query()).unwrap();
    assert_eq!(events(&found), [(1, TrackingEvent::Receive), (2, TrackingEvent::Receive)], "no forged record");
    assert_eq!(found[1].message_subject.as_deref(), Some("Quarterly, \"final\" figures"));
    assert!(found[0].message_subject.as_deref().is_some_and(|s| s.starts_with("line one\\r\\n")));
}

#[test]
fn a_disabled_log_writes_and_finds_nothing() {
    let log = TrackingLog::disabled();
    log.record(TrackingEvent::Receive, TrackingSource::Smtp, &envelope(1, "a@x", &["b@y"])).all_recipients().write();
    assert!(log.search(&query()).unwrap().is_empty());
    // The query is still checked, so a typo is not taken for "nothing happened".
    assert!(log.search(&TrackingQuery { end: Some("soon".into()), ..query() }).is_err());
}
