//! The scenarios' mail: messages with a unique Message-ID, sent with the test kit's SMTP
//! client, which reports each reply as the server sent it (the codes a user would see:
//! `250`, `421 4.3.2 ...`).
use std::net::SocketAddr;
use testkit::AsyncSmtpClient;

/// The Message-ID [`message`] gives `id`: `<id@e2e.test>`.
pub fn message_id(id: &str) -> String {
    format!("<{id}@e2e.test>")
}

/// A message with a unique Message-ID ([`message_id`]).
pub fn message(id: &str, to: &str) -> String {
    let message_id = message_id(id);
    format!(
        "From: alice@example.org\r\nTo: {to}\r\nSubject: e2e {id}\r\nMessage-ID: {message_id}\r\n\r\nmessage {id}\r\n"
    )
}

/// EHLO, `message` from `from` to `to`, QUIT on `c`; the first reply that is not a
/// success, or the reply to the final dot.
pub async fn send(c: &mut AsyncSmtpClient, from: &str, to: &str, message: &str) -> std::io::Result<String> {
    let r = c.cmd("EHLO client.e2e.test").await?;
    if !r.starts_with('2') {
        return Ok(r);
    }
    let r = c.send_message(from, &[to], message).await?;
    let _ = c.cmd("QUIT").await;
    Ok(r)
}

/// Sends one message to `addr`; the final reply (a refusal is `Ok` with its reply, a
/// connection that fails is `Err`).
pub async fn send_one(addr: SocketAddr, id: &str, to: &str) -> std::io::Result<String> {
    let (mut c, banner) = AsyncSmtpClient::connect(addr).await?;
    if !banner.starts_with("220") {
        return Ok(banner);
    }
    send(&mut c, "alice@example.org", to, &message(id, to)).await
}
