//! swaks (a real SMTP client) over plain TCP, STARTTLS and AUTH.
use super::tls_auth::{fixture, tls_settings, PASSWORD, USER};
use super::*;
use std::process::Stdio;

fn swaks_bin() -> &'static str {
    let bin = "/usr/bin/swaks";
    assert!(std::path::Path::new(bin).exists(), "swaks not found: install the Debian package swaks");
    bin
}

/// Runs swaks against the server; returns its exit status and transcript.
async fn swaks(server: &Server, data_file: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        WAIT * 2,
        tokio::process::Command::new(swaks_bin())
            .args(["--server", &server.addr.ip().to_string(), "--port", &server.addr.port().to_string()])
            .args(["--helo", "client.test", "--from", "alice@example.org", "--timeout", "15"])
            .arg("--data")
            .arg(format!("@{}", data_file.display()))
            .args(extra)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("swaks finishes in time")
    .expect("run swaks");
    let transcript = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), transcript)
}

/// The message swaks sends, as a file with LF line ends (swaks sends CRLF)
/// and without the last line end (swaks adds it before the final dot).
fn data_file(dir: &std::path::Path, tag: &str) -> (std::path::PathBuf, String) {
    let crlf = message(tag);
    let path = dir.join(format!("{tag}.eml"));
    std::fs::write(&path, crlf.replace("\r\n", "\n").trim_end_matches('\n')).unwrap();
    (path, crlf)
}

#[tokio::test]
async fn swaks_plain() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings()).await;
    let (file, want) = data_file(dir.path(), "swaks-plain");
    let (ok, transcript) = swaks(&server, &file, &["--to", "bob@local.test"]).await;
    assert!(ok, "{transcript}");
    assert!(transcript.contains("<-  250 2.6.0 <1@mail.local.test> Queued mail for delivery"), "{transcript}");
    let m = server.submit.messages();
    assert_eq!(String::from_utf8_lossy(m[0].data.inline().unwrap()), format!("{}{want}", received(1, "ESMTP")));

    // Relay refused: swaks fails at RCPT and nothing is stored.
    let (ok, transcript) = swaks(&server, &file, &["--to", "victim@example.net"]).await;
    assert!(!ok && transcript.contains("550 5.7.1 Unable to relay"), "{transcript}");
    assert_eq!(server.submit.messages().len(), 1);
}

#[tokio::test]
async fn swaks_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture();
    let server = start(tls_settings(&f)).await;
    let (file, want) = data_file(dir.path(), "swaks-tls");
    let (ok, transcript) = swaks(&server, &file, &["--to", "bob@local.test", "--tls"]).await;
    assert!(ok, "{transcript}");
    assert!(transcript.contains("TLS started"), "{transcript}");
    let m = server.submit.messages();
    assert!(m[0].envelope.origin.tls);
    assert_eq!(String::from_utf8_lossy(m[0].data.inline().unwrap()), format!("{}{want}", received(1, "ESMTPS")));
}

#[tokio::test]
async fn swaks_auth_plain_and_login_may_relay() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture();
    let server = start(tls_settings(&f)).await;
    for (n, mechanism) in ["PLAIN", "LOGIN"].into_iter().enumerate() {
        let (file, want) = data_file(dir.path(), &format!("swaks-{mechanism}"));
        let auth = ["--tls", "--auth", mechanism, "--auth-user", USER, "--auth-password", PASSWORD];
        let (ok, transcript) = swaks(&server, &file, &[&["--to", "victim@example.net"][..], &auth].concat()).await;
        assert!(ok, "{transcript}");
        assert!(transcript.contains("235 2.7.0 Authentication successful"), "{transcript}");
        let m = server.submit.messages();
        assert_eq!(m.len(), n + 1);
        assert_eq!(m[n].envelope.recipients[0].address, "victim@example.net");
        assert_eq!(
            String::from_utf8_lossy(m[n].data.inline().unwrap()),
            format!("{}{want}", received(n as u64 + 1, "ESMTPSA"))
        );
    }
    // A wrong password: refused, nothing stored.
    let (file, _) = data_file(dir.path(), "swaks-wrong");
    let auth = ["--tls", "--auth", "LOGIN", "--auth-user", USER, "--auth-password", "wrong"];
    let (ok, transcript) = swaks(&server, &file, &[&["--to", "victim@example.net"][..], &auth].concat()).await;
    assert!(!ok && transcript.contains("535 5.7.8"), "{transcript}");
    assert_eq!(server.submit.messages().len(), 2);
}

#[tokio::test]
async fn swaks_pipelined_and_a_utf8_address_without_smtputf8() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings()).await;
    let (file, want) = data_file(dir.path(), "swaks-pipelined");
    // MAIL, RCPT and DATA in one write (RFC 2920), as swaks sends them when offered.
    let (ok, transcript) = swaks(&server, &file, &["--to", "bob@local.test", "--pipeline"]).await;
    assert!(ok, "{transcript}");
    assert!(transcript.contains("250 2.6.0"), "{transcript}");
    assert!(server.submit.messages()[0].data.inline().unwrap().ends_with(want.as_bytes()));

    // This swaks has no SMTPUTF8: a UTF-8 recipient is refused with the RFC 6531 code, nothing stored.
    let (ok, transcript) = swaks(&server, &file, &["--to", "jörg@local.test"]).await;
    assert!(!ok && transcript.contains("553 5.6.7"), "{transcript}");
    assert_eq!(server.submit.messages().len(), 1);
}
