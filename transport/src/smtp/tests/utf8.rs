//! SMTPUTF8 (RFC 6531) from a raw client: UTF-8 addresses only when declared,
//! internationalized domains matched in their A-label form, UTF-8 headers
//! stored as sent, and nothing but valid UTF-8 taken.
use super::*;

/// Settings with `bücher.test` accepted, written as its A-label.
fn with_idn_domain() -> SessionSettings {
    let mut s = settings();
    s.accepted_domains.push(DomainPattern::parse("xn--bcher-kva.test", false).expect("a domain pattern"));
    s
}

#[tokio::test]
async fn utf8_addresses_are_taken_when_smtputf8_is_declared() {
    let server = start(with_idn_domain()).await;
    let mut c = server.session().await;
    assert_eq!(c.cmd("MAIL FROM:<jörg@sender.test> SMTPUTF8").await.unwrap(), "250 2.1.0 Sender OK");
    // The accepted domain matches in its A-label form, whatever the case of the U-label.
    assert_eq!(c.cmd("RCPT TO:<müller@BÜCHER.test>").await.unwrap(), "250 2.1.5 Recipient OK");
    // Not accepted, and no relay on this connector: refused as any other domain.
    assert_eq!(c.cmd("RCPT TO:<用户@例子.广告>").await.unwrap(), "550 5.7.1 Unable to relay");
    assert_eq!(c.cmd("DATA").await.unwrap(), "354 Start mail input; end with <CRLF>.<CRLF>");
    c.send_raw("Subject: Grüße\r\nFrom: Jörg <jörg@sender.test>\r\n\r\nHallo.\r\n.\r\n".as_bytes()).await.unwrap();
    expect(&c.read_reply().await.unwrap(), "250 2.6.0");
    let m = &server.submit.messages()[0];
    assert!(m.envelope.smtputf8);
    assert_eq!(m.envelope.mail_from.as_ref().map(|a| a.as_str()), Some("jörg@sender.test"));
    assert_eq!(m.envelope.recipients[0].address.as_str(), "müller@BÜCHER.test", "kept as given");
    let data = String::from_utf8(m.data.inline().unwrap().to_vec()).unwrap();
    assert!(data.contains("with UTF8SMTP id") && data.contains("Subject: Grüße\r\n"), "{data}");
}

#[tokio::test]
async fn a_utf8_address_without_smtputf8_is_553_5_6_7() {
    let server = start(with_idn_domain()).await;
    let mut c = server.session().await;
    assert_eq!(
        c.cmd("MAIL FROM:<jörg@sender.test>").await.unwrap(),
        "553 5.6.7 A non-ASCII address needs SMTPUTF8 on MAIL FROM"
    );
    assert_eq!(c.cmd("MAIL FROM:<joerg@sender.test>").await.unwrap(), "250 2.1.0 Sender OK");
    assert_eq!(
        c.cmd("RCPT TO:<bob@bücher.test>").await.unwrap(),
        "553 5.6.7 A non-ASCII address needs SMTPUTF8 on MAIL FROM"
    );
    // Its A-label is plain ASCII and needs nothing.
    assert_eq!(c.cmd("RCPT TO:<bob@xn--bcher-kva.test>").await.unwrap(), "250 2.1.5 Recipient OK");
}

#[tokio::test]
async fn only_valid_utf8_without_controls_is_read_as_a_command() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    for bad in [&b"MAIL FROM:<j\xf6rg@sender.test> SMTPUTF8\r\n"[..], "NOOP \u{85}\r\n".as_bytes(), b"NOOP \x1b[0m\r\n"]
    {
        c.send_raw(bad).await.unwrap();
        assert_eq!(c.read_reply().await.unwrap(), "500 5.5.2 Syntax error: invalid character in command", "{bad:?}");
    }
    assert_eq!(
        c.cmd("EHLO jörg.test").await.unwrap(),
        "501 5.5.4 Invalid domain name",
        "EHLO names are ASCII (A-labels)"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b.test> SMTPUTF8=1").await.unwrap(), "501 5.5.4 Invalid SMTPUTF8 parameter");
}

#[tokio::test]
async fn a_connector_with_smtputf8_off_takes_ascii_only() {
    let mut s = settings();
    s.settings.smtp_utf8_enabled = Some(false);
    let server = start(s).await;
    let (mut c, _) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    assert!(!c.cmd("EHLO client.test").await.unwrap().contains("SMTPUTF8"));
    assert_eq!(c.cmd("MAIL FROM:<a@b.test> SMTPUTF8").await.unwrap(), "555 5.5.4 Unsupported parameter SMTPUTF8");
    c.send_raw("MAIL FROM:<jörg@sender.test>\r\n".as_bytes()).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), "500 5.5.2 Syntax error: invalid character in command");
}
