//! A small blocking SMTP client that reports the reply to each step: the tests need the raw
//! replies (codes and enhanced codes), which a full client library hides.
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpClient {
    /// Connects and reads the banner.
    pub fn connect(addr: SocketAddr) -> std::io::Result<(Self, String)> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        let mut c = SmtpClient { reader: BufReader::new(stream), writer };
        let banner = c.read_reply()?;
        Ok((c, banner))
    }

    /// A whole (possibly multi-line) reply, lines joined with `\n`.
    pub fn read_reply(&mut self) -> std::io::Result<String> {
        read_reply(&mut self.reader)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Sends `line` and CRLF; the reply.
    pub fn cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }

    /// MAIL, RCPTs, DATA and the message; the first reply that is not a success, or the
    /// final reply after the dot.
    pub fn send_message(&mut self, from: &str, to: &[&str], message: &str) -> std::io::Result<String> {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"))?;
        if !r.starts_with('2') {
            return Ok(r);
        }
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>"))?;
            if !r.starts_with('2') {
                return Ok(r);
            }
        }
        let r = self.cmd("DATA")?;
        if !r.starts_with('3') {
            return Ok(r);
        }
        self.writer.write_all(data_block(message).as_bytes())?;
        self.read_reply()
    }

    /// Everything the server sends until it closes (bounded by the read timeout).
    pub fn read_to_end(&mut self) -> String {
        let mut s = String::new();
        let _ = self.reader.read_to_string(&mut s);
        s
    }
}

/// Reads one reply (all its lines, joined with `\n`) byte by byte, so nothing after it is
/// consumed (a raw stream the caller goes on using). EOF before its end is an error.
pub fn read_reply(r: &mut impl Read) -> std::io::Result<String> {
    let mut all = String::new();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if r.read(&mut b)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("closed after {all:?}")));
        }
        line.push(b[0]);
        if b[0] == b'\n' {
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            all.push_str(&text);
            line.clear();
            if ends_reply(&text) {
                return Ok(all);
            }
            all.push('\n');
        }
    }
}

/// Whether a reply line (without its line end) is the last of its reply: `250-` continues,
/// `250 ` (or a line too short to say) ends it.
pub fn ends_reply(line: &str) -> bool {
    line.len() < 4 || line.as_bytes()[3] != b'-'
}

/// A message (CRLF lines) as sent after DATA: lines starting with `.` dot-stuffed, a CRLF
/// after the last line if it has none, then the lone dot.
pub fn data_block(message: &str) -> String {
    let mut body = String::new();
    for line in message.split_inclusive("\r\n") {
        if line.starts_with('.') {
            body.push('.');
        }
        body.push_str(line);
    }
    if !message.ends_with("\r\n") {
        body.push_str("\r\n");
    }
    body.push_str(".\r\n");
    body
}

/// A small RFC 5322 message with a unique Message-ID (`<id@test.invalid>`), `body_lines`
/// numbered lines and a last line that starts with a dot.
pub fn test_message(id: &str, body_lines: usize) -> String {
    let mut m = format!(
        "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: test {id}\r\nMessage-ID: <{id}@test.invalid>\r\n\r\n"
    );
    for i in 0..body_lines {
        m.push_str(&format!("line {i} of message {id}\r\n"));
    }
    m.push_str(".leading dot survives dot-stuffing\r\nlast line");
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_reply_is_read_whole_and_nothing_after_it() {
        let mut input: &[u8] = b"250-relay.test\r\n250-SIZE 10\r\n250 8BITMIME\r\n220 next\r\n";
        assert_eq!(read_reply(&mut input).unwrap(), "250-relay.test\n250-SIZE 10\n250 8BITMIME");
        assert_eq!(input, b"220 next\r\n");
    }

    #[test]
    fn a_reply_cut_short_is_an_error_saying_what_came() {
        let mut input: &[u8] = b"250-relay.test\r\n";
        let e = read_reply(&mut input).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("250-relay.test"), "{e}");
    }

    #[test]
    fn leading_dots_are_stuffed_and_the_block_ends_with_a_dot() {
        assert_eq!(data_block("Subject: x\r\n\r\n.hidden\r\nlast"), "Subject: x\r\n\r\n..hidden\r\nlast\r\n.\r\n");
        // A last line with its CRLF gets no second one (no empty line is added).
        assert_eq!(data_block("Subject: x\r\n\r\n.\r\nlast\r\n"), "Subject: x\r\n\r\n..\r\nlast\r\n.\r\n");
        assert_eq!(data_block(""), "\r\n.\r\n");
    }

    #[test]
    fn a_dash_after_the_code_continues_a_reply() {
        assert!(!ends_reply("250-relay.test"));
        assert!(ends_reply("250 8BITMIME"));
        assert!(ends_reply("250"), "too short to continue");
        assert!(ends_reply(""));
    }
}
