//! The message as sent after DATA (RFC 5321 §4.5.2): every line that starts
//! with a dot gets a second one, and `CRLF . CRLF` ends it. Done a chunk at a
//! time, so a large body is never framed in memory as a whole.

/// Dot-stuffs a message given in pieces split anywhere (even inside a CRLF).
#[derive(Debug)]
pub struct DotStuffer {
    /// The next byte starts a line (the data so far ended with CRLF, or is empty).
    line_start: bool,
    /// The last byte so far was a CR.
    after_cr: bool,
    empty: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer { line_start: true, after_cr: false, empty: true }
    }
}

impl DotStuffer {
    /// Appends `chunk`, stuffed, to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 64 + 2);
        let mut rest = chunk;
        while let Some(&first) = rest.first() {
            self.empty = false;
            if self.line_start && first == b'.' {
                out.push(b'.');
            }
            // Copy up to and including the next LF in one go; a line starts
            // after it only when a CR came right before it.
            match rest.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    let cr = if p > 0 { rest[p - 1] == b'\r' } else { self.after_cr };
                    out.extend_from_slice(&rest[..=p]);
                    rest = &rest[p + 1..];
                    self.line_start = cr;
                    self.after_cr = false;
                }
                None => {
                    out.extend_from_slice(rest);
                    self.after_cr = rest.last() == Some(&b'\r');
                    self.line_start = false;
                    rest = &[];
                }
            }
        }
    }

    /// The end of data. Stored data ends with CRLF, which must not become an
    /// extra empty line; data that does not gets its CRLF before the dot.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.line_start && !self.empty {
            out.extend_from_slice(b".\r\n");
        } else {
            out.extend_from_slice(b"\r\n.\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DotStuffer;

    /// Frames `data` given in pieces of `step` bytes.
    fn framed(data: &[u8], step: usize) -> Vec<u8> {
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::new();
        for piece in data.chunks(step.max(1)) {
            stuffer.push(piece, &mut out);
        }
        stuffer.finish(&mut out);
        out
    }

    #[test]
    fn data_is_dot_stuffed_and_terminated_once_however_it_is_split() {
        let cases: [(&[u8], &[u8]); 7] = [
            (b".a\r\nb\r\n..c\r\n", b"..a\r\nb\r\n...c\r\n.\r\n"),
            // No CRLF at the end: one is added before the dot.
            (b"x\r\n.", b"x\r\n..\r\n.\r\n"),
            // An empty last line is kept; a dot after a bare CR or LF is not at a line start.
            (b"a\r\n\r\n", b"a\r\n\r\n.\r\n"),
            (b"a\r.b\r\n", b"a\r.b\r\n.\r\n"),
            (b"a\n.b\r\n", b"a\n.b\r\n.\r\n"),
            (b"", b"\r\n.\r\n"),
            (b"\r\n", b"\r\n.\r\n"),
        ];
        for (data, want) in cases {
            for step in 1..=data.len().max(1) {
                assert_eq!(framed(data, step), want, "{:?} in pieces of {step}", String::from_utf8_lossy(data));
            }
        }
    }
}
