//! Hostile clients against the real `transport` binary: SMTP smuggling in every
//! bare CR/LF variant, overlong lines, pipelining floods, 10,000 RCPTs,
//! slowloris, connection floods past the per-source and global limits,
//! protocol-error storms, invalid UTF-8 and NUL bytes, huge headers, mail
//! loops and BDAT chunks that lie or smuggle. Each test runs a good client on the side that must be served
//! throughout, and checks the abuse got the right reply and delivered nothing.
//! (The session's unit tests in src/smtp/tests cover the parser's replies one
//! by one; these show what only the whole server can: limits across
//! connections, timers on a real socket, and nothing reaching the next hop.)

use crate::abuse::*;
use crate::support::*;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use transport::config::{ReceiveSettings, TimeSpan};

struct Fixture {
    sink: Sink,
    server: TransportProcess,
    /// The `Tight` connector: 3 connections per source, 5 in all, 2 s
    /// inactivity, 5 s lifetime, 3 protocol errors.
    tight: SocketAddr,
    /// One test at a time (see [`fixture`]); dropped last.
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// Tests of this file run one at a time: each starts servers and peers on
/// ports picked with free_port(), and the abuse (connection floods, many
/// sources) must not meet another test's server on a reused port.
fn fixture() -> Fixture {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sink = Sink::start();
    let tight = free_addr();
    let settings = ReceiveSettings {
        allow_relay: true,
        max_inbound_connection_per_source: Some(3),
        max_inbound_connection: Some(5),
        connection_inactivity_timeout: Some(TimeSpan::from_secs(2)),
        connection_timeout: Some(TimeSpan::from_secs(5)),
        max_protocol_errors: Some(3),
        ..Default::default()
    };
    let server = start_transport(&TransportSetup {
        smart_host: Some(sink.addr),
        edit: edit(move |f| f.receive_connectors.push(receive_connector("Tight", tight, settings.clone()))),
        ..Default::default()
    });
    wait_for_smtp_ready(tight, Duration::from_secs(10));
    Fixture { sink, server, tight, _serial: serial }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A raw session from `source`, greeted.
fn raw_session(source: IpAddr, addr: SocketAddr) -> std::net::TcpStream {
    let mut s = connect_from(source, addr).expect("connect");
    assert_reply(read_reply(&mut s), "220");
    assert_reply(cmd(&mut s, "EHLO abuser.test"), "250");
    s
}

/// Writes `bytes` one at a time, `every` apart, for `for_ms`, then reads what
/// the server said until it closed (stopping before the server's post-close
/// drain ends, so no reset can swallow its reply).
fn trickle(s: &mut std::net::TcpStream, bytes: &[u8], every: Duration, for_ms: u64) -> String {
    let started = Instant::now();
    for b in bytes.iter().cycle() {
        if started.elapsed() >= Duration::from_millis(for_ms) || s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(every);
    }
    rest(s)
}

fn open_transaction(s: &mut std::net::TcpStream) {
    assert_reply(cmd(s, "MAIL FROM:<evil@example.org>"), "250");
    assert_reply(cmd(s, "RCPT TO:<victim@example.net>"), "250");
    assert_reply(cmd(s, "DATA"), "354");
}

#[test]
fn smtp_smuggling_in_every_bare_line_end_variant_is_refused_and_never_delivered() {
    let f = fixture();
    let good = GoodClient::start(f.server.smtp, "smuggling");
    let variants: [(&str, &[u8]); 8] = [
        ("lf-dot-lf", b"\n.\n"),
        ("cr-dot-cr", b"\r.\r"),
        ("lf-dot-crlf", b"\n.\r\n"),
        ("crlf-dot-lf", b"\r\n.\n"),
        ("crlf-dot-cr", b"\r\n.\r"),
        ("cr-dot-crlf", b"\r.\r\n"),
        ("lf-dot-cr", b"\n.\r"),
        ("bare-cr-only", b"\r\n.\rX\r"),
    ];
    for (name, end) in variants {
        let mut s = raw_session(ip(2), f.server.smtp);
        open_transaction(&mut s);
        let mut data = format!("Message-ID: <carrier-{name}@test.invalid>\r\n\r\nhello").into_bytes();
        data.extend_from_slice(end);
        data.extend_from_slice(
            format!(
                "MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n\
                 Message-ID: <smuggled-{name}@test.invalid>\r\n\r\nevil\r\n.\r\n"
            )
            .as_bytes(),
        );
        s.write_all(&data).expect("send");
        assert_reply(read_reply(&mut s), "550 5.6.0");
        // The session is in a clean state: the smuggled commands were data.
        assert_reply(cmd(&mut s, "RSET"), "250");
        assert_reply(cmd(&mut s, "QUIT"), "221");
    }
    good.finish(&f.sink);
    std::thread::sleep(Duration::from_secs(1));
    let ids = f.sink.message_ids();
    let leaked: Vec<_> = ids.keys().filter(|k| k.contains("smuggled") || k.contains("carrier")).collect();
    assert!(leaked.is_empty(), "smuggling leaked: {leaked:?}");
}

#[test]
fn overlong_lines_and_paths_are_refused_and_the_session_goes_on() {
    let f = fixture();
    let good = GoodClient::start(f.server.smtp, "overlong");
    let mut s = raw_session(ip(2), f.server.smtp);
    // A command line of 10 KB, and one of 1 MB without a line end for a while.
    assert_reply(cmd(&mut s, &format!("NOOP {}", "a".repeat(10_000))), "500 5.5.2");
    s.write_all(&vec![b'x'; 1 << 20]).expect("send a megabyte");
    assert_reply(cmd(&mut s, ""), "500 5.5.2");
    assert_reply(cmd(&mut s, "NOOP"), "250");
    assert_reply(cmd(&mut s, "QUIT"), "221");
    // Paths and parts over the RFC 5321 §4.5.3.1 limits (a new session: each
    // of these counts as a protocol error).
    let mut s = raw_session(ip(2), f.server.smtp);
    assert_reply(cmd(&mut s, &format!("MAIL FROM:<{}@example.org>", "l".repeat(65))), "501 5.1.7");
    assert_reply(cmd(&mut s, &format!("MAIL FROM:<a@{}.example>", "d".repeat(64))), "501 5.1.7");
    assert_reply(cmd(&mut s, "MAIL FROM:<a@example.org>"), "250");
    let long_domain = vec!["abcdefghij"; 30].join(".");
    assert_reply(cmd(&mut s, &format!("RCPT TO:<a@{long_domain}>")), "501 5.1.3");
    assert_reply(cmd(&mut s, &format!("RCPT TO:<a@b.example> ORCPT=rfc822;{}", "x".repeat(600))), "501 5.5.4");
    assert_reply(cmd(&mut s, "RCPT TO:<ok@example.net>"), "250");
    assert_reply(cmd(&mut s, "QUIT"), "221");
    good.finish(&f.sink);
}

#[test]
fn pipelining_floods_are_answered_in_order() {
    let f = fixture();
    let good = GoodClient::start(f.server.smtp, "pipelining");
    let mut s = raw_session(ip(2), f.server.smtp);
    // 2,000 commands in one write, replies read afterwards.
    let flood: String = (0..2000).map(|i| if i % 2 == 0 { "NOOP\r\n" } else { "RSET\r\n" }).collect();
    s.write_all(flood.as_bytes()).expect("flood");
    for i in 0..2000 {
        let r = read_reply(&mut s).unwrap_or_else(|| panic!("reply {i} missing"));
        assert!(r.starts_with("250"), "reply {i}: {r}");
    }
    // A whole transaction and the next one in a single write (DATA's content
    // pipelined too, which RFC 2920 forbids but clients do).
    let tx = |id: &str| {
        format!(
            "MAIL FROM:<p@example.org>\r\nRCPT TO:<p@example.net>\r\nDATA\r\nMessage-ID: <{id}@test.invalid>\r\n\r\nx\r\n.\r\n"
        )
    };
    s.write_all(format!("{}{}QUIT\r\n", tx("piped-1"), tx("piped-2")).as_bytes()).expect("pipelined");
    for _ in 0..2 {
        for code in ["250", "250", "354", "250 2.6.0"] {
            assert_reply(read_reply(&mut s), code);
        }
    }
    assert_reply(read_reply(&mut s), "221");
    let n = good.finish(&f.sink);
    f.sink.wait_for(n + 2, Duration::from_secs(30));
    let ids = f.sink.message_ids();
    assert!(ids.contains_key("<piped-1@test.invalid>") && ids.contains_key("<piped-2@test.invalid>"));
}

#[test]
fn ten_thousand_rcpt_commands_get_452_4_5_3_past_the_limit() {
    let f = fixture();
    let good = GoodClient::start(f.server.smtp, "rcpt");
    let mut s = raw_session(ip(2), f.server.smtp);
    assert_reply(cmd(&mut s, "MAIL FROM:<many@example.org>"), "250");
    let (mut ok, mut limited) = (0, 0);
    for batch in 0..20 {
        let lines: String = (0..500).map(|i| format!("RCPT TO:<r{}@example.net>\r\n", batch * 500 + i)).collect();
        s.write_all(lines.as_bytes()).expect("rcpts");
        for _ in 0..500 {
            let r = read_reply(&mut s).expect("a reply to each RCPT");
            if r.starts_with("250") {
                ok += 1;
            } else {
                assert!(r.starts_with("452 4.5.3"), "{r}");
                limited += 1;
            }
        }
    }
    assert_eq!((ok, limited), (200, 9800), "the Exchange default of 200 recipients per message");
    assert_reply(cmd(&mut s, "DATA"), "354");
    s.write_all(b"Message-ID: <many-rcpts@test.invalid>\r\n\r\nhi\r\n.\r\n").expect("data");
    assert_reply(read_reply(&mut s), "250 2.6.0");
    let n = good.finish(&f.sink);
    let msgs = f.sink.wait_for(n + 1, Duration::from_secs(60));
    let many = msgs.iter().find(|m| m.header("Message-ID").as_deref() == Some("<many-rcpts@test.invalid>"));
    assert_eq!(many.expect("delivered").rcpt_args.len(), 200);
}

#[test]
fn slowloris_is_cut_off_by_the_inactivity_and_lifetime_timeouts() {
    let f = fixture();
    let good = GoodClient::start(f.tight, "slowloris");
    // One byte per half second of a command line: the line must be complete
    // within the 2 s inactivity timeout, however steadily bytes trickle in.
    let mut s = raw_session(ip(2), f.tight);
    let text = trickle(&mut s, b"NOOP and a very slowly written command", Duration::from_millis(500), 2500);
    assert!(text.starts_with("421 4.4.2"), "{text}");
    assert!(text.contains("Timeout"), "{text}");
    // Message data one byte per second: each read is in time, the 5 s
    // connection lifetime ends it.
    let mut s = raw_session(ip(3), f.tight);
    open_transaction(&mut s);
    let reply = trickle(&mut s, b"Subject: slow\r\n\r\n", Duration::from_millis(1000), 5500);
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    assert!(reply.contains("lifetime"), "{reply}");
    let n = good.finish(&f.sink);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(f.sink.messages().len(), n, "only the good client's messages were delivered");
}

#[test]
fn connections_past_the_per_source_and_global_limits_get_421_4_3_2() {
    let f = fixture();
    // Default connector, Exchange's MaxInboundConnectionPerSource of 20.
    let mut held: Vec<_> = (0..20).map(|_| raw_session(ip(2), f.server.smtp)).collect();
    let mut extra = connect_from(ip(2), f.server.smtp).expect("connect");
    assert_reply(read_reply(&mut extra), "421 4.3.2");
    drop(extra);
    // Another source is not affected.
    let good = GoodClient::start(f.server.smtp, "limits");
    held.clear();

    // Tight: 3 per source, 5 in all.
    let a: Vec<_> = (0..3).map(|_| raw_session(ip(3), f.tight)).collect();
    let mut fourth = connect_from(ip(3), f.tight).expect("connect");
    assert_reply(read_reply(&mut fourth), "421 4.3.2");
    let b: Vec<_> = (0..2).map(|_| raw_session(ip(4), f.tight)).collect();
    let mut over = connect_from(ip(5), f.tight).expect("connect");
    assert_reply(read_reply(&mut over), "421 4.3.2");
    // A flood of short connections from one source while the limit is reached.
    for _ in 0..200 {
        let mut c = connect_from(ip(6), f.tight).expect("connect");
        assert_reply(read_reply(&mut c), "421 4.3.2");
    }
    // Slots come back as sessions end.
    drop(a);
    drop(b);
    eventually(Duration::from_secs(10), "a free slot on Tight", || {
        let mut c = connect_from(ip(7), f.tight).ok()?;
        read_reply(&mut c).filter(|r| r.starts_with("220"))
    });
    let mut c = raw_session(ip(7), f.tight);
    open_transaction(&mut c);
    c.write_all(b"Message-ID: <after-limits@test.invalid>\r\n\r\nok\r\n.\r\n").expect("data");
    assert_reply(read_reply(&mut c), "250 2.6.0");
    let n = good.finish(&f.sink);
    f.sink.wait_for(n + 1, Duration::from_secs(30));
    let log = f.server.log();
    assert!(log.contains("maxInboundConnectionPerSource reached"), "per-source refusals are logged");
    assert!(log.contains("maxInboundConnection reached"), "global refusals are logged");
}

#[test]
fn too_many_protocol_errors_close_the_connection_with_421() {
    let f = fixture();
    let good = GoodClient::start(f.server.smtp, "errors");
    // Default connector: Exchange's MaxProtocolErrors of 5.
    let mut s = raw_session(ip(2), f.server.smtp);
    for _ in 0..5 {
        assert_reply(cmd(&mut s, "GARBAGE"), "500 5.5.2");
    }
    assert_reply(cmd(&mut s, "MAIL FROM:<bad"), "501");
    let last = assert_reply(read_reply(&mut s), "421 4.7.0");
    assert!(last.contains("Too many errors"), "{last}");
    assert_eq!(rest(&mut s), "", "closed after the 421");
    // Sequence errors are not protocol errors: a pipelining client that got
    // one refusal is not thrown out.
    let mut s = raw_session(ip(2), f.server.smtp);
    for _ in 0..20 {
        assert_reply(cmd(&mut s, "RCPT TO:<x@example.net>"), "503");
    }
    assert_reply(cmd(&mut s, "NOOP"), "250");
    good.finish(&f.sink);
}

#[test]
fn invalid_utf8_nul_and_control_bytes_are_refused_and_8bit_mail_still_flows() {
    let f = fixture();
    let good = GoodClient::start(f.server.smtp, "bytes");
    let mut s = raw_session(ip(2), f.server.smtp);
    for bad in
        [&b"NOOP \xff\xfe\r\n"[..], b"MAIL FROM:<a\0b@example.org>\r\n", b"HELO \x1b[31mred\r\n", b"\xc3\x28\r\n"]
    {
        s.write_all(bad).expect("send");
        assert_reply(read_reply(&mut s), "500 5.5.2");
        assert_reply(cmd(&mut s, "RSET"), "250");
    }
    // NUL in message data.
    open_transaction(&mut s);
    s.write_all(b"Message-ID: <nul@test.invalid>\r\n\r\na\0b\r\n.\r\n").expect("data");
    assert_reply(read_reply(&mut s), "550 5.6.0");
    // Invalid UTF-8 in the body is just 8-bit data: accepted and passed on.
    assert_reply(cmd(&mut s, "MAIL FROM:<a@example.org> BODY=8BITMIME"), "250");
    assert_reply(cmd(&mut s, "RCPT TO:<b@example.net>"), "250");
    assert_reply(cmd(&mut s, "DATA"), "354");
    s.write_all(b"Message-ID: <eightbit@test.invalid>\r\n\r\ncaf\xc3\xa9 \xff\xfe\r\n.\r\n").expect("data");
    assert_reply(read_reply(&mut s), "250 2.6.0");
    good.finish(&f.sink);
    // smtp-sink's dump is not UTF-8 here: look at the raw bytes.
    let dumps = || -> Vec<Vec<u8>> {
        std::fs::read_dir(f.sink.dir.path()).unwrap().flatten().filter_map(|e| std::fs::read(e.path()).ok()).collect()
    };
    let has = |d: &[u8], needle: &[u8]| d.windows(needle.len()).any(|w| w == needle);
    let (all, eightbit) = eventually(Duration::from_secs(30), "the 8-bit message at the sink", || {
        let all = dumps();
        let i = all.iter().position(|d| has(d, b"<eightbit@"))?;
        Some((all, i))
    });
    assert!(has(&all[eightbit], b"caf\xc3\xa9 \xff\xfe"), "the 8-bit body arrived intact");
    assert!(!all.iter().any(|d| has(d, b"<nul@")), "the NUL message was delivered");
}

#[test]
fn huge_headers_and_mail_loops_are_refused() {
    let f = fixture();
    let good = GoodClient::start(f.server.smtp, "headers");
    let mut s = raw_session(ip(2), f.server.smtp);
    // 300 KB of header (Exchange's MaxHeaderSize is 256 KB).
    open_transaction(&mut s);
    let mut data = String::from("Message-ID: <huge-header@test.invalid>\r\n");
    for i in 0..3000 {
        data.push_str(&format!("X-Filler-{i}: {}\r\n", "h".repeat(90)));
    }
    data.push_str("\r\nbody\r\n.\r\n");
    s.write_all(data.as_bytes()).expect("data");
    assert_reply(read_reply(&mut s), "552 5.3.4");
    // One header line of 1 MB, folded nowhere.
    open_transaction(&mut s);
    let data = format!("Message-ID: <long-line@test.invalid>\r\nX-Long: {}\r\n\r\nbody\r\n.\r\n", "l".repeat(1 << 20));
    s.write_all(data.as_bytes()).expect("data");
    assert_reply(read_reply(&mut s), "552 5.3.4");
    // 31 Received headers: a loop (MaxHopCount 30).
    open_transaction(&mut s);
    let mut data = String::from("Message-ID: <loop@test.invalid>\r\n");
    for i in 0..31 {
        data.push_str(&format!(
            "Received: from hop{i}.example by hop{}.example; Mon, 5 Jan 2026 00:00:00 +0000\r\n",
            i + 1
        ));
    }
    data.push_str("\r\nbody\r\n.\r\n");
    s.write_all(data.as_bytes()).expect("data");
    assert_reply(read_reply(&mut s), "554 5.4.6");
    assert_reply(cmd(&mut s, "QUIT"), "221");
    good.finish(&f.sink);
    std::thread::sleep(Duration::from_secs(1));
    let ids = f.sink.message_ids();
    for refused in ["<huge-header@test.invalid>", "<long-line@test.invalid>", "<loop@test.invalid>"] {
        assert!(!ids.contains_key(refused), "{refused} delivered");
    }
}

/// `BDAT <len>[ LAST]` and the chunk, as one write.
fn bdat(chunk: &[u8], last: bool) -> Vec<u8> {
    let mut out = format!("BDAT {}{}\r\n", chunk.len(), if last { " LAST" } else { "" }).into_bytes();
    out.extend_from_slice(chunk);
    out
}

#[test]
fn bdat_chunks_that_lie_or_smuggle_are_refused_and_never_delivered() {
    let f = fixture();
    let good = GoodClient::start(f.server.smtp, "bdat");
    let begin = |s: &mut std::net::TcpStream| {
        assert_reply(cmd(s, "MAIL FROM:<evil@example.org>"), "250");
        assert_reply(cmd(s, "RCPT TO:<victim@example.net>"), "250");
    };

    // A bare-LF smuggling sequence inside a chunk (a hop that gets it with DATA would
    // see a second message): refused, and the next chunk has no transaction left.
    let mut s = raw_session(ip(3), f.server.smtp);
    begin(&mut s);
    let carrier = b"Message-ID: <bdat-carrier@test.invalid>\r\n\r\nhello\n.\nMAIL FROM:<evil@example.org>\r\n\
                    RCPT TO:<victim@example.net>\r\nDATA\r\nMessage-ID: <bdat-smuggled@test.invalid>\r\n\r\nevil\r\n";
    s.write_all(&[bdat(carrier, false), bdat(b".\r\n", true)].concat()).expect("send");
    assert_reply(read_reply(&mut s), "550 5.6.0");
    assert_reply(read_reply(&mut s), "503 5.5.1");
    assert_reply(cmd(&mut s, "NOOP"), "250");

    // DATA after BDAT in one transaction; then no LAST before QUIT.
    begin(&mut s);
    s.write_all(&bdat(b"Message-ID: <bdat-unfinished@test.invalid>\r\n\r\n", false)).expect("send");
    assert_reply(read_reply(&mut s), "250 2.0.0");
    assert_reply(cmd(&mut s, "DATA"), "503 5.5.1");
    assert_reply(cmd(&mut s, "QUIT"), "221");

    // A size that lies short: the chunk is what was declared, the rest is read as
    // commands (here not one): the message is cut where the client said, nothing more.
    let mut s = raw_session(ip(4), f.server.smtp);
    begin(&mut s);
    let short = b"Message-ID: <bdat-short@test.invalid>\r\n\r\nfirst\r\nGARBAGE AFTER THE CHUNK\r\n";
    let declared = short.len() - "GARBAGE AFTER THE CHUNK\r\n".len();
    let mut write = format!("BDAT {declared} LAST\r\n").into_bytes();
    write.extend_from_slice(short);
    s.write_all(&write).expect("send");
    assert_reply(read_reply(&mut s), "250 2.6.0");
    assert_reply(read_reply(&mut s), "500 5.5.2");
    assert_reply(cmd(&mut s, "QUIT"), "221");

    // A size that lies long: the server waits for the rest only as long as it waits
    // for any input, then closes; nothing of it is delivered.
    let mut s = raw_session(ip(5), f.tight);
    begin(&mut s);
    s.write_all(b"BDAT 100000 LAST\r\nMessage-ID: <bdat-long@test.invalid>\r\n\r\nx\r\n").expect("send");
    let text = rest(&mut s);
    assert!(text.starts_with("421 4.4.2"), "cut at the inactivity timeout: {text}");

    good.finish(&f.sink);
    std::thread::sleep(Duration::from_secs(1));
    let ids = f.sink.message_ids();
    let arrived: Vec<_> = ids.keys().filter(|k| k.starts_with("<bdat-")).cloned().collect();
    assert_eq!(arrived, ["<bdat-short@test.invalid>"], "only the message the client declared whole");
}
