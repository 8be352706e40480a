//! Nobody relays or administers who should not: an open-relay suite of
//! recipient forms (`%` hacks, bang paths, quoted local parts with `@`, source
//! routes, address literals, trailing dots, case) from a client outside the
//! relay range; AUTH only after STARTTLS (swaks over real TLS); the admin API
//! refuses missing, wrong and empty tokens; a public admin bind without a
//! token is refused by `check-config` and by the server itself; a renewed
//! certificate is served without a restart, a bad one is not.

use crate::abuse::*;
use crate::support::*;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;
use transport::config::{ReceiveAuth, ReceiveSettings, TlsFiles};

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// The server: `Default` relays only for 127.0.0.2; `Internet` takes mail
/// from anyone for local.test only; `Submission` has STARTTLS and AUTH.
struct Fixture {
    smart_host: Sink,
    mailbox: Sink,
    server: TransportProcess,
    internet: SocketAddr,
    submission: SocketAddr,
    /// The Submission connector's certificate and key (`tls.crt`, `tls.key`).
    tls: tempfile::TempDir,
}

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";

fn fixture() -> Fixture {
    let smart_host = Sink::start();
    let mailbox = Sink::start();
    let tls = tempfile::tempdir().expect("tls dir");
    let key = rcgen::generate_simple_self_signed(vec!["relay.test.invalid".to_string()]).expect("cert");
    std::fs::write(tls.path().join("tls.crt"), key.cert.pem()).expect("cert");
    std::fs::write(tls.path().join("tls.key"), key.key_pair.serialize_pem()).expect("key");
    std::fs::write(tls.path().join("users"), format!("{USER}:{PASSWORD}\n")).expect("users");
    let (internet, submission) = (free_addr(), free_addr());
    let files = tls.path().to_path_buf();
    let setup = TransportSetup {
        smart_host: Some(smart_host.addr),
        mailbox: Some(mailbox.addr),
        edit: edit(move |f| {
            // The relay connector relays for one client address only.
            f.receive_connectors[0].settings.remote_ip_ranges = vec!["127.0.0.2/32".parse().expect("a range")];
            f.receive_connectors.push(receive_connector("Internet", internet, ReceiveSettings::default()));
            let auth = ReceiveAuth { users_file: files.join("users") };
            let settings = ReceiveSettings { auth: Some(auth), ..Default::default() };
            let mut authenticated = receive_connector("Submission", submission, settings);
            authenticated.tls =
                Some(TlsFiles { certificate_file: files.join("tls.crt"), key_file: files.join("tls.key") });
            f.receive_connectors.push(authenticated);
        }),
        admin: true,
        ..Default::default()
    };
    let server = start_transport(&setup);
    wait_for_smtp_ready(internet, Duration::from_secs(10));
    wait_for_smtp_ready(submission, Duration::from_secs(10));
    Fixture { smart_host, mailbox, server, internet, submission, tls }
}

/// Recipient forms an open-relay tester tries, and what a closed relay says
/// (`250` only where the recipient is in local.test and goes to the mailbox hop).
const RELAY_TESTS: &[(&str, &str)] = &[
    ("victim@example.net", "550 5.7.1"),
    ("victim@EXAMPLE.NET", "550 5.7.1"),
    ("victim@example.net.", "550 5.7.1"),
    ("victim%example.net@local.test", "250"),
    ("victim%example.net%local.test@local.test", "250"),
    ("example.net!victim@local.test", "250"),
    ("victim!example.net@local.test", "250"),
    ("\"victim@example.net\"@local.test", "250"),
    ("\"victim%example.net\"@local.test", "250"),
    ("\"victim@example.net\"", "501"),
    ("@local.test:victim@example.net", "550 5.7.1"),
    ("@local.test,@local.test:victim@example.net", "550 5.7.1"),
    ("victim@example.net@local.test", "501"),
    ("victim@local.test@example.net", "501"),
    ("victim@[127.0.0.1]", "550 5.7.1"),
    ("victim@[IPv6:::1]", "550 5.7.1"),
    ("victim@local.test.example.net", "550 5.7.1"),
    ("victim@sub.local.test", "550 5.7.1"),
    ("victim@xlocal.test", "550 5.7.1"),
    ("victim%example.net", "501"),
    ("victim", "501"),
    ("victim@LOCAL.TEST", "250"),
    ("postmaster", "250"),
    ("Postmaster", "250"),
];

#[test]
fn no_recipient_form_relays_for_a_client_outside_the_relay_range() {
    let f = fixture();
    // The relay connector does not even talk to other addresses.
    for source in [ip(1), ip(3)] {
        let mut s = connect_from(source, f.server.smtp).expect("connect");
        assert_reply(read_reply(&mut s), "554 5.7.1");
    }
    let mut s = connect_from(ip(3), f.internet).expect("connect");
    assert_reply(read_reply(&mut s), "220");
    assert_reply(cmd(&mut s, "EHLO outside.test"), "250");
    // Claiming to be someone else changes nothing.
    assert_reply(cmd(&mut s, "XCLIENT ADDR=127.0.0.2"), "500");
    assert_reply(cmd(&mut s, "XFORWARD ADDR=127.0.0.2"), "500");
    // Neither does AUTH on a connector that has none.
    assert_reply(cmd(&mut s, "AUTH PLAIN AGFsaWNlAHg="), "502");
    let mut accepted = 0;
    for (i, (rcpt, want)) in RELAY_TESTS.iter().enumerate() {
        assert_reply(cmd(&mut s, "MAIL FROM:<tester@example.org>"), "250");
        let reply = cmd(&mut s, &format!("RCPT TO:<{rcpt}>"));
        let reply = assert_reply(reply, want);
        if reply.starts_with("250") {
            accepted += 1;
            assert_reply(cmd(&mut s, "DATA"), "354");
            s.write_all(format!("Message-ID: <relay-{i}@test.invalid>\r\n\r\nrelay test\r\n.\r\n").as_bytes()).unwrap();
            assert_reply(read_reply(&mut s), "250 2.6.0");
        } else {
            assert_reply(cmd(&mut s, "RSET"), "250");
        }
        // Stay under the protocol-error limit (501s count).
        if i % 4 == 3 {
            assert_reply(cmd(&mut s, "QUIT"), "221");
            s = connect_from(ip(3), f.internet).expect("connect");
            assert_reply(read_reply(&mut s), "220");
            assert_reply(cmd(&mut s, "EHLO outside.test"), "250");
        }
    }
    // What was accepted went to the mailbox hop, as local recipients; the
    // outbound smart host got nothing at all.
    let got = f.mailbox.wait_for(accepted, Duration::from_secs(60));
    assert_eq!(got.len(), accepted);
    for m in &got {
        for r in &m.rcpt_args {
            let r = r.to_ascii_lowercase();
            assert!(r.contains("@local.test>"), "a non-local recipient reached the mailbox hop: {r}");
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(f.smart_host.messages().is_empty(), "relayed: {:?}", f.smart_host.messages());

    // Positive control: the address in the relay range does relay.
    let mut s = connect_from(ip(2), f.server.smtp).expect("connect");
    assert_reply(read_reply(&mut s), "220");
    assert_reply(cmd(&mut s, "EHLO inside.test"), "250");
    assert_reply(cmd(&mut s, "MAIL FROM:<a@example.org>"), "250");
    assert_reply(cmd(&mut s, "RCPT TO:<victim@example.net>"), "250");
}

#[test]
fn auth_is_offered_and_accepted_only_over_tls_and_then_allows_relay() {
    let f = fixture();
    // In clear: not advertised, refused with 538, no relay.
    let mut s = connect_from(ip(3), f.submission).expect("connect");
    assert_reply(read_reply(&mut s), "220");
    let ehlo = assert_reply(cmd(&mut s, "EHLO clear.test"), "250");
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "{ehlo}");
    let plain = base64(&format!("\0{USER}\0{PASSWORD}"));
    assert_reply(cmd(&mut s, &format!("AUTH PLAIN {plain}")), "538 5.7.11");
    assert_reply(cmd(&mut s, "AUTH LOGIN"), "538 5.7.11");
    assert_reply(cmd(&mut s, "MAIL FROM:<a@example.org>"), "250");
    assert_reply(cmd(&mut s, "RCPT TO:<victim@example.net>"), "550 5.7.1");
    assert_reply(cmd(&mut s, "QUIT"), "221");

    let swaks = tool("swaks", "swaks");
    let run = |extra: &[&str], id: &str| {
        let out = Command::new(&swaks)
            .args(["--server", &f.submission.to_string(), "--from", "alice@example.org", "--to", "friend@example.net"])
            .args(["--helo", "client.test", "--tls", "--timeout", "20"])
            .args(["--header", &format!("Message-Id: <{id}@test.invalid>")])
            .args(extra)
            .output()
            .expect("run swaks");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Over TLS without credentials: still no relay.
    let t = run(&[], "tls-anonymous");
    assert!(t.contains("<~* 550 5.7.1"), "{t}");
    // Wrong password, both mechanisms.
    for mech in ["PLAIN", "LOGIN"] {
        let t = run(&["--auth", mech, "--auth-user", USER, "--auth-password", "wrong"], "wrong");
        assert!(t.contains("<~* 535 5.7.8"), "{mech}: {t}");
    }
    // Right password: authenticated, and may relay.
    for mech in ["PLAIN", "LOGIN"] {
        let id = format!("auth-{mech}");
        let t = run(&["--auth", mech, "--auth-user", USER, "--auth-password", PASSWORD], &id);
        assert!(t.contains("<~  235 2.7.0"), "{mech}: {t}");
        assert!(t.contains("<~  250 2.6.0"), "{mech}: {t}");
    }
    let got = f.smart_host.wait_for(2, Duration::from_secs(60));
    let ids: Vec<_> = got.iter().filter_map(|m| m.header("Message-ID")).collect();
    assert!(ids.contains(&"<auth-PLAIN@test.invalid>".to_string()), "{ids:?}");
    assert!(ids.contains(&"<auth-LOGIN@test.invalid>".to_string()), "{ids:?}");
    assert!(!ids.iter().any(|i| i.contains("anonymous") || i.contains("wrong")), "{ids:?}");
    // Credentials never reach the log.
    assert!(!f.server.log().contains(PASSWORD));
}

fn base64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &x)| n | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One raw HTTP request; returns the status code.
fn http(addr: SocketAddr, path: &str, authorization: Option<&[u8]>) -> u16 {
    let mut s = connect_from(ip(1), addr).expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n").into_bytes();
    if let Some(a) = authorization {
        req.extend_from_slice(b"Authorization: ");
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    s.write_all(&req).expect("request");
    let text = rest(&mut s);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}

#[test]
fn admin_api_refuses_missing_wrong_and_empty_tokens() {
    let server = start_transport(&TransportSetup {
        smart_host: Some(format!("127.0.0.1:{}", free_port()).parse().unwrap()),
        admin: true,
        token: Some("s3cret-token".into()),
        ..Default::default()
    });
    let admin = server.admin.expect("admin");
    for (auth, want) in [
        (None, 401),
        (Some(&b"Bearer wrong"[..]), 401),
        (Some(b"Bearer s3cret-tokenX"), 401),
        (Some(b"Bearer s3cret-toke"), 401),
        (Some(b"Bearer "), 401),
        (Some(b"Bearer"), 401),
        (Some(b"Basic czNjcmV0LXRva2Vu"), 401),
        (Some(b"s3cret-token"), 401),
        (Some(b"Bearer s3cret-token"), 200),
    ] {
        for path in ["/v1/server", "/v1/queues", "/v1/messages"] {
            assert_eq!(http(admin, path, auth), want, "{path} with {:?}", auth.map(String::from_utf8_lossy));
        }
    }
    // Probes and metrics need no token (kubelet, Prometheus).
    assert_eq!(http(admin, "/healthz", None), 200);
    assert_eq!(http(admin, "/readyz", None), 200);
    // Actions too.
    let mut s = connect_from(ip(1), admin).expect("connect");
    s.write_all(b"PUT /v1/server/state HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"state\": \"Stopped\"}").unwrap();
    assert!(rest(&mut s).starts_with("HTTP/1.1 401"));
    assert_reply(SmtpClient::connect(server.smtp).map(|(_, b)| b).ok(), "220");
}

/// A token file emptied while the server runs (a Secret gone wrong) must not
/// open the API to an empty bearer token.
#[test]
fn a_token_file_emptied_at_runtime_refuses_every_admin_request() {
    let server = start_transport(&TransportSetup {
        smart_host: Some(format!("127.0.0.1:{}", free_port()).parse().unwrap()),
        admin: true,
        token: Some("t0ken".into()),
        ..Default::default()
    });
    let admin = server.admin.expect("admin");
    assert_eq!(http(admin, "/v1/server", Some(b"Bearer t0ken")), 200);
    std::fs::write(server.dir.join("token"), "\n").expect("empty the token");
    let mut config = std::fs::read_to_string(&server.config_path).expect("config");
    config.push_str("# reload\n");
    std::fs::write(&server.config_path, config).expect("touch the config");
    eventually(Duration::from_secs(20), "the reload", || server.log().contains("configuration reloaded").then_some(()));
    for auth in
        [None, Some(&b"Bearer "[..]), Some(b"Bearer"), Some(b"Bearer \t"), Some(b"Bearer t0ken"), Some(b"Bearer x")]
    {
        assert_eq!(http(admin, "/v1/server", auth), 401, "{:?}", auth.map(String::from_utf8_lossy));
    }
}

#[test]
fn a_public_admin_bind_without_a_token_is_refused_by_check_config_and_the_server() {
    let dir = tempfile::tempdir().expect("dir");
    // A server with no next hop; each case adds its admin API.
    let setup = TransportSetup { server_name: Some("t".into()), ..Default::default() };
    let mut base = setup.config_file(&Placement { dir: dir.path(), smtp: free_addr(), admin: None, token_file: None });
    base.log_directory = None;
    base.receive_connectors[0].settings = ReceiveSettings::default();
    let token = dir.path().join("token");
    let empty = dir.path().join("empty");
    std::fs::write(&token, "t0ken").expect("token");
    std::fs::write(&empty, "\n").expect("empty");
    let api = |ip: &str, token_file: Option<std::path::PathBuf>| transport::config::AdminSettings {
        bind: SocketAddr::new(ip.parse().unwrap(), free_port()),
        token_file,
    };
    let cases = [
        (api("0.0.0.0", None), Some("admin.tokenFile")),
        (api("::", None), Some("admin.tokenFile")),
        (api("127.0.0.2", None), None),
        (api("0.0.0.0", Some(token)), None),
        (api("0.0.0.0", Some(empty)), Some("admin.tokenFile")),
        (api("0.0.0.0", Some(dir.path().join("missing"))), Some("admin.tokenFile")),
    ];
    let transport = env!("CARGO_BIN_EXE_transport");
    for (i, (admin, refused_field)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.yaml"));
        let mut file = base.clone();
        file.admin = Some(admin.clone());
        write_config_file(&path, &file);
        let check = Command::new(transport).arg("check-config").arg(&path).output().expect("check-config");
        let stderr = String::from_utf8_lossy(&check.stderr);
        match refused_field {
            Some(field) => {
                assert_eq!(check.status.code(), Some(2), "check-config accepted {admin:?}");
                assert!(stderr.contains(field), "{admin:?}: {stderr}");
                // The server refuses to start with it as well.
                let mut run = Command::new(transport)
                    .arg("--config")
                    .arg(&path)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("transport");
                let status = eventually(Duration::from_secs(20), "the server to refuse the config", || {
                    run.try_wait().expect("wait")
                });
                let mut err = String::new();
                std::io::Read::read_to_string(&mut run.stderr.take().expect("stderr"), &mut err).expect("stderr");
                assert_eq!(status.code(), Some(2), "the server started with {admin:?}");
                assert!(err.contains(field), "{err}");
            }
            None => assert!(check.status.success(), "{admin:?}: {stderr}"),
        }
    }
}

/// The certificate swaks is shown after STARTTLS on `addr`, as base64 without line breaks.
fn served_certificate(addr: SocketAddr) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("peer.pem");
    let run = Command::new(tool("swaks", "swaks"))
        .args(["--server", &addr.ip().to_string(), "--port", &addr.port().to_string(), "--to", "bob@local.test"])
        .args(["--tls", "--quit-after", "TLS", "--tls-get-peer-cert"])
        .arg(&out)
        .output()
        .expect("run swaks");
    assert!(run.status.success(), "swaks: {}", String::from_utf8_lossy(&run.stdout));
    pem_body(&std::fs::read_to_string(&out).unwrap_or_default())
}

fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().concat()
}

/// Replaces a file the way a mounted Secret changes: the new content appears at once.
fn replace(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart_and_a_bad_one_is_not() {
    let f = fixture();
    let (crt, key) = (f.tls.path().join("tls.crt"), f.tls.path().join("tls.key"));
    let first = pem_body(&std::fs::read_to_string(&crt).expect("cert"));
    assert_eq!(served_certificate(f.submission), first);
    // A session open across the renewal is not dropped.
    let mut open = connect_from(ip(1), f.submission).expect("connect");
    assert_reply(read_reply(&mut open), "220");
    assert_reply(cmd(&mut open, "EHLO client.test"), "250");

    // The admin API shows the certificate in use.
    let first_seen = submission_certificate(&f);
    assert_eq!(first_seen.fingerprint, fingerprint(&std::fs::read_to_string(&crt).expect("cert")));
    assert_eq!(first_seen.error, None);

    // cert-manager renews it: a new key and certificate in the same files.
    let mut params = rcgen::CertificateParams::new(vec!["relay.test.invalid".to_string()]).expect("params");
    params.not_after = rcgen::date_time_ymd(2031, 1, 2);
    let renewed_key = rcgen::KeyPair::generate().expect("key");
    let renewed = params.self_signed(&renewed_key).expect("cert");
    replace(&key, &renewed_key.serialize_pem());
    replace(&crt, &renewed.pem());
    let second = pem_body(&renewed.pem());
    eventually(Duration::from_secs(20), "the renewed certificate served", || {
        (served_certificate(f.submission) == second).then_some(())
    });
    assert_reply(cmd(&mut open, "NOOP"), "250");
    assert!(f.server.log().contains("TLS certificate reloaded"), "{}", f.server.log());
    let renewed_seen = submission_certificate(&f);
    assert_eq!(renewed_seen.fingerprint, fingerprint(&renewed.pem()));
    assert_eq!(renewed_seen.not_after.as_deref(), Some("2031-01-02T00:00:00Z"));
    assert_eq!(renewed_seen.error, None);

    // A certificate that does not match the key: the renewed pair stays, and the log and
    // the admin API say why.
    let other = rcgen::generate_simple_self_signed(vec!["other.test.invalid".to_string()]).expect("cert");
    replace(&crt, &other.cert.pem());
    eventually(Duration::from_secs(20), "the refusal logged", || {
        f.server.log().contains("cannot be used; keeping the old one").then_some(())
    });
    assert_eq!(served_certificate(f.submission), second);
    let refused = submission_certificate(&f);
    assert_eq!(
        (refused.fingerprint.as_str(), refused.not_after.as_deref()),
        (renewed_seen.fingerprint.as_str(), Some("2031-01-02T00:00:00Z"))
    );
    assert!(refused.error.as_deref().is_some_and(|e| e.contains("do not fit together")), "{refused:?}");
    assert_reply(cmd(&mut open, "QUIT"), "221");
}

/// The Submission connector's certificate as `GET /v1/server` shows it.
fn submission_certificate(f: &Fixture) -> transport::api::CertificateInfo {
    let info = f.server.admin(|c| async move { c.server().await.expect("GET /v1/server") });
    info.certificates.into_iter().find(|c| c.connector == "Submission").expect("the Submission connector's certificate")
}

/// SHA-256 of a PEM certificate's DER, as the admin API writes it.
fn fingerprint(pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    use sha2::Digest;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM");
    sha2::Sha256::digest(der.as_ref()).iter().map(|b| format!("{b:02x}")).collect()
}
