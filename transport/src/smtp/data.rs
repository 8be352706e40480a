//! Reading DATA (RFC 5321 §4.1.1.4, §4.5.2): the message ends only at
//! `<CRLF>.<CRLF>`, leading dots are unstuffed, and any bare CR or bare LF
//! fails the whole transaction. The last rule is what defeats SMTP smuggling:
//! a receiver that took `<LF>.<LF>` or `<CR>.<CR>` as the end while the next
//! hop does not (or the other way round) lets a second message hide inside
//! the first. Here no such sequence ends anything, and the message holding one
//! is refused once the real end has been read.

/// Where in the current line the reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinePosition {
    /// At the start of a line (after CRLF, or at the very start of the data).
    LineStart,
    /// A `.` at the start of a line.
    Dot,
    /// `.` CR at the start of a line: LF now ends the message.
    DotCr,
    /// Inside a line.
    Mid,
    /// A CR inside a line: LF ends the line.
    Cr,
}

/// Why the data was refused (checked in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    /// A CR not followed by LF, or an LF not preceded by CR.
    BareLineEnd,
    Nul,
    TooBig,
}

/// Streaming DATA decoder. Feed it what arrives until it reports the end; it
/// hands the unstuffed bytes on as they come (the session writes them to the
/// message's body) and holds none itself.
pub struct DataReader {
    state: LinePosition,
    max_size: u64,
    /// Client bytes seen, unstuffed (counted even once no longer stored).
    size: u64,
    bare_line_end: bool,
    nul: bool,
}

impl DataReader {
    pub fn new(max_size: u64) -> Self {
        DataReader { state: LinePosition::LineStart, max_size, size: 0, bare_line_end: false, nul: false }
    }

    /// Client bytes seen so far (unstuffed).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The message will be refused: what follows need not be kept.
    pub fn failed(&self) -> bool {
        self.bare_line_end || self.nul || self.size > self.max_size
    }

    /// Hands client bytes on unless the message is already refused.
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.size += bytes.len() as u64;
        if !self.failed() {
            out.extend_from_slice(bytes);
        }
    }

    /// Consumes `input`, appending the message's bytes (unstuffed) to `out`.
    /// Returns `Some(n)` when the end-of-data line was found: the first `n`
    /// bytes of `input` (up to and including it) are consumed and the rest
    /// belongs to the next command. `None`: all of `input` was consumed and
    /// more is needed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                LinePosition::Mid => {
                    // Copy the run of ordinary bytes in one go.
                    let run = input[i..].iter().position(|&c| c == b'\r' || c == b'\n' || c == 0);
                    let end = run.map_or(input.len(), |p| i + p);
                    if end > i {
                        self.emit(&input[i..end], out);
                        i = end;
                        continue;
                    }
                    match b {
                        b'\r' => self.state = LinePosition::Cr,
                        b'\n' => self.bare_line_end = true,
                        _ => self.nul = true,
                    }
                }
                LinePosition::Cr => {
                    if b == b'\n' {
                        self.emit(b"\r\n", out);
                        self.state = LinePosition::LineStart;
                    } else {
                        // CR followed by anything else: refuse, and look at
                        // the byte again as an ordinary one.
                        self.bare_line_end = true;
                        self.state = LinePosition::Mid;
                        continue;
                    }
                }
                LinePosition::LineStart => match b {
                    b'.' => self.state = LinePosition::Dot,
                    b'\r' => self.state = LinePosition::Cr,
                    b'\n' => {
                        self.bare_line_end = true;
                        self.state = LinePosition::Mid;
                    }
                    _ => {
                        self.state = LinePosition::Mid;
                        continue;
                    }
                },
                LinePosition::Dot => match b {
                    b'\r' => self.state = LinePosition::DotCr,
                    b'\n' => {
                        self.bare_line_end = true;
                        self.state = LinePosition::Mid;
                    }
                    _ => {
                        // Dot-unstuffing: the leading dot goes, the rest stays.
                        self.state = LinePosition::Mid;
                        continue;
                    }
                },
                LinePosition::DotCr => {
                    if b == b'\n' {
                        return Some(i + 1);
                    }
                    self.bare_line_end = true;
                    self.state = LinePosition::Mid;
                    continue;
                }
            }
            i += 1;
        }
        None
    }

    /// After the end was found: whether the message may be stored, or why not.
    pub fn finish(self) -> Result<(), DataError> {
        if self.bare_line_end {
            Err(DataError::BareLineEnd)
        } else if self.nul {
            Err(DataError::Nul)
        } else if self.size > self.max_size {
            Err(DataError::TooBig)
        } else {
            Ok(())
        }
    }
}

/// BDAT content (RFC 3030): taken as it comes, no dot-stuffing and no end
/// marker. Unless the message is BINARYMIME, the same rules as for DATA hold
/// (CRLF line ends only, no NUL): a next hop that gets it with DATA must not
/// see a line end or an end of data that this server did not.
pub struct ChunkChecker {
    binary: bool,
    max_size: u64,
    size: u64,
    after_cr: bool,
    error: Option<DataError>,
}

impl ChunkChecker {
    pub fn new(max_size: u64, binary: bool) -> Self {
        ChunkChecker { binary, max_size, size: 0, after_cr: false, error: None }
    }

    /// Octets taken so far, over every chunk.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Looks at the next octets of the message (a chunk may end anywhere, even
    /// between CR and LF). Returns the reason to refuse it once there is one:
    /// that of the first octet at fault (past the size limit, or a bare line
    /// end or NUL before it), so the answer never depends on how the message
    /// was cut into chunks.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<DataError> {
        let room = usize::try_from(self.max_size.saturating_sub(self.size)).unwrap_or(usize::MAX);
        self.size += bytes.len() as u64;
        if self.error.is_some() {
            return self.error;
        }
        let within = &bytes[..bytes.len().min(room)];
        if !self.binary {
            for &b in within {
                match (self.after_cr, b) {
                    (true, b'\n') => self.after_cr = false,
                    (true, _) | (false, b'\n') => {
                        self.error = Some(DataError::BareLineEnd);
                        return self.error;
                    }
                    (false, b'\r') => self.after_cr = true,
                    (false, 0) => {
                        self.error = Some(DataError::Nul);
                        return self.error;
                    }
                    (false, _) => {}
                }
            }
        }
        if bytes.len() > room {
            self.error = Some(DataError::TooBig);
        }
        self.error
    }

    /// After the LAST chunk: whether the message may be stored.
    pub fn finish(self) -> Result<(), DataError> {
        match self.error {
            Some(e) => Err(e),
            None if self.after_cr && !self.binary => Err(DataError::BareLineEnd),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&[u8]], max: u64, binary: bool) -> Result<(), DataError> {
        let mut c = ChunkChecker::new(max, binary);
        for p in parts {
            if let Some(e) = c.feed(p) {
                return Err(e);
            }
        }
        c.finish()
    }

    #[test]
    fn chunks_keep_the_data_rules_across_chunk_boundaries_unless_binary() {
        assert_eq!(chunks(&[b"a\r", b"\nb\r\n"], 100, false), Ok(()));
        assert_eq!(chunks(&[b"a\r", b"b\r\n"], 100, false), Err(DataError::BareLineEnd));
        assert_eq!(chunks(&[b"a\nb"], 100, false), Err(DataError::BareLineEnd));
        assert_eq!(chunks(&[b"a\r\n", b"x\r"], 100, false), Err(DataError::BareLineEnd), "a CR at the very end");
        assert_eq!(chunks(&[b"a\0\r\n"], 100, false), Err(DataError::Nul));
        assert_eq!(chunks(&[b"0123456789", b"0"], 10, false), Err(DataError::TooBig));
        assert_eq!(chunks(&[b"\0\n\r", b"\xff"], 100, true), Ok(()), "BINARYMIME takes any octet");
        assert_eq!(chunks(&[b"0123456789", b"0"], 10, true), Err(DataError::TooBig));
        assert_eq!(chunks(&[], 10, false), Ok(()), "BDAT 0 LAST: an empty message");
        // The first octet at fault decides, however the chunks fall (found by fuzzing).
        let input = b"\xff\xff\xff\xff\x00123 L";
        assert_eq!(chunks(&[input], 8, false), Err(DataError::Nul));
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(chunks(&bytes, 8, false), Err(DataError::Nul));
        assert_eq!(chunks(&[b"0123456789\n"], 10, false), Err(DataError::TooBig), "the LF is past the limit");
    }

    /// Feeds `input` in pieces of `step` bytes; returns what was consumed and the outcome.
    fn read(input: &[u8], step: usize, max: u64) -> (Option<usize>, Result<Vec<u8>, DataError>) {
        let mut r = DataReader::new(max);
        let mut out = b"P:".to_vec();
        let mut consumed = 0;
        for chunk in input.chunks(step) {
            if let Some(n) = r.feed(chunk, &mut out) {
                return (Some(consumed + n), r.finish().map(|()| out));
            }
            consumed += chunk.len();
        }
        (None, r.finish().map(|()| out))
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf_in_any_chunking() {
        let msg = b"Subject: x\r\n\r\n..dotted\r\n.\r\nQUIT\r\n";
        for step in 1..msg.len() {
            let (end, out) = read(msg, step, 1000);
            assert_eq!(end, Some(msg.len() - 6), "step {step}");
            assert_eq!(out.unwrap(), b"P:Subject: x\r\n\r\n.dotted\r\n");
        }
    }

    #[test]
    fn empty_message() {
        assert_eq!(read(b".\r\n", 1, 10), (Some(3), Ok(b"P:".to_vec())));
    }

    #[test]
    fn smuggling_sequences_never_end_the_data_and_fail_it() {
        for bad in [&b"a\n.\nb"[..], b"a\r.\rb", b"a\n.\r\nb", b"a\r\n.\nb", b"a\r\n.\rb", b"a\r.\r\nb", b"a\nb"] {
            let mut msg = bad.to_vec();
            msg.extend_from_slice(b"\r\n.\r\n");
            for step in [1, 2, msg.len()] {
                let (end, out) = read(&msg, step, 1000);
                assert_eq!(end, Some(msg.len()), "{bad:?} step {step}");
                assert_eq!(out, Err(DataError::BareLineEnd), "{bad:?}");
            }
        }
    }

    #[test]
    fn nul_and_size() {
        assert_eq!(read(b"a\0b\r\n.\r\n", 3, 100).1, Err(DataError::Nul));
        let (end, out) = read(b"0123456789\r\n.\r\n", 4, 11);
        assert_eq!((end, out), (Some(15), Err(DataError::TooBig)));
        assert!(read(b"012345678\r\n.\r\n", 4, 11).1.is_ok());
    }
}
