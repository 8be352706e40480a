//! STARTTLS (rustls on both sides, certificate from rcgen) and AUTH.
use super::*;
use crate::config::{ReceiveAuth, TlsFiles};
use crate::smtp::{load_tls_acceptor, TlsError};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::client::TlsStream;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";

/// A certificate for FQDN, a users file, and the files' directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub files: TlsFiles,
    pub root: CertificateDer<'static>,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec![FQDN.to_string()]).unwrap();
    let files = TlsFiles { certificate_file: dir.path().join("tls.crt"), key_file: dir.path().join("tls.key") };
    std::fs::write(&files.certificate_file, key.cert.pem()).unwrap();
    std::fs::write(&files.key_file, key.key_pair.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("users"), format!("# test accounts\nbob:other\n{USER}:{PASSWORD}\n")).unwrap();
    Fixture { root: key.cert.der().clone(), files, dir }
}

/// Settings with STARTTLS, and AUTH against the fixture's users file.
pub fn tls_settings(f: &Fixture) -> SessionSettings {
    let mut s = settings();
    s.tls = Some(load_tls_acceptor(&f.files).expect("acceptor from PEM files"));
    s.settings.auth = Some(ReceiveAuth { users_file: f.dir.path().join("users") });
    s
}

async fn handshake(
    c: AsyncSmtpClient<TcpStream>,
    root: &CertificateDer<'static>,
) -> AsyncSmtpClient<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(FQDN.to_string()).unwrap();
    let tls = tokio::time::timeout(WAIT, connector.connect(name, c.into_inner().expect("nothing unread before TLS")))
        .await
        .expect("handshake in time")
        .expect("handshake");
    AsyncSmtpClient::new(tls)
}

fn b64(s: &str) -> String {
    // Test-side encoder: the server only decodes.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn starttls_discards_pipelined_commands_then_auth_and_relay() {
    let f = fixture();
    let server = start(tls_settings(&f)).await;
    let (mut c, _) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    let ehlo = c.cmd("EHLO client.test").await.unwrap();
    assert!(ehlo.contains("\n250-STARTTLS") || ehlo.ends_with("\n250 STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "no AUTH in clear: {ehlo}");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64(&format!("\0{USER}\0{PASSWORD}")))).await.unwrap(),
        "538 5.7.11 Encryption required for requested authentication mechanism"
    );
    // CVE-2011-0411: a command sent in clear behind STARTTLS must not run.
    c.send_raw(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n").await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), "220 2.0.0 Ready to start TLS");
    let mut c = handshake(c, &f.root).await;
    assert_eq!(c.cmd("RCPT TO:<b@local.test>").await.unwrap(), "503 5.5.1 Need MAIL command");
    // The session starts over: hello first, no STARTTLS, AUTH offered.
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "503 5.5.1 Send hello first");
    let ehlo = c.cmd("EHLO client.test").await.unwrap();
    assert!(!ehlo.contains("STARTTLS") && ehlo.ends_with("\n250 AUTH PLAIN LOGIN"), "{ehlo}");
    assert_eq!(c.cmd("STARTTLS").await.unwrap(), "503 5.5.1 TLS already active");
    // Not authenticated yet: no relay.
    expect(&c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "250");
    assert_eq!(c.cmd("RCPT TO:<x@example.net>").await.unwrap(), "550 5.7.1 Unable to relay");
    assert_eq!(c.cmd("AUTH PLAIN").await.unwrap(), "503 5.5.1 Mail transaction in progress");
    expect(&c.cmd("RSET").await.unwrap(), "250");
    assert_eq!(c.cmd("AUTH CRAM-MD5").await.unwrap(), "504 5.5.4 Unrecognized authentication type");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64(&format!("\0{USER}\0wrong")))).await.unwrap(),
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(c.cmd("AUTH PLAIN").await.unwrap(), "334 ");
    assert_eq!(c.cmd("*").await.unwrap(), "501 5.0.0 Authentication canceled");
    assert_eq!(c.cmd("AUTH PLAIN").await.unwrap(), "334 ");
    assert_eq!(c.cmd(&b64(&format!("\0{USER}\0{PASSWORD}"))).await.unwrap(), "235 2.7.0 Authentication successful");
    assert_eq!(c.cmd("AUTH PLAIN").await.unwrap(), "503 5.5.1 Already authenticated");
    expect(&c.send_message("a@example.org", &["x@example.net"], &message("authenticated")).await.unwrap(), "250 2.6.0");
    assert_eq!(c.cmd("QUIT").await.unwrap(), "221 2.0.0 Service closing transmission channel");

    let m = server.submit.messages();
    assert_eq!(m.len(), 1, "the injected MAIL never ran");
    assert_eq!(m[0].envelope.mail_from.as_ref().map(|a| a.as_str()), Some("a@example.org"));
    assert!(m[0].envelope.origin.tls);
    let data = String::from_utf8(m[0].data.inline().unwrap().to_vec()).unwrap();
    assert!(data.starts_with(&received(1, "ESMTPSA")), "{data}");
    // Credentials never reach the protocol log.
    let lines = server.events.lines.lock().unwrap().clone();
    assert!(lines.iter().all(|(_, l)| !l.contains(&b64(&format!("\0{USER}\0{PASSWORD}")))), "{lines:?}");
    assert!(lines.iter().any(|(e, l)| *e == LogEvent::Info && l.starts_with("discarded ")), "{lines:?}");
}

#[tokio::test]
async fn auth_login_and_plain_with_initial_response() {
    let f = fixture();
    let server = start(tls_settings(&f)).await;
    let (mut c, _) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    expect(&c.cmd("EHLO client.test").await.unwrap(), "250");
    expect(&c.cmd("STARTTLS").await.unwrap(), "220 2.0.0");
    let mut c = handshake(c, &f.root).await;
    expect(&c.cmd("EHLO client.test").await.unwrap(), "250");
    assert_eq!(c.cmd("AUTH LOGIN").await.unwrap(), "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd(&b64(USER)).await.unwrap(), "334 UGFzc3dvcmQ6");
    assert_eq!(c.cmd(&b64("nope")).await.unwrap(), "535 5.7.8 Authentication credentials invalid");
    assert_eq!(c.cmd(&format!("AUTH LOGIN {}", b64(USER))).await.unwrap(), "334 UGFzc3dvcmQ6");
    assert_eq!(c.cmd("not base64!").await.unwrap(), "501 5.5.2 Cannot decode response");
    assert_eq!(c.cmd("AUTH LOGIN").await.unwrap(), "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd(&b64(USER)).await.unwrap(), "334 UGFzc3dvcmQ6");
    assert_eq!(c.cmd(&b64(PASSWORD)).await.unwrap(), "235 2.7.0 Authentication successful");
    expect(&c.send_message("a@example.org", &["x@example.net"], &message("login")).await.unwrap(), "250 2.6.0");
    assert_eq!(server.submit.messages()[0].envelope.recipients[0].address.as_str(), "x@example.net");
}

#[tokio::test]
async fn require_tls_accepts_mail_after_starttls() {
    let f = fixture();
    let mut s = tls_settings(&f);
    s.settings.require_tls = true;
    s.settings.auth = None;
    let server = start(s).await;
    let (mut c, _) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    expect(&c.cmd("EHLO client.test").await.unwrap(), "250");
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "530 5.7.0 Must issue a STARTTLS command first");
    expect(&c.cmd("STARTTLS").await.unwrap(), "220");
    let mut c = handshake(c, &f.root).await;
    let ehlo = c.cmd("EHLO client.test").await.unwrap();
    assert!(!ehlo.contains("AUTH"), "AUTH only when configured: {ehlo}");
    assert_eq!(c.cmd("AUTH PLAIN").await.unwrap(), "502 5.5.1 Command not implemented");
    expect(&c.send_message("a@example.org", &["b@local.test"], &message("tls")).await.unwrap(), "250 2.6.0");
    let data = String::from_utf8(server.submit.messages()[0].data.inline().unwrap().to_vec()).unwrap();
    assert!(data.starts_with(&received(1, "ESMTPS")), "{data}");
}

#[test]
fn tls_loading_errors_name_the_file() {
    let f = fixture();
    let missing = TlsFiles { certificate_file: f.dir.path().join("absent.crt"), key_file: f.files.key_file.clone() };
    let err = load_tls_acceptor(&missing).err().expect("missing file");
    assert!(matches!(err, TlsError::Read { .. }) && err.to_string().contains("absent.crt"), "{err}");

    let garbage = f.dir.path().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let bad = TlsFiles { certificate_file: garbage, key_file: f.files.key_file.clone() };
    let err = load_tls_acceptor(&bad).err().expect("no certificate");
    assert!(matches!(err, TlsError::Pem { .. }) && err.to_string().contains("garbage.crt"), "{err}");

    let no_key =
        TlsFiles { certificate_file: f.files.certificate_file.clone(), key_file: f.files.certificate_file.clone() };
    let err = load_tls_acceptor(&no_key).err().expect("no key");
    assert!(err.to_string().contains("tls.crt") && err.to_string().contains("private key"), "{err}");
}

#[tokio::test]
async fn requiretls_is_offered_and_taken_only_inside_tls_when_enabled() {
    let f = fixture();
    let mut settings = tls_settings(&f);
    settings.settings.offer_require_tls = true;
    let server = start(settings).await;
    let (mut c, _) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    assert!(!c.cmd("EHLO client.test").await.unwrap().contains("REQUIRETLS"), "not offered in clear");
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org> REQUIRETLS").await.unwrap(),
        "555 5.5.4 Unsupported parameter REQUIRETLS"
    );
    expect(&c.cmd("STARTTLS").await.unwrap(), "220");
    let mut c = handshake(c, &f.root).await;
    assert!(c.cmd("EHLO client.test").await.unwrap().contains("\n250-REQUIRETLS"));
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org> REQUIRETLS").await.unwrap(), "250 2.1.0 Sender OK");
    expect(&c.cmd("RCPT TO:<bob@local.test>").await.unwrap(), "250");
    expect(&c.cmd("DATA").await.unwrap(), "354");
    c.send_raw(data_block(&message("protected")).as_bytes()).await.unwrap();
    expect(&c.read_reply().await.unwrap(), "250 2.6.0");
    assert!(server.submit.messages()[0].envelope.requiretls);

    // Off (the default): not offered even inside TLS.
    let server = start(tls_settings(&f)).await;
    let (mut c, _) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    expect(&c.cmd("EHLO client.test").await.unwrap(), "250");
    expect(&c.cmd("STARTTLS").await.unwrap(), "220");
    let mut c = handshake(c, &f.root).await;
    assert!(!c.cmd("EHLO client.test").await.unwrap().contains("REQUIRETLS"));
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org> REQUIRETLS").await.unwrap(),
        "555 5.5.4 Unsupported parameter REQUIRETLS"
    );
}
