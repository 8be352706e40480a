//! The logs as an administrator reads them: files in a temporary directory,
//! time from a [`ManualClock`].
use super::*;
use crate::clock::{ManualClock, SharedClock};
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn at(s: &str) -> SystemTime {
    OffsetDateTime::parse(s, &Rfc3339).expect("test time").into()
}

fn settings(dir: &Path) -> LogSettings {
    LogSettings {
        directory: dir.to_path_buf(),
        max_age: Duration::from_secs(30 * 86400),
        max_directory_size: 250 * 1024 * 1024,
        max_file_size: 10 * 1024 * 1024,
    }
}

fn clock_at(s: &str) -> (ManualClock, SharedClock) {
    let clock = ManualClock::new(at(s));
    let shared: SharedClock = Arc::new(clock.clone());
    (clock, shared)
}

/// `(file name, contents)` of a log directory, in name order.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                let e = e.expect("entry");
                (e.file_name().to_string_lossy().into_owned(), fs::read_to_string(e.path()).expect("read log"))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    // Instance numbers in numeric order: -2 before -10.
    out.sort_by_key(|(name, _)| {
        let (stem, n) = name.trim_end_matches(".log").rsplit_once('-').unwrap_or((name.as_str(), ""));
        (stem.to_string(), n.parse::<u32>().unwrap_or(0), name.clone())
    });
    out
}

/// The rows of a log file (header lines dropped), without line ends.
fn rows(contents: &str) -> Vec<&str> {
    assert!(contents.ends_with("\r\n"), "a file ends with a whole row");
    contents.split_terminator("\r\n").filter(|l| !l.starts_with('#')).collect()
}

fn header(contents: &str) -> Vec<&str> {
    contents.split_terminator("\r\n").take_while(|l| l.starts_with('#')).collect()
}

#[test]
fn connectivity_log_reproduces_the_seed() {
    // Exchange's session ids are .NET ticks of its start plus a counter:
    // 08D03F2DE58E0D70 is 2013-06-24T20:09:41.661016Z.
    let ticks: u64 = 0x08D0_3F2D_E58E_0D70;
    let start = UNIX_EPOCH + Duration::from_nanos((ticks - 621_355_968_000_000_000) * 100);
    let clock = ManualClock::new(start);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ConnectivityLog::open(&settings(dir.path()), Arc::new(clock.clone())).expect("open");

    let mapi = log.session("MapiSubmission", "89294a5c-bf90-4ae2-a3ff-7f2b81b4ba71");
    let smtp = log.session("SMTP", "mailboxtransportsubmissioninternalproxy");
    assert_eq!((mapi.id(), smtp.id()), ("08D03F2DE58E0D70", "08D03F2DE58E0D71"));
    clock.set(at("2013-06-27T21:08:37.520Z"));
    mapi.connect("Exchange-Server.contoso.com");
    clock.set(at("2013-06-27T21:08:37.536Z"));
    smtp.connect("Undefined 00000000-0000-0000-0000-000000000000;QueueLength=0");
    smtp.send("Exchange-Server.contoso[192.168.0.12]");
    smtp.send("Established connection to 192.168.0.12");
    clock.set(at("2013-06-27T21:08:37.583Z"));
    smtp.disconnect("Messages: 0 Bytes: 0 (Retry : Service not active)");

    let files = files(&dir.path().join("Connectivity"));
    assert_eq!(files.len(), 1);
    let (name, contents) = &files[0];
    assert_eq!(name, "CONNECTLOG20130627-1.log");
    assert_eq!(
        header(contents),
        [
            "#Software: kube-transport".to_string(),
            format!("#Version: {}", env!("CARGO_PKG_VERSION")),
            "#Log-Type: Transport Connectivity Log".to_string(),
            "#Date: 2013-06-27T21:08:37.520Z".to_string(),
            "#Fields: date-time,session,source,destination,direction,description".to_string(),
        ]
    );
    assert_eq!(
        rows(contents),
        [
            "2013-06-27T21:08:37.520Z,08D03F2DE58E0D70,MapiSubmission,89294a5c-bf90-4ae2-a3ff-7f2b81b4ba71,+,Exchange-Server.contoso.com",
            "2013-06-27T21:08:37.536Z,08D03F2DE58E0D71,SMTP,mailboxtransportsubmissioninternalproxy,+,Undefined 00000000-0000-0000-0000-000000000000;QueueLength=0",
            "2013-06-27T21:08:37.536Z,08D03F2DE58E0D71,SMTP,mailboxtransportsubmissioninternalproxy,>,Exchange-Server.contoso[192.168.0.12]",
            "2013-06-27T21:08:37.536Z,08D03F2DE58E0D71,SMTP,mailboxtransportsubmissioninternalproxy,>,Established connection to 192.168.0.12",
            "2013-06-27T21:08:37.583Z,08D03F2DE58E0D71,SMTP,mailboxtransportsubmissioninternalproxy,-,Messages: 0 Bytes: 0 (Retry : Service not active)",
        ]
    );
}

#[test]
fn session_ids_are_sixteen_hex_digits_and_unique() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock_at("2025-01-01T00:00:00Z");
    let log = ConnectivityLog::open(&settings(dir.path()), clock.clone()).expect("open");
    let ids: std::collections::BTreeSet<String> = (0..100).map(|_| log.session("SMTP", "x").id().to_string()).collect();
    assert_eq!(ids.len(), 100);
    assert!(ids.iter().all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())));
    // A restart later starts above every id of the earlier run.
    let later = ManualClock::new(at("2025-01-01T00:00:01Z"));
    let log2 = ConnectivityLog::open(&settings(dir.path()), Arc::new(later)).expect("open");
    let next = log2.session("SMTP", "x").id().to_string();
    assert!(ids.iter().all(|id| *id < next), "{next}");
}

#[test]
fn protocol_logs_number_each_session_from_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (clock, shared) = clock_at("2025-03-04T05:06:07.089Z");
    let recv = ProtocolLog::open(ProtocolKind::Receive, &settings(dir.path()), shared.clone()).expect("open");
    let send = ProtocolLog::open(ProtocolKind::Send, &settings(dir.path()), shared).expect("open");

    let local: SocketAddr = "127.0.0.1:25".parse().expect("addr");
    let a = recv.session("Default Frontend", local, "127.0.0.2:40001".parse().expect("addr"));
    let b = recv.session("Default Frontend", local, "[::1]:40002".parse().expect("addr"));
    a.record(LogEvent::Connect, "", "");
    b.record(LogEvent::Connect, "", "");
    a.record(LogEvent::Sent, "220 mx.contoso.com Microsoft ESMTP MAIL Service ready", "");
    clock.advance(Duration::from_millis(11));
    b.record(LogEvent::Received, "EHLO client.example", "");
    a.record(LogEvent::Info, "", "TLS protocol SP_PROT_TLS1_2_SERVER negotiation succeeded");
    a.record(LogEvent::Disconnect, "", "Remote(SocketError)");
    let out_local = || "10.0.0.1:41000".parse::<SocketAddr>().expect("addr");
    let out_remote = || "10.0.0.9:25".parse::<SocketAddr>().expect("addr");
    let out = send.session("Internet", out_local(), out_remote());
    out.record(LogEvent::Received, "220 mx.fabrikam.com ESMTP", "");

    let recv_files = files(&dir.path().join("ProtocolLog").join("SmtpReceive"));
    assert_eq!(recv_files.len(), 1);
    assert_eq!(recv_files[0].0, "RECV20250304-1.log");
    let contents = &recv_files[0].1;
    let h = header(contents);
    assert_eq!(h[2], "#Log-Type: SMTP Receive Protocol Log");
    assert_eq!(
        h[4],
        "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context"
    );
    let (ia, ib) = (a.id(), b.id());
    assert_ne!(ia, ib);
    assert_eq!(
        rows(contents),
        [
            format!("2025-03-04T05:06:07.089Z,Default Frontend,{ia},0,127.0.0.1:25,127.0.0.2:40001,+,,"),
            format!("2025-03-04T05:06:07.089Z,Default Frontend,{ib},0,127.0.0.1:25,[::1]:40002,+,,"),
            format!("2025-03-04T05:06:07.089Z,Default Frontend,{ia},1,127.0.0.1:25,127.0.0.2:40001,>,220 mx.contoso.com Microsoft ESMTP MAIL Service ready,"),
            format!("2025-03-04T05:06:07.100Z,Default Frontend,{ib},1,127.0.0.1:25,[::1]:40002,<,EHLO client.example,"),
            format!("2025-03-04T05:06:07.100Z,Default Frontend,{ia},2,127.0.0.1:25,127.0.0.2:40001,*,,TLS protocol SP_PROT_TLS1_2_SERVER negotiation succeeded"),
            format!("2025-03-04T05:06:07.100Z,Default Frontend,{ia},3,127.0.0.1:25,127.0.0.2:40001,-,,Remote(SocketError)"),
        ]
    );

    // An outbound session can reuse its connectivity log id.
    let again = send.session_with_id("08D03F2DE58E0D71", "Internet", out_local(), out_remote());
    again.record(LogEvent::Connect, "", "");
    assert_eq!(again.id(), "08D03F2DE58E0D71");

    let send_files = files(&dir.path().join("ProtocolLog").join("SmtpSend"));
    assert_eq!(send_files.len(), 1);
    assert_eq!(send_files[0].0, "SEND20250304-1.log");
    assert_eq!(header(&send_files[0].1)[2], "#Log-Type: SMTP Send Protocol Log");
    assert_eq!(
        rows(&send_files[0].1),
        [
            format!(
                "2025-03-04T05:06:07.100Z,Internet,{},0,10.0.0.1:41000,10.0.0.9:25,<,220 mx.fabrikam.com ESMTP,",
                out.id()
            ),
            "2025-03-04T05:06:07.100Z,Internet,08D03F2DE58E0D71,0,10.0.0.1:41000,10.0.0.9:25,+,,".to_string(),
        ]
    );
}

#[test]
fn hostile_data_is_quoted_and_stays_on_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock_at("2025-03-04T05:06:07Z");
    let log = ProtocolLog::open(ProtocolKind::Receive, &settings(dir.path()), clock).expect("open");
    let s =
        log.session("Default, Frontend", "127.0.0.1:25".parse().expect("addr"), "127.0.0.2:1".parse().expect("addr"));
    s.record(LogEvent::Received, "MAIL FROM:<\"a,b\"@x>\r\n2025-01-01T00:00:00.000Z,forged,row", "say \"hi\"");
    let files = files(&dir.path().join("ProtocolLog").join("SmtpReceive"));
    let rows = rows(&files[0].1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0],
        format!(
            "2025-03-04T05:06:07.000Z,\"Default, Frontend\",{},0,127.0.0.1:25,127.0.0.2:1,<,\"MAIL FROM:<\"\"a,b\"\"@x>\\r\\n2025-01-01T00:00:00.000Z,forged,row\",\"say \"\"hi\"\"\"",
            s.id()
        )
    );
}

#[test]
fn a_new_file_when_the_size_limit_would_be_exceeded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock_at("2025-03-04T05:06:07Z");
    let mut s = settings(dir.path());
    // The header lines and two of these rows fit (about 185 + 2 x 100 bytes), three do not.
    s.max_file_size = 400;
    let log = ConnectivityLog::open(&s, clock.clone()).expect("open");
    let session = log.session("SMTP", "fabrikam.com");
    let descriptions: Vec<String> = (0..7).map(|i| format!("row {i} {}", "x".repeat(30))).collect();
    for d in &descriptions {
        session.send(d);
    }
    let files = files(&dir.path().join("Connectivity"));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.len() >= 3, "{names:?}");
    let mut all_rows = Vec::new();
    for (i, (name, contents)) in files.iter().enumerate() {
        assert_eq!(*name, format!("CONNECTLOG20250304-{}.log", i + 1));
        assert!(contents.len() <= 400, "{name} has {} bytes", contents.len());
        assert_eq!(header(contents).len(), 5, "every file starts with the header lines");
        assert!(!rows(contents).is_empty());
        all_rows.extend(rows(contents).into_iter().map(|r| r.rsplit(',').next().unwrap_or_default().to_string()));
    }
    assert_eq!(all_rows, descriptions, "no row lost, none split, in order");

    // A restart the same day starts the next instance instead of appending.
    let again = ConnectivityLog::open(&s, clock).expect("reopen");
    again.session("SMTP", "fabrikam.com").send("after restart");
    let after = self::files(&dir.path().join("Connectivity"));
    let last = after.last().expect("a file");
    assert_eq!(last.0, format!("CONNECTLOG20250304-{}.log", files.len() + 1));
    assert_eq!(rows(&last.1).len(), 1);
}

#[test]
fn a_row_larger_than_the_limit_still_gets_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock_at("2025-03-04T05:06:07Z");
    let mut s = settings(dir.path());
    s.max_file_size = 10;
    let log = ConnectivityLog::open(&s, clock).expect("open");
    let session = log.session("SMTP", "fabrikam.com");
    session.send("first");
    session.send("second");
    let files = files(&dir.path().join("Connectivity"));
    assert_eq!(files.len(), 2);
    assert!(rows(&files[0].1)[0].ends_with(",>,first"));
    assert!(rows(&files[1].1)[0].ends_with(",>,second"));
}

#[test]
fn a_new_file_when_the_utc_date_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (clock, shared) = clock_at("2013-06-27T23:59:59.999Z");
    let log = ConnectivityLog::open(&settings(dir.path()), shared).expect("open");
    let session = log.session("SMTP", "fabrikam.com");
    session.connect("before midnight");
    clock.advance(Duration::from_millis(1));
    session.disconnect("after midnight");
    let files = files(&dir.path().join("Connectivity"));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["CONNECTLOG20130627-1.log", "CONNECTLOG20130628-1.log"]);
    assert_eq!(header(&files[1].1)[3], "#Date: 2013-06-28T00:00:00.000Z");
    assert_eq!(
        rows(&files[0].1),
        [format!("2013-06-27T23:59:59.999Z,{},SMTP,fabrikam.com,+,before midnight", session.id())]
    );
    assert_eq!(
        rows(&files[1].1),
        [format!("2013-06-28T00:00:00.000Z,{},SMTP,fabrikam.com,-,after midnight", session.id())]
    );
}

/// A file of `size` bytes named like a connectivity log file, modified at `modified`.
fn old_file(dir: &Path, name: &str, size: usize, modified: SystemTime) {
    fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join(name);
    fs::write(&path, vec![b'#'; size]).expect("write");
    fs::File::options().write(true).open(&path).expect("open").set_modified(modified).expect("set mtime");
}

#[test]
fn retention_by_directory_size_deletes_the_oldest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("Connectivity");
    let now = at("2025-03-04T05:06:07Z");
    old_file(&logs, "CONNECTLOG20250301-1.log", 450, now);
    old_file(&logs, "CONNECTLOG20250301-2.log", 450, now);
    old_file(&logs, "CONNECTLOG20250302-1.log", 450, now);
    old_file(&logs, "CONNECTLOG20250303-1.log", 450, now);
    old_file(&logs, "notes.txt", 5000, now);
    let mut s = settings(dir.path());
    s.max_directory_size = 1000;
    s.max_file_size = 300;
    let (_, clock) = clock_at("2025-03-04T05:06:07Z");

    // At open: 1800 bytes of this log's files, limit 1000: the two oldest go.
    let log = ConnectivityLog::open(&s, clock).expect("open");
    let names = |d: &Path| files(d).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(&logs), ["CONNECTLOG20250302-1.log", "CONNECTLOG20250303-1.log", "notes.txt"]);

    // After a rollover: the new file counts too, and is never the one deleted.
    let session = log.session("SMTP", "fabrikam.com");
    session.send("x");
    assert_eq!(names(&logs), ["CONNECTLOG20250303-1.log", "CONNECTLOG20250304-1.log", "notes.txt"]);
    for i in 0..20 {
        session.send(&format!("row {i} {}", "y".repeat(40)));
    }
    let left = names(&logs);
    assert!(!left.contains(&"CONNECTLOG20250303-1.log".to_string()), "{left:?}");
    assert!(left.contains(&"notes.txt".to_string()), "other files are left alone");
    let total: u64 =
        files(&logs).iter().filter(|(n, _)| n.starts_with("CONNECTLOG")).map(|(_, c)| c.len() as u64).sum();
    assert!(total <= 1000 + 300, "at most the limit plus the file being written: {total}");
    let last = files(&logs).into_iter().rev().find(|(n, _)| n.starts_with("CONNECTLOG")).expect("current file");
    assert!(rows(&last.1).last().expect("row").contains("row 19"));
}

#[test]
fn retention_by_age_uses_the_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("ProtocolLog").join("SmtpSend");
    let now = at("2013-06-27T12:00:00Z");
    old_file(&logs, "SEND20130501-1.log", 10, now - Duration::from_secs(31 * 86400));
    old_file(&logs, "SEND20130527-1.log", 10, now - Duration::from_secs(30 * 86400 + 60));
    old_file(&logs, "SEND20130528-1.log", 10, now - Duration::from_secs(29 * 86400));
    old_file(&logs, "RECV20130501-1.log", 10, now - Duration::from_secs(90 * 86400));
    let names = |d: &Path| files(d).into_iter().map(|(n, _)| n).collect::<Vec<_>>();

    // max_age zero: nothing is deleted by age.
    let mut s = settings(dir.path());
    s.max_age = Duration::ZERO;
    let (clock, shared) = clock_at("2013-06-27T12:00:00Z");
    ProtocolLog::open(ProtocolKind::Send, &s, shared.clone()).expect("open");
    assert_eq!(names(&logs).len(), 4);

    s.max_age = Duration::from_secs(30 * 86400);
    let log = ProtocolLog::open(ProtocolKind::Send, &s, shared).expect("open");
    assert_eq!(names(&logs), ["RECV20130501-1.log", "SEND20130528-1.log"], "only this log's files, by age");

    // Two days later the next rollover (a new day) removes the 29-day-old file.
    clock.advance(Duration::from_secs(2 * 86400));
    let session = log.session("Internet", "127.0.0.1:1".parse().expect("addr"), "127.0.0.1:25".parse().expect("addr"));
    session.record(LogEvent::Connect, "", "");
    assert_eq!(names(&logs), ["RECV20130501-1.log", "SEND20130629-1.log"]);
}

#[test]
fn disabled_logs_write_nothing_and_enabled_logs_create_files_with_their_first_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock_at("2025-03-04T05:06:07Z");
    let conn = ConnectivityLog::disabled();
    let s = conn.session("SMTP", "fabrikam.com");
    s.connect("a");
    s.send("b");
    s.disconnect("c");
    assert_eq!(s.id(), "");
    let proto = ProtocolLog::disabled();
    let p = proto.session("x", "127.0.0.1:25".parse().expect("addr"), "127.0.0.1:2".parse().expect("addr"));
    p.record(LogEvent::Info, "data", "context");
    assert_eq!(p.id(), "");

    let enabled = ConnectivityLog::open(&settings(dir.path()), clock).expect("open");
    assert!(dir.path().join("Connectivity").is_dir());
    assert!(files(&dir.path().join("Connectivity")).is_empty(), "no file before the first row");
    enabled.session("SMTP", "fabrikam.com");
    assert!(files(&dir.path().join("Connectivity")).is_empty(), "a session alone writes no row");
}

#[test]
fn write_errors_do_not_panic_and_the_log_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (clock, shared) = clock_at("2025-03-04T05:06:07Z");
    let log = ConnectivityLog::open(&settings(dir.path()), shared).expect("open");
    let logs = dir.path().join("Connectivity");
    let session = log.session("SMTP", "fabrikam.com");
    session.connect("one");
    fs::remove_dir_all(&logs).expect("remove the log directory");
    // The next day needs a new file in a directory that is gone.
    clock.advance(Duration::from_secs(86400));
    session.send("lost");
    session.send("lost too");
    fs::create_dir_all(&logs).expect("mkdir");
    session.disconnect("back");
    let files = files(&logs);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, "CONNECTLOG20250305-1.log");
    assert_eq!(rows(&files[0].1).len(), 1);
    assert!(rows(&files[0].1)[0].ends_with(",-,back"));
}

#[test]
fn concurrent_writers_never_interleave_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, clock) = clock_at("2025-03-04T05:06:07Z");
    let mut s = settings(dir.path());
    s.max_file_size = 4096;
    let log = ProtocolLog::open(ProtocolKind::Receive, &s, clock).expect("open");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let session =
                    log.session("Default", "127.0.0.1:25".parse().expect("addr"), "127.0.0.2:9".parse().expect("addr"));
                for i in 0..200 {
                    session.record(LogEvent::Received, &format!("thread {t} line {i} {}", "z".repeat(i % 50)), "");
                }
                session.id().to_string()
            })
        })
        .collect();
    let ids: Vec<String> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    let files = files(&dir.path().join("ProtocolLog").join("SmtpReceive"));
    assert!(files.len() > 1, "the size limit rolled the file");
    let mut next = vec![0u64; ids.len()];
    for (_, contents) in &files {
        for row in rows(contents) {
            let cols: Vec<&str> = row.split(',').collect();
            assert_eq!(cols.len(), 9, "{row}");
            let t = ids.iter().position(|id| id == cols[2]).expect("known session");
            assert_eq!(cols[3], next[t].to_string(), "sequence numbers in file order");
            assert!(cols[7].starts_with(&format!("thread {t} line {} ", next[t])), "{row}");
            next[t] += 1;
        }
    }
    assert_eq!(next, vec![200; 4]);
}
