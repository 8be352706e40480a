//! A small SMTP client that reports each reply as the server sent it: the scenarios need
//! the codes a user would see (`250`, `421 4.3.2 ...`), which a full client library hides.
//! The async twin of the test kit's `SmtpClient` (the scenarios run on tokio, each step
//! bounded); the DATA block is the kit's.
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Bound on every network wait of the client.
const WAIT: Duration = Duration::from_secs(15);

pub struct Smtp {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

fn timeout_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer to {what} within {WAIT:?}"))
}

impl Smtp {
    /// Connects and reads the banner.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<(Smtp, String)> {
        let stream =
            tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.map_err(|_| timeout_error("connect"))??;
        let (r, w) = stream.into_split();
        let mut c = Smtp { reader: BufReader::new(r), writer: w };
        let banner = c.reply("the banner").await?;
        Ok((c, banner))
    }

    /// One whole reply, lines joined with `\n`.
    async fn reply(&mut self, what: &str) -> std::io::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
                .await
                .map_err(|_| timeout_error(what))??;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("closed after {all:?}")));
            }
            let last = line.len() < 4 || line.as_bytes()[3] != b'-';
            all.push_str(line.trim_end());
            if last {
                return Ok(all);
            }
            all.push('\n');
        }
    }

    pub async fn cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).await?;
        self.reply(line).await
    }

    /// EHLO, MAIL, RCPT, DATA and the message; the first reply that is not a success, or
    /// the reply to the final dot.
    pub async fn send(&mut self, from: &str, to: &str, message: &str) -> std::io::Result<String> {
        for line in ["EHLO client.e2e.test".to_string(), format!("MAIL FROM:<{from}>"), format!("RCPT TO:<{to}>")] {
            let r = self.cmd(&line).await?;
            if !r.starts_with('2') {
                return Ok(r);
            }
        }
        let r = self.cmd("DATA").await?;
        if !r.starts_with('3') {
            return Ok(r);
        }
        self.writer.write_all(testkit::smtp_client::data_block(message).as_bytes()).await?;
        let r = self.reply("the end of DATA").await?;
        let _ = self.cmd("QUIT").await;
        Ok(r)
    }
}

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

/// Sends one message to `addr`; the final reply (a refusal is `Ok` with its reply, a
/// connection that fails is `Err`).
pub async fn send_one(addr: SocketAddr, id: &str, to: &str) -> std::io::Result<String> {
    let (mut c, banner) = Smtp::connect(addr).await?;
    if !banner.starts_with("220") {
        return Ok(banner);
    }
    c.send("alice@example.org", to, &message(id, to)).await
}
