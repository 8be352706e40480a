//! Outbound SMTP sessions against real peers: Postfix's smtp-sink (bytes,
//! parameters, refusals it can be told to give), a DNS-routed hop through an
//! in-test DNS server, and a scripted peer where no Debian server can be made
//! to answer as needed (see [`scripted`]).

use crate::support::dns::{DnsServer, Zone};
use crate::support::{envelope, sts, Sink};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use transport::config::{AddressSpace, DnsSettings, OutboundTls, SendConnector};
use transport::delivery::{
    resolve_targets, CertificateCheck, ConnectOptions, DeliveryError, OutboundSession, ProtocolTap, RecipientOutcome,
};
use transport::envelope::{Envelope, Notify, Ret};
use transport::logs::LogEvent;
use transport::queue::body::BodyReader;
use transport::routing::mx::{HostAddress, Resolver};
use transport::routing::{DeliveryType, NextHop};

/// Every network wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

fn all(envelope: &Envelope) -> Vec<usize> {
    (0..envelope.recipients.len()).collect()
}

/// Protocol lines as the session reported them.
#[derive(Default)]
struct Lines(Mutex<Vec<(LogEvent, String)>>);

impl ProtocolTap for Lines {
    fn line(&self, event: LogEvent, data: &str) {
        self.0.lock().unwrap().push((event, data.to_string()));
    }
}

impl Lines {
    fn sent(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().filter(|(e, _)| *e == LogEvent::Sent).map(|(_, d)| d.clone()).collect()
    }
    fn received(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().filter(|(e, _)| *e == LogEvent::Received).map(|(_, d)| d.clone()).collect()
    }
}

fn options(tls: OutboundTls) -> ConnectOptions {
    ConnectOptions {
        helo_name: "relay.test".to_string(),
        tls,
        certificate_check: Default::default(),
        policy_audit: None,
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(10),
        tap: None,
    }
}

fn target(addr: SocketAddr) -> HostAddress {
    HostAddress { host: "peer.test".to_string(), addr }
}

async fn connect(addr: SocketAddr, opts: &ConnectOptions) -> OutboundSession {
    tokio::time::timeout(LIMIT, OutboundSession::connect(&target(addr), opts))
        .await
        .expect("connect within the limit")
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

async fn send(session: &mut OutboundSession, env: &Envelope, data: &[u8]) -> Vec<(usize, RecipientOutcome)> {
    tokio::time::timeout(LIMIT, session.send(env, &all(env), &mut BodyReader::in_memory(data.to_vec())))
        .await
        .expect("send within the limit")
        .unwrap_or_else(|e| panic!("send: {e}"))
        .recipients
}

fn delivered(reply: &str) -> RecipientOutcome {
    RecipientOutcome::Delivered { reply: reply.to_string() }
}

/// smtp-sink writes what it received with LF line ends.
fn as_dumped(data: &str) -> String {
    data.replace("\r\n", "\n")
}

/// Lines that start with dots, a lone dot, and a final CRLF: what arrives
/// must be exactly this (dot-stuffing once on the way out, undone once).
const TRICKY: &str =
    "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: dots\r\nMessage-ID: <dots@test>\r\n\r\n\
.one leading dot\r\n..two leading dots\r\n.\r\nafter a lone dot\r\n\r\n. \r\nlast line\r\n";

#[tokio::test]
async fn bytes_arrive_exactly_at_smtp_sink() {
    let sink = Sink::start();
    let tap = Arc::new(Lines::default());
    let opts = ConnectOptions { tap: Some(tap.clone()), ..options(OutboundTls::Opportunistic) };
    let mut session = connect(sink.addr, &opts).await;
    assert_eq!(session.remote(), format!("peer.test [{}]", sink.addr));

    let env = envelope(Some("alice@example.org"), &["bob@example.net", "carol@example.net"]);
    let outcome =
        tokio::time::timeout(LIMIT, session.send(&env, &all(&env), &mut BodyReader::in_memory(TRICKY.into())))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(outcome.recipients, vec![(0, delivered("250 2.0.0 Ok")), (1, delivered("250 2.0.0 Ok"))]);
    assert!(outcome.dsn_passed, "smtp-sink announces DSN");
    session.quit().await;

    let got = sink.wait_for(1, LIMIT);
    assert_eq!(got[0].content, as_dumped(TRICKY));
    assert_eq!(got[0].rcpt_args, ["<bob@example.net>", "<carol@example.net>"]);

    // The tap saw the dialogue (commands and replies) but not the message.
    let sent = tap.sent();
    assert_eq!(sent.first().map(String::as_str), Some("EHLO relay.test"));
    assert!(sent.iter().any(|l| l == "MAIL FROM:<alice@example.org>"), "{sent:?}");
    assert!(sent.iter().any(|l| l == "DATA"), "{sent:?}");
    assert_eq!(sent.last().map(String::as_str), Some("QUIT"));
    assert!(!sent.iter().any(|l| l.contains("leading dot")), "message data is not logged: {sent:?}");
    let received = tap.received();
    assert_eq!(received.first().map(String::as_str), Some("220 smtp-sink ESMTP"));
    assert!(received.iter().any(|l| l == "250-DSN"), "{received:?}");
    assert!(received.iter().any(|l| l == "250 2.0.0 Ok"), "{received:?}");
}

#[tokio::test]
async fn several_messages_over_one_session() {
    let sink = Sink::start();
    let tap = Arc::new(Lines::default());
    let opts = ConnectOptions { tap: Some(tap.clone()), ..options(OutboundTls::Opportunistic) };
    let mut session = connect(sink.addr, &opts).await;
    for i in 0..3 {
        let env = envelope(Some("alice@example.org"), &[&format!("r{i}@example.net")]);
        let data = crate::support::test_message(&format!("reuse-{i}"), 3) + "\r\n";
        assert_eq!(send(&mut session, &env, data.as_bytes()).await, vec![(0, delivered("250 2.0.0 Ok"))]);
        assert!(session.is_reusable());
    }
    session.quit().await;

    let got = sink.wait_for(3, LIMIT);
    let ids = sink.message_ids();
    assert_eq!(got.len(), 3);
    for i in 0..3 {
        assert_eq!(ids.get(&format!("<reuse-{i}@test.invalid>")), Some(&1), "{ids:?}");
    }
    // One connection: one greeting, and no RSET (each transaction ended with
    // its final dot, RFC 5321 §4.1.1.4): MAIL, RCPT, DATA for each message.
    let sent = tap.sent();
    assert_eq!(sent.iter().filter(|l| l.starts_with("EHLO")).count(), 1, "{sent:?}");
    assert_eq!(sent.iter().filter(|l| *l == "RSET").count(), 0, "{sent:?}");
    assert_eq!(sent.iter().filter(|l| l.starts_with("MAIL FROM:")).count(), 3, "{sent:?}");
    assert_eq!(sent.iter().filter(|l| *l == "DATA").count(), 3, "{sent:?}");
}

#[tokio::test]
async fn dsn_and_8bitmime_parameters_reach_a_dsn_capable_hop() {
    let sink = Sink::start();
    let mut env = envelope(Some("alice@example.org"), &["bob@example.net", "carol@example.net"]);
    env.body_8bit = true;
    env.ret = Some(Ret::Hdrs);
    env.envid = Some("QQ314159+2Bx".into());
    env.recipients[0].notify = Some(Notify { never: false, success: true, failure: true, delay: false });
    env.recipients[0].orcpt = Some("rfc822;bob+40example.net".into());
    env.recipients[1].notify = Some(Notify { never: true, success: false, failure: false, delay: false });

    let mut session = connect(sink.addr, &options(OutboundTls::Opportunistic)).await;
    send(&mut session, &env, b"Subject: params\r\n\r\nbody\r\n").await;
    // The null sender too.
    let bounce = envelope(None, &["alice@example.org"]);
    send(&mut session, &bounce, b"Subject: bounce\r\n\r\nbody\r\n").await;
    session.quit().await;

    let mut got = sink.wait_for(2, LIMIT);
    got.sort_by_key(|m| m.content.clone());
    let (bounced, params) = (&got[0], &got[1]);
    assert_eq!(params.mail_args, "<alice@example.org> BODY=8BITMIME RET=HDRS ENVID=QQ314159+2Bx");
    assert_eq!(
        params.rcpt_args,
        ["<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net", "<carol@example.net> NOTIFY=NEVER"]
    );
    assert_eq!(bounced.mail_args, "<>");

    // A hop without DSN and 8BITMIME gets none of these parameters.
    let plain = Sink::start_with(&["-N", "-8"]);
    let mut session = connect(plain.addr, &options(OutboundTls::Opportunistic)).await;
    let outcome = session
        .send(&env, &all(&env), &mut BodyReader::in_memory(b"Subject: plain\r\n\r\nbody\r\n".to_vec()))
        .await
        .unwrap();
    assert!(!outcome.dsn_passed, "no DSN announced: the hop cannot carry NOTIFY");
    session.quit().await;
    let got = plain.wait_for(1, LIMIT);
    assert_eq!(got[0].mail_args, "<alice@example.org>");
    assert_eq!(got[0].rcpt_args, ["<bob@example.net>", "<carol@example.net>"]);
}

#[tokio::test]
async fn refusals_from_smtp_sink_map_to_outcomes() {
    let data = b"Subject: refused\r\n\r\nbody\r\n";
    let env = envelope(Some("alice@example.org"), &["bob@example.net", "carol@example.net"]);
    let transient = |r: &str| RecipientOutcome::Transient { reply: r.to_string() };
    let permanent = |r: &str| RecipientOutcome::Permanent { reply: r.to_string() };
    let soft = "450 4.3.0 Error: command failed";
    let hard = "500 5.3.0 Error: command failed";

    // Soft and hard refusal of each RCPT: no DATA, the session stays usable.
    for (option, outcome) in [("-r", transient(soft)), ("-f", permanent(hard))] {
        let sink = Sink::start_with(&[option, "RCPT"]);
        let mut session = connect(sink.addr, &options(OutboundTls::Opportunistic)).await;
        assert_eq!(send(&mut session, &env, data).await, vec![(0, outcome.clone()), (1, outcome.clone())]);
        assert!(session.is_reusable(), "{option} RCPT");
        session.quit().await;
        assert!(sink.messages().is_empty());
    }
    // A refused MAIL applies to every recipient.
    let sink = Sink::start_with(&["-f", "MAIL"]);
    let mut session = connect(sink.addr, &options(OutboundTls::Opportunistic)).await;
    assert_eq!(send(&mut session, &env, data).await, vec![(0, permanent(hard)), (1, permanent(hard))]);
    session.quit().await;
    // A refusal after the data applies to every accepted recipient.
    for (option, outcome) in [("-r", transient(soft)), ("-f", permanent(hard))] {
        let sink = Sink::start_with(&[option, "."]);
        let mut session = connect(sink.addr, &options(OutboundTls::Opportunistic)).await;
        assert_eq!(send(&mut session, &env, data).await, vec![(0, outcome.clone()), (1, outcome)]);
        session.quit().await;
    }
    // 421: the recipients of the transaction are tried again, on another session.
    let sink = Sink::start_with(&["-Q", "RCPT"]);
    let mut session = connect(sink.addr, &options(OutboundTls::Opportunistic)).await;
    let closing = transient("421 4.0.0 Server closing connection");
    assert_eq!(send(&mut session, &env, data).await, vec![(0, closing.clone()), (1, closing)]);
    assert!(!session.is_reusable());
    session.quit().await;
    // The peer hangs up after DATA: nothing was confirmed.
    let sink = Sink::start_with(&["-q", "DATA"]);
    let mut session = connect(sink.addr, &options(OutboundTls::Opportunistic)).await;
    let broken = tokio::time::timeout(LIMIT, session.send(&env, &all(&env), &mut BodyReader::in_memory(data.to_vec())))
        .await
        .unwrap();
    assert!(matches!(broken, Err(DeliveryError::Broken { .. })), "{broken:?}");
    assert!(!session.is_reusable());
    session.quit().await;
}

#[tokio::test]
async fn refused_sessions() {
    // A 5xx banner, and a 4xx EHLO.
    for (option, command, code) in [("-f", "CONNECT", "500 5.3.0"), ("-r", "EHLO", "450 4.3.0")] {
        let sink = Sink::start_with(&[option, command]);
        let err =
            tokio::time::timeout(LIMIT, OutboundSession::connect(&target(sink.addr), &options(OutboundTls::None)))
                .await
                .unwrap()
                .err()
                .expect("refused");
        match err {
            DeliveryError::Refused { reply, .. } => assert!(reply.starts_with(code), "{command}: {reply}"),
            other => panic!("{command}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn required_tls_without_starttls_is_refused() {
    let sink = Sink::start();
    let err =
        OutboundSession::connect(&target(sink.addr), &options(OutboundTls::Required)).await.err().expect("no TLS");
    assert!(matches!(err, DeliveryError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("STARTTLS"), "{err}");
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails() {
    let port = crate::support::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let err =
        OutboundSession::connect(&target(addr), &options(OutboundTls::Opportunistic)).await.err().expect("closed");
    assert!(matches!(err, DeliveryError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn a_silent_peer_times_out() {
    // Accepts the connection and never says anything.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(LIMIT).await;
        drop(socket);
    });
    let opts = ConnectOptions { connect_timeout: Duration::from_millis(500), ..options(OutboundTls::Opportunistic) };
    let err = OutboundSession::connect(&target(addr), &opts).await.err().expect("timeout");
    assert!(matches!(err, DeliveryError::Timeout { stage: "banner", .. }), "{err:?}");
    holder.abort();
}

// --- A scripted peer ----------------------------------------------------------
//
// smtp-sink answers every RCPT of a transaction the same way, cannot go
// silent in the middle of a dialogue, and has no STARTTLS; swaks is a client.
// These few cases get a small scripted server instead.

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone, Default)]
struct Script {
    /// EHLO keywords before TLS (after TLS: `ehlo_tls`).
    ehlo: Vec<&'static str>,
    ehlo_tls: Vec<&'static str>,
    /// Replies to successive RCPTs (then `250 2.1.5 Ok`).
    rcpt: Vec<&'static str>,
    /// Stop answering once this command arrives.
    silent_at: Option<&'static str>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

#[derive(Debug, Default)]
struct Transcript {
    /// Commands as received, `[TLS]` marking the handshake.
    commands: Vec<String>,
    /// Message data as on the wire (still dot-stuffed), without the final dot.
    data: Vec<Vec<u8>>,
}

async fn read_line(io: &mut Box<dyn Io>) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        // Byte by byte: nothing is read ahead of a STARTTLS switch.
        let b = io.read_u8().await.ok()?;
        line.push(b);
        if line.ends_with(b"\r\n") {
            return Some(line);
        }
    }
}

async fn reply(io: &mut Box<dyn Io>, text: &str) {
    io.write_all(format!("{text}\r\n").as_bytes()).await.unwrap();
}

/// Serves one connection by the script; returns what the client sent.
async fn scripted(script: Script) -> (SocketAddr, tokio::task::JoinHandle<Transcript>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut io: Box<dyn Io> = Box::new(socket);
        let mut t = Transcript::default();
        let mut rcpt = script.rcpt.iter();
        let mut in_tls = false;
        reply(&mut io, "220 scripted.test ESMTP").await;
        while let Some(line) = read_line(&mut io).await {
            let command = String::from_utf8_lossy(&line).trim_end().to_string();
            let verb = command.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase();
            t.commands.push(command);
            if script.silent_at == Some(verb.as_str()) {
                tokio::time::sleep(LIMIT).await;
                break;
            }
            match verb.as_str() {
                "EHLO" => {
                    let keywords = if in_tls { &script.ehlo_tls } else { &script.ehlo };
                    let mut lines = vec!["scripted.test".to_string()];
                    lines.extend(keywords.iter().map(|k| k.to_string()));
                    let n = lines.len();
                    let text: Vec<String> = lines
                        .iter()
                        .enumerate()
                        .map(|(i, l)| format!("250{}{l}", if i + 1 == n { ' ' } else { '-' }))
                        .collect();
                    reply(&mut io, &text.join("\r\n")).await;
                }
                "STARTTLS" => {
                    reply(&mut io, "220 2.0.0 Ready to start TLS").await;
                    let acceptor = script.tls.clone().expect("STARTTLS only when scripted");
                    io = Box::new(acceptor.accept(io).await.expect("TLS handshake"));
                    in_tls = true;
                    t.commands.push("[TLS]".to_string());
                }
                "MAIL" => reply(&mut io, "250 2.1.0 Sender ok").await,
                "RCPT" => reply(&mut io, rcpt.next().copied().unwrap_or("250 2.1.5 Recipient ok")).await,
                "DATA" => {
                    reply(&mut io, "354 Go ahead").await;
                    let mut data = Vec::new();
                    while let Some(line) = read_line(&mut io).await {
                        if line == b".\r\n" {
                            break;
                        }
                        data.extend_from_slice(&line);
                    }
                    t.data.push(data);
                    reply(&mut io, "250 2.0.0 Queued as 42").await;
                }
                "RSET" => reply(&mut io, "250 2.0.0 Ok").await,
                "QUIT" => {
                    reply(&mut io, "221 2.0.0 Bye").await;
                    break;
                }
                _ => reply(&mut io, "502 5.5.2 Not implemented").await,
            }
        }
        t
    });
    (addr, handle)
}

#[tokio::test]
async fn each_recipient_gets_its_own_outcome() {
    let script = Script {
        ehlo: vec!["SIZE 10000000", "ENHANCEDSTATUSCODES"],
        rcpt: vec!["250 2.1.5 ok", "550 5.1.1 User unknown", "450 4.2.1 Mailbox busy, try later"],
        ..Script::default()
    };
    let (addr, peer) = scripted(script).await;
    let env = envelope(Some("alice@example.org"), &["ok@example.net", "unknown@example.net", "busy@example.net"]);
    let data = "Subject: mix\r\n\r\n.dot\r\nbody\r\n";
    let mut session = connect(addr, &options(OutboundTls::Opportunistic)).await;
    let outcome = tokio::time::timeout(LIMIT, session.send(&env, &all(&env), &mut BodyReader::in_memory(data.into())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome.recipients,
        vec![
            (0, delivered("250 2.0.0 Queued as 42")),
            (1, RecipientOutcome::Permanent { reply: "550 5.1.1 User unknown".to_string() }),
            (2, RecipientOutcome::Transient { reply: "450 4.2.1 Mailbox busy, try later".to_string() }),
        ]
    );
    assert!(!outcome.dsn_passed);
    session.quit().await;

    let t = tokio::time::timeout(LIMIT, peer).await.unwrap().unwrap();
    // SIZE is announced, so the size goes with MAIL.
    assert_eq!(t.commands[1], format!("MAIL FROM:<alice@example.org> SIZE={}", data.len()));
    // On the wire the leading dot is doubled, exactly once.
    assert_eq!(t.data, vec![b"Subject: mix\r\n\r\n..dot\r\nbody\r\n".to_vec()]);
}

#[tokio::test]
async fn a_peer_that_goes_silent_mid_transaction_times_out() {
    let (addr, _peer) = scripted(Script { silent_at: Some("MAIL"), ..Script::default() }).await;
    let opts = ConnectOptions { command_timeout: Duration::from_millis(500), ..options(OutboundTls::Opportunistic) };
    let mut session = connect(addr, &opts).await;
    let env = envelope(Some("alice@example.org"), &["bob@example.net"]);
    let err = tokio::time::timeout(
        LIMIT,
        session.send(&env, &[0], &mut BodyReader::in_memory(b"Subject: x\r\n\r\ny\r\n".to_vec())),
    )
    .await
    .unwrap();
    assert!(matches!(err, Err(DeliveryError::Timeout { stage: "MAIL", .. })), "{err:?}");
    assert!(!session.is_reusable());
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let certified = rcgen::generate_simple_self_signed(vec!["scripted.test".to_string()]).unwrap();
    sts::tls_acceptor(certified.cert.der().clone(), &certified.key_pair)
}

#[tokio::test]
async fn starttls_with_a_self_signed_certificate() {
    // DSN is announced only after TLS: the session must ask again after the handshake.
    let script = Script {
        ehlo: vec!["STARTTLS"],
        ehlo_tls: vec!["DSN", "8BITMIME"],
        tls: Some(tls_acceptor()),
        ..Script::default()
    };
    let (addr, peer) = scripted(script).await;
    let tap = Arc::new(Lines::default());
    let opts = ConnectOptions { tap: Some(tap.clone()), ..options(OutboundTls::Opportunistic) };
    let mut session = connect(addr, &opts).await;
    let mut env = envelope(Some("alice@example.org"), &["bob@example.net"]);
    env.envid = Some("tls-1".into());
    let outcome = tokio::time::timeout(
        LIMIT,
        session.send(&env, &[0], &mut BodyReader::in_memory(b"Subject: tls\r\n\r\nsecret\r\n".to_vec())),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(outcome.recipients, vec![(0, delivered("250 2.0.0 Queued as 42"))]);
    assert!(outcome.dsn_passed, "the EHLO after TLS announced DSN");
    session.quit().await;

    let t = tokio::time::timeout(LIMIT, peer).await.unwrap().unwrap();
    assert_eq!(t.commands[..4], ["EHLO relay.test", "STARTTLS", "[TLS]", "EHLO relay.test"]);
    assert_eq!(t.commands[4], "MAIL FROM:<alice@example.org> ENVID=tls-1");
    assert_eq!(t.data, vec![b"Subject: tls\r\n\r\nsecret\r\n".to_vec()]);
    // The protocol log shows the dialogue inside TLS in clear.
    let sent = tap.sent();
    assert!(sent.iter().filter(|l| *l == "EHLO relay.test").count() == 2 && sent.contains(&"STARTTLS".to_string()));
    assert!(sent.iter().any(|l| l.starts_with("MAIL FROM:<alice@example.org>")), "{sent:?}");
    assert!(tap.received().iter().any(|l| l == "250-DSN"), "{:?}", tap.received());

    // tls: None never asks for STARTTLS, even when offered.
    let script = Script { ehlo: vec!["STARTTLS"], tls: Some(tls_acceptor()), ..Script::default() };
    let (addr, peer) = scripted(script).await;
    let mut session = connect(addr, &options(OutboundTls::None)).await;
    send(&mut session, &env, b"Subject: clear\r\n\r\nx\r\n").await;
    session.quit().await;
    let t = tokio::time::timeout(LIMIT, peer).await.unwrap().unwrap();
    assert!(!t.commands.iter().any(|c| c == "STARTTLS"), "{:?}", t.commands);
}

/// A test CA and certificates from it, as a site's own PKI would issue them.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    /// The CA certificate as a PEM bundle file (tlsCertificateAuthorities).
    bundle: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "kube-transport test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("ca.pem");
        std::fs::write(&bundle, ca.pem()).unwrap();
        Pki { ca, ca_key, bundle, _dir: dir }
    }

    /// A next hop's acceptor with a certificate for `name` from this CA (expired if asked).
    fn acceptor(&self, name: &str, expired: bool) -> tokio_rustls::TlsAcceptor {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        sts::tls_acceptor(cert.der().clone(), &key)
    }
}

/// Connects to a scripted hop offering STARTTLS with `acceptor` (none: no STARTTLS)
/// under `check`; the error's text when the session cannot be had.
async fn checked(acceptor: Option<tokio_rustls::TlsAcceptor>, check: CertificateCheck) -> Result<(), String> {
    let ehlo = if acceptor.is_some() { vec!["STARTTLS"] } else { vec![] };
    let (addr, _peer) = scripted(Script { ehlo, tls: acceptor, ..Script::default() }).await;
    let opts = ConnectOptions { certificate_check: check, ..options(OutboundTls::Required) };
    match tokio::time::timeout(LIMIT, OutboundSession::connect(&target(addr), &opts)).await.expect("in time") {
        Ok(session) => {
            session.quit().await;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn tls_auth_levels_check_the_chain_and_the_name_and_never_fall_back_to_clear() {
    let pki = Pki::new();
    let roots = Some(pki.bundle.clone());
    let chain = || CertificateCheck::Chain { roots: roots.clone() };
    let domain = |d: Option<&str>| CertificateCheck::Domain { roots: roots.clone(), domain: d.map(str::to_string) };
    let self_signed = || {
        let c = rcgen::generate_simple_self_signed(vec!["peer.test".to_string()]).unwrap();
        sts::tls_acceptor(c.cert.der().clone(), &c.key_pair)
    };

    // DomainValidation: the host connected to (peer.test here), or tlsDomain.
    assert_eq!(checked(Some(pki.acceptor("peer.test", false)), domain(None)).await, Ok(()));
    assert_eq!(checked(Some(pki.acceptor("mx.example.net", false)), domain(Some("mx.example.net"))).await, Ok(()));
    let wrong = checked(Some(pki.acceptor("other.test", false)), domain(None)).await.unwrap_err();
    assert!(wrong.contains("TLS") && wrong.contains("not valid for name"), "{wrong}");
    // CertificateValidation: any name, but the chain must hold.
    assert_eq!(checked(Some(pki.acceptor("other.test", false)), chain()).await, Ok(()));
    let unknown = checked(Some(self_signed()), chain()).await.unwrap_err();
    assert!(unknown.contains("UnknownIssuer") || unknown.contains("unknown issuer"), "{unknown}");
    let expired = checked(Some(pki.acceptor("peer.test", true)), domain(None)).await.unwrap_err();
    assert!(expired.to_lowercase().contains("expired"), "{expired}");
    // The system's CAs do not know the test CA.
    let system = checked(Some(pki.acceptor("peer.test", false)), CertificateCheck::Chain { roots: None }).await;
    assert!(system.is_err(), "{system:?}");
    // A hop that does not offer STARTTLS never gets the mail in clear.
    let clear = checked(None, chain()).await.unwrap_err();
    assert!(clear.contains("does not offer STARTTLS"), "{clear}");
    // EncryptionOnly (the default) takes any certificate.
    assert_eq!(checked(Some(self_signed()), CertificateCheck::None).await, Ok(()));
}

#[tokio::test]
async fn requiretls_goes_only_over_a_verified_name_to_a_hop_that_offers_it() {
    let pki = Pki::new();
    let verified = CertificateCheck::Domain { roots: Some(pki.bundle.clone()), domain: None };
    let mut env = envelope(Some("alice@example.org"), &["bob@example.net"]);
    env.requiretls = true;
    let attempt = |check: CertificateCheck, ehlo_tls: Vec<&'static str>| {
        let (acceptor, env) = (pki.acceptor("peer.test", false), env.clone());
        async move {
            let script = Script { ehlo: vec!["STARTTLS"], ehlo_tls, tls: Some(acceptor), ..Script::default() };
            let (addr, peer) = scripted(script).await;
            let opts = ConnectOptions { certificate_check: check, ..options(OutboundTls::Required) };
            let mut session = connect(addr, &opts).await;
            let outcome = send(&mut session, &env, b"Subject: protected\r\n\r\nx\r\n").await;
            session.quit().await;
            (outcome, tokio::time::timeout(LIMIT, peer).await.unwrap().unwrap())
        }
    };

    // Encrypted but not verified (EncryptionOnly): returned, nothing sent.
    let (outcome, t) = attempt(CertificateCheck::None, vec!["REQUIRETLS"]).await;
    let refusal = format!("{:?}", outcome[0].1);
    assert!(refusal.contains("Permanent") && refusal.contains("550 5.7.10"), "{refusal}");
    assert!(refusal.contains("not TLS with a verified certificate name"), "{refusal}");
    assert!(!t.commands.iter().any(|c| c.starts_with("MAIL")), "{:?}", t.commands);
    // Verified, but the hop does not offer REQUIRETLS.
    let (outcome, _) = attempt(verified.clone(), vec![]).await;
    let refusal = format!("{:?}", outcome[0].1);
    assert!(refusal.contains("does not offer REQUIRETLS"), "{refusal}");
    // Verified, and offered: sent, with REQUIRETLS on MAIL.
    let (outcome, t) = attempt(verified, vec!["REQUIRETLS"]).await;
    assert!(matches!(outcome[0].1, RecipientOutcome::Delivered { .. }), "{outcome:?}");
    assert!(t.commands.iter().any(|c| c == "MAIL FROM:<alice@example.org> REQUIRETLS"), "{:?}", t.commands);
}

// --- Next hops --------------------------------------------------------------

fn dns_connector(port: u16) -> SendConnector {
    SendConnector {
        name: "Internet".to_string(),
        address_spaces: vec![AddressSpace { domain: "*".to_string(), cost: None }],
        dns_routing: true,
        port: Some(port),
        ..SendConnector::default()
    }
}

#[tokio::test]
async fn dns_routed_hop_delivers_to_its_mx() {
    let sink = Sink::start();
    let dns = DnsServer::start(vec![Zone::new("dest.test")
        .mx("dest.test", 10, "mx.dest.test")
        .a("mx.dest.test", Ipv4Addr::LOCALHOST)]);
    let resolver = Resolver::new(Some(&DnsSettings { nameservers: vec![dns.addr] })).unwrap();
    let connector = dns_connector(sink.addr.port());
    let hop = NextHop {
        delivery_type: DeliveryType::DnsConnectorDelivery,
        next_hop_domain: "dest.test".to_string(),
        connector: Some("Internet".to_string()),
    };
    let targets = resolve_targets(&resolver, &hop, Some(&connector)).await.expect("MX resolves");
    assert_eq!(targets, vec![HostAddress { host: "mx.dest.test".to_string(), addr: sink.addr }]);

    let env = envelope(Some("alice@example.org"), &["bob@dest.test"]);
    let data = crate::support::test_message("over-dns", 2) + "\r\n";
    let mut session = OutboundSession::connect(&targets[0], &options(OutboundTls::Opportunistic)).await.unwrap();
    assert_eq!(session.remote(), format!("mx.dest.test [{}]", sink.addr));
    assert_eq!(send(&mut session, &env, data.as_bytes()).await, vec![(0, delivered("250 2.0.0 Ok"))]);
    session.quit().await;
    let got = sink.wait_for(1, LIMIT);
    assert_eq!(got[0].content, as_dumped(&data));
    assert_eq!(got[0].rcpt_args, ["<bob@dest.test>"]);
}

#[tokio::test]
async fn smart_host_and_mailbox_targets() {
    let dns = DnsServer::start(vec![Zone::new("relay.test").a("smart.relay.test", Ipv4Addr::new(127, 0, 0, 9))]);
    let resolver = Resolver::new(Some(&DnsSettings { nameservers: vec![dns.addr] })).unwrap();
    let connector = SendConnector {
        smart_hosts: vec![
            "smart.relay.test".to_string(),
            "[127.0.0.1]:2600".to_string(),
            "gone.relay.test".to_string(),
        ],
        dns_routing: false,
        port: Some(2525),
        ..dns_connector(0)
    };
    let hop = NextHop {
        delivery_type: DeliveryType::SmartHostConnectorDelivery,
        next_hop_domain: connector.smart_hosts.join(","),
        connector: Some("Internet".to_string()),
    };
    // In the configured order, the connector's port where a host names none;
    // a host that does not resolve is skipped.
    let targets = resolve_targets(&resolver, &hop, Some(&connector)).await.unwrap();
    let addrs: Vec<String> = targets.iter().map(|t| t.addr.to_string()).collect();
    assert_eq!(addrs, ["127.0.0.9:2525", "127.0.0.1:2600"]);

    // Redirect-Message: no connector, the hop's domain is the host list.
    let redirect = NextHop {
        delivery_type: DeliveryType::SmartHostConnectorDelivery,
        next_hop_domain: "127.0.0.1:2601".to_string(),
        connector: None,
    };
    let targets = resolve_targets(&resolver, &redirect, None).await.unwrap();
    assert_eq!(targets[0].addr.to_string(), "127.0.0.1:2601");

    let mailbox = NextHop {
        delivery_type: DeliveryType::SmtpDeliveryToMailbox,
        next_hop_domain: "127.0.0.1:2424".to_string(),
        connector: None,
    };
    let targets = resolve_targets(&resolver, &mailbox, None).await.unwrap();
    assert_eq!(targets[0].addr.to_string(), "127.0.0.1:2424");

    // No smart host resolves: the error says which, and it is temporary.
    let only_gone = SendConnector { smart_hosts: vec!["gone.relay.test".to_string()], ..connector };
    let err = resolve_targets(&resolver, &hop, Some(&only_gone)).await.unwrap_err();
    assert!(!err.is_permanent() && err.to_string().contains("gone.relay.test"), "{err}");
}

/// A peer (or a man in the middle) that offers STARTTLS and then refuses it: with TLS
/// required (the connector's, MTA-STS enforce's, DANE's) the connection fails and no mail
/// command is sent in clear; opportunistic TLS goes on in clear as RFC 3207 §4 allows.
#[tokio::test]
async fn starttls_offered_then_refused_never_carries_mail_in_clear_when_tls_is_required() {
    async fn peer() -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            let mut seen = Vec::new();
            write.write_all(b"220 mitm.test ESMTP\r\n").await.unwrap();
            while let Ok(Some(line)) = lines.next_line().await {
                seen.push(line.clone());
                let verb = line.split(' ').next().unwrap_or_default().to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" => b"250-mitm.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
                    "STARTTLS" => b"454 4.7.0 TLS not available due to temporary reason\r\n",
                    "QUIT" => b"221 2.0.0 Bye\r\n",
                    _ => b"250 2.0.0 OK\r\n",
                };
                if write.write_all(reply).await.is_err() || verb == "QUIT" {
                    break;
                }
            }
            seen
        });
        (addr, task)
    }

    let (addr, seen) = peer().await;
    let err = tokio::time::timeout(LIMIT, OutboundSession::connect(&target(addr), &options(OutboundTls::Required)))
        .await
        .unwrap()
        .err()
        .expect("TLS required");
    assert!(matches!(err, DeliveryError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("STARTTLS answered 454"), "{err}");
    let commands = tokio::time::timeout(LIMIT, seen).await.unwrap().unwrap();
    assert!(commands.iter().all(|c| !c.to_ascii_uppercase().starts_with("MAIL")), "{commands:?}");

    // Opportunistic: the session goes on in clear, and says why.
    let (addr, _seen) = peer().await;
    let session = connect(addr, &options(OutboundTls::Opportunistic)).await;
    let why = &session.in_clear().expect("in clear").reason;
    assert!(why.starts_with("STARTTLS was refused (") && why.contains("TLS not available"), "{why}");
}
