//! Black box, real time, one-second intervals: smtp-sink is down, then up. The
//! connectivity log shows each failed session and the one that worked, in
//! order, and event 2007 (SmtpSendNewSession) marks the first new session
//! after the failures.

use crate::support::inproc::read_logs;
use crate::support::*;
use std::time::Duration;
use transport::config::TimeSpan;

#[test]
fn connectivity_log_and_event_2007_follow_a_hop_going_down_and_up() {
    let port = free_port();
    let server = start_transport(&TransportSetup {
        smart_host: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        edit: edit(|f| f.retry.queue_glitch_retry_interval = Some(TimeSpan::from_secs(1))),
        ..Default::default()
    });
    let mut c = SmtpClient::connect(server.smtp).unwrap().0;
    c.cmd("EHLO client.test").unwrap();
    assert!(c.send_message("a@example.org", &["b@example.net"], &test_message("conn", 1)).unwrap().starts_with("250"));
    let log_dir = server.dir.join("log").join("Connectivity");
    let destination = format!("127.0.0.1:{port}");
    eventually(Duration::from_secs(20), "two failed sessions in the log", || {
        let failed = read_logs(&log_dir).iter().filter(|l| l.contains(",-,") && l.contains("(Retry : ")).count();
        (failed >= 2).then_some(())
    });
    let sink = Sink::start_on(port, &[]);
    sink.wait_for(1, Duration::from_secs(20));
    let lines = eventually(Duration::from_secs(10), "the successful session's last line", || {
        let lines = read_logs(&log_dir);
        lines.iter().any(|l| l.contains(",-,Messages: 1 Bytes: ")).then_some(lines)
    });
    // Every line: date-time,session,source,destination,direction,description.
    for line in &lines {
        let fields: Vec<&str> = line.splitn(6, ',').collect();
        assert_eq!(fields.len(), 6, "{line}");
        assert!(fields[0].ends_with('Z') && fields[0].contains('T'), "{line}");
        assert_eq!(fields[1].len(), 16, "{line}");
        assert_eq!(fields[2], "SMTP", "{line}");
        assert_eq!(fields[3], destination, "{line}");
        assert!(["+", "-", ">"].contains(&fields[4]), "{line}");
    }
    // Order: failures first, then a session that connects and delivers.
    let first_success = lines.iter().position(|l| l.contains(",>,Established connection to ")).expect("established");
    let failures_before = lines[..first_success].iter().filter(|l| l.contains("(Retry : ")).count();
    assert!(failures_before >= 2, "{lines:#?}");
    let session = lines[first_success].split(',').nth(1).unwrap();
    let own: Vec<&String> = lines.iter().filter(|l| l.split(',').nth(1) == Some(session)).collect();
    assert!(own[0].contains(",+,") && own[0].contains("QueueLength=1"), "{own:#?}");
    assert!(own.last().unwrap().contains(",-,Messages: 1 Bytes: "), "{own:#?}");
    let timestamps: Vec<&str> = lines.iter().map(|l| l.split(',').next().unwrap()).collect();
    assert!(timestamps.windows(2).all(|w| w[0] <= w[1]), "lines in time order");
    // Event 2007 after the failures, naming the connector and the hop.
    let log = server.log();
    let line =
        log.lines().find(|l| l.contains("SmtpSendNewSession")).unwrap_or_else(|| panic!("event 2007 logged:\n{log}"));
    assert!(line.contains("event_id=2007"), "{line}");
    assert!(line.contains(&format!("Send connector Outbound has initiated a new session to {destination}")), "{line}");
    assert_eq!(log.matches("SmtpSendNewSession").count(), 1, "once, for the first session after the failures");
}

#[test]
fn protocol_logs_record_both_directions_of_connectors_that_ask_for_it() {
    use crate::support::inproc::{t0, InProc};
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let setup =
        TransportSetup { server_name: Some("plog-0".into()), smart_host: Some(sink.addr), ..Default::default() };
    let mut file = setup.config_file(&Placement { dir: dir.path(), smtp: free_addr(), admin: None, token_file: None });
    file.receive_connectors[0].settings.protocol_logging = true;
    file.send_connectors[0].protocol_logging = true;
    file.receive_connectors[0].name = "Logged".into();
    file.receive_connectors[0].settings.remote_ip_ranges.clear();
    let server = InProc::start_file(&file, dir.path(), transport::clock::ManualClock::new(t0()));
    let mut c = SmtpClient::connect(server.smtp).unwrap().0;
    c.cmd("EHLO client.test").unwrap();
    assert!(c.send_message("a@example.org", &["b@example.net"], &test_message("plog", 1)).unwrap().starts_with("250"));
    let _ = c.cmd("QUIT");
    sink.wait_for(1, Duration::from_secs(20));
    let log = dir.path().join("log").join("ProtocolLog");
    let recv = eventually(Duration::from_secs(10), "the receive protocol log", || {
        let lines = read_logs(&log.join("SmtpReceive"));
        lines.iter().any(|l| l.contains(",-,")).then_some(lines)
    });
    // date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context
    let fields: Vec<Vec<&str>> = recv.iter().map(|l| l.splitn(9, ',').collect()).collect();
    assert!(fields.iter().all(|f| f.len() >= 8 && f[1] == "Logged"), "{recv:#?}");
    let seq: Vec<u64> = fields.iter().map(|f| f[3].parse().unwrap()).collect();
    assert_eq!(seq, (0..seq.len() as u64).collect::<Vec<_>>(), "sequence numbers from 0: {recv:#?}");
    assert!(fields.iter().any(|f| f[6] == "<" && f[7] == "EHLO client.test"), "{recv:#?}");
    assert!(fields.iter().any(|f| f[6] == ">" && f[7].starts_with("250 2.6.0")), "{recv:#?}");
    assert_eq!(fields[0][6], "+");
    let send = eventually(Duration::from_secs(10), "the send protocol log", || {
        let lines = read_logs(&log.join("SmtpSend"));
        lines.iter().any(|l| l.contains("MAIL FROM:")).then_some(lines)
    });
    assert!(send.iter().all(|l| l.split(',').nth(1) == Some("Outbound")), "{send:#?}");
    assert!(send.iter().any(|l| l.contains(",>,MAIL FROM:<a@example.org>")), "{send:#?}");
    assert!(send.iter().any(|l| l.contains(",<,250")), "{send:#?}");
    // The send session has the id of its connectivity log session.
    let session = send[0].split(',').nth(2).unwrap();
    assert!(server.connectivity_log().iter().any(|l| l.split(',').nth(1) == Some(session)), "{session}");
}
