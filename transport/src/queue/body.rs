//! Message bodies on their way into and out of the store, a chunk at a time.
//!
//! Why: a server that holds every message in flight in memory is killed by the
//! kernel (with every session in flight) as soon as a few senders send large
//! messages at once. Here a body is kept in memory only while it is small; past
//! [`SPOOL_ABOVE`] bytes it goes to its own file in the queue's spool folder as
//! it arrives, and is read back in [`CHUNK`]-sized pieces when it is delivered,
//! redirected or exported. Memory per session is then bounded by the spool
//! threshold and the header the session must scan, not by the message size.
//!
//! Durability (docs/design.md §5): a spooled body is fdatasync'ed by its writer
//! ([`BodyWriter::finish`]); the store's commit thread then syncs the spool
//! folder (the file's name) before it commits the envelope that refers to it,
//! and only that commit lets the server answer `250`. A file without a stored
//! envelope (a crash while it was written, a message refused) is removed when
//! the queue is opened again, so no half message is ever visible.
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bodies up to this size stay in memory and are stored inside the database
/// with their envelope (one group commit, no file of their own: small mail is
/// most mail, and its throughput depends on that). Larger ones are spooled.
pub const SPOOL_ABOVE: usize = 128 << 10;
/// Size of the pieces a spooled body is written and read in.
pub const CHUNK: usize = 64 << 10;

/// Whether spool files can be written. A failed write (a full disk) is
/// remembered, so that the server refuses mail at `MAIL` (and `/readyz` says
/// 503) instead of taking each message's data only to refuse it; a probe write
/// at most every `retry` tells when space is back.
#[derive(Debug, Default)]
pub struct SpoolHealth {
    failed: Mutex<Option<(String, Instant)>>,
}

impl SpoolHealth {
    fn record(&self, e: &io::Error) {
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some((e.to_string(), Instant::now()));
    }

    /// Why spool files cannot be written, if the last write failed and a probe
    /// of [`CHUNK`] bytes in `spool` (at most once per `retry`) still fails.
    pub fn failure(&self, spool: &Path, retry: Duration) -> Option<String> {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let (reason, since) = failed.as_mut()?;
        if since.elapsed() < retry {
            return Some(reason.clone());
        }
        match probe(spool) {
            Ok(()) => {
                tracing::warn!("spool files can be written again; taking mail");
                *failed = None;
                None
            }
            Err(e) => {
                *reason = e.to_string();
                *since = Instant::now();
                Some(reason.clone())
            }
        }
    }
}

/// Writes and syncs a chunk-sized file, then removes it.
fn probe(spool: &Path) -> io::Result<()> {
    use std::io::Write;
    let path = spool.join(".probe");
    let written = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(&[0; CHUNK])?;
        f.sync_data()
    });
    let _ = std::fs::remove_file(&path);
    written
}

/// A spooled body's file. It is removed when the last handle goes unless the
/// store took it over ([`SpoolFile::keep`]): a body whose message was never
/// stored leaves nothing behind.
#[derive(Debug)]
pub struct SpoolFile {
    path: PathBuf,
    kept: AtomicBool,
}

impl SpoolFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store owns the file from now on (it removes it with the message).
    pub(crate) fn keep(&self) {
        self.kept.store(true, Ordering::Release);
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if !self.kept.load(Ordering::Acquire) {
            // Best effort: what is left is removed when the queue opens next.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A complete body, durable if spooled, not yet part of the queue.
#[derive(Debug, Clone)]
pub enum StagedBody {
    Inline(Vec<u8>),
    Spooled { file: Arc<SpoolFile>, len: u64 },
}

impl StagedBody {
    pub fn len(&self) -> u64 {
        match self {
            StagedBody::Inline(data) => data.len() as u64,
            StagedBody::Spooled { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, when they are held in memory.
    pub fn inline(&self) -> Option<&[u8]> {
        match self {
            StagedBody::Inline(data) => Some(data),
            StagedBody::Spooled { .. } => None,
        }
    }
}

/// Writes a body as it arrives: in memory up to [`SPOOL_ABOVE`] bytes, then to
/// its spool file. Dropping an unfinished writer removes the file.
pub struct BodyWriter {
    /// Where the body goes once it is too large for memory; `None` keeps
    /// everything in memory (the SMTP session's tests, which have no store).
    spool_path: Option<PathBuf>,
    /// Told about failed writes.
    health: Option<Arc<SpoolHealth>>,
    /// The first bytes (all of them while not spooled): what the receiver
    /// scans for the header section.
    head: Vec<u8>,
    /// How much of the head is kept once spooled.
    head_keep: usize,
    file: Option<(tokio::fs::File, Arc<SpoolFile>)>,
    /// Bytes for the file not yet written (written a [`CHUNK`] at a time).
    pending: Vec<u8>,
    len: u64,
}

impl BodyWriter {
    /// A writer that spools to `spool_path` past [`SPOOL_ABOVE`] bytes and keeps
    /// at least the first `head_keep` bytes in memory for [`BodyWriter::head`].
    pub fn new(spool_path: PathBuf, head_keep: usize, health: Arc<SpoolHealth>) -> BodyWriter {
        BodyWriter {
            spool_path: Some(spool_path),
            health: Some(health),
            head: Vec::new(),
            head_keep: head_keep.max(SPOOL_ABOVE),
            file: None,
            pending: Vec::new(),
            len: 0,
        }
    }

    /// A writer that never spools (for tests of the SMTP session).
    pub fn in_memory() -> BodyWriter {
        BodyWriter {
            spool_path: None,
            health: None,
            head: Vec::new(),
            head_keep: usize::MAX,
            file: None,
            pending: Vec::new(),
            len: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first bytes of the body: all of them, or at least as many as the
    /// `head_keep` it was made with.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let written = self.write_inner(bytes).await;
        self.noted(written)
    }

    fn noted<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if let (Err(e), Some(health)) = (&result, &self.health) {
            health.record(e);
        }
        result
    }

    async fn write_inner(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.len += bytes.len() as u64;
        if self.file.is_none() {
            self.head.extend_from_slice(bytes);
            if self.spool_path.is_some() && self.head.len() > SPOOL_ABOVE {
                self.spill().await?;
            }
            return Ok(());
        }
        let room = self.head_keep.saturating_sub(self.head.len()).min(bytes.len());
        self.head.extend_from_slice(&bytes[..room]);
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= CHUNK {
            self.write_pending().await?;
        }
        Ok(())
    }

    /// The body grew too large for memory: create its file with what came so far.
    async fn spill(&mut self) -> io::Result<()> {
        let Some(path) = self.spool_path.clone() else { return Ok(()) };
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        // From here on the file is ours to remove if the body is not stored.
        let owner = Arc::new(SpoolFile { path, kept: AtomicBool::new(false) });
        file.write_all(&self.head).await?;
        self.file = Some((file, owner));
        if self.head.len() > self.head_keep {
            self.head.truncate(self.head_keep);
            self.head.shrink_to_fit();
        }
        Ok(())
    }

    async fn write_pending(&mut self) -> io::Result<()> {
        if let Some((file, _)) = self.file.as_mut() {
            file.write_all(&self.pending).await?;
            self.pending.clear();
        }
        Ok(())
    }

    /// The whole body: in memory, or written and fdatasync'ed to its file.
    pub async fn finish(mut self) -> io::Result<StagedBody> {
        let finished = self.finish_inner().await;
        self.noted(finished)
    }

    async fn finish_inner(&mut self) -> io::Result<StagedBody> {
        self.write_pending().await?;
        match self.file.take() {
            None => Ok(StagedBody::Inline(std::mem::take(&mut self.head))),
            Some((mut file, owner)) => {
                file.flush().await?;
                file.sync_data().await?;
                Ok(StagedBody::Spooled { file: owner, len: self.len })
            }
        }
    }
}

/// A stored body, read a chunk at a time.
pub enum BodyReader {
    Inline(Option<Vec<u8>>, u64),
    File { file: tokio::fs::File, remaining: u64, len: u64 },
}

impl BodyReader {
    /// A body held in memory (inline in the store, or built by a caller).
    pub fn in_memory(data: Vec<u8>) -> BodyReader {
        let len = data.len() as u64;
        BodyReader::Inline(Some(data), len)
    }

    /// Opens a spooled body that the store recorded as `len` bytes long.
    pub(crate) fn file(file: std::fs::File, len: u64) -> BodyReader {
        BodyReader::File { file: tokio::fs::File::from_std(file), remaining: len, len }
    }

    /// The body's size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            BodyReader::Inline(_, len) | BodyReader::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next piece, `None` at the end. A file shorter than recorded is an
    /// error (never a silently shortened message).
    pub async fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self {
            BodyReader::Inline(data, _) => Ok(data.take()),
            BodyReader::File { file, remaining, .. } => {
                if *remaining == 0 {
                    return Ok(None);
                }
                let want = (*remaining).min(CHUNK as u64) as usize;
                let mut chunk = vec![0; want];
                file.read_exact(&mut chunk).await?;
                *remaining -= want as u64;
                Ok(Some(chunk))
            }
        }
    }

    /// The whole body in memory (for the rare readers that need it at once).
    pub async fn read_all(mut self) -> io::Result<Vec<u8>> {
        let mut all = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        while let Some(chunk) = self.next_chunk().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| b'a' + (i % 26) as u8).collect()
    }

    async fn write_in_pieces(w: &mut BodyWriter, data: &[u8], piece: usize) {
        for p in data.chunks(piece) {
            w.write(p).await.unwrap();
        }
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("7");
        let mut w = BodyWriter::new(path.clone(), 100, Arc::default());
        let data = bytes(SPOOL_ABOVE);
        write_in_pieces(&mut w, &data, 1000).await;
        let body = w.finish().await.unwrap();
        assert_eq!(body.inline(), Some(&data[..]));
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn large_bodies_go_to_their_file_and_read_back_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("8");
        let mut w = BodyWriter::new(path.clone(), 1000, Arc::default());
        let data = bytes(3 * SPOOL_ABOVE + 17);
        write_in_pieces(&mut w, &data, 4096).await;
        // The head kept for the header scan is bounded, whatever the size.
        assert_eq!(w.head(), &data[..SPOOL_ABOVE]);
        let body = w.finish().await.unwrap();
        assert_eq!(body.len(), data.len() as u64);
        assert!(body.inline().is_none());
        assert_eq!(std::fs::read(&path).unwrap(), data);

        let mut r = BodyReader::file(std::fs::File::open(&path).unwrap(), data.len() as u64);
        let mut chunks = 0;
        let mut back = Vec::new();
        while let Some(c) = r.next_chunk().await.unwrap() {
            assert!(c.len() <= CHUNK);
            back.extend_from_slice(&c);
            chunks += 1;
        }
        assert_eq!(back, data);
        assert_eq!(chunks, data.len().div_ceil(CHUNK));
        // Kept by nobody: the file goes with the last handle.
        drop(body);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn an_unfinished_or_unstored_body_leaves_no_file_and_a_kept_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("9");
        let mut w = BodyWriter::new(path.clone(), 0, Arc::default());
        write_in_pieces(&mut w, &bytes(SPOOL_ABOVE * 2), 10_000).await;
        assert!(path.exists());
        drop(w);
        assert!(!path.exists());

        let mut w = BodyWriter::new(path.clone(), 0, Arc::default());
        write_in_pieces(&mut w, &bytes(SPOOL_ABOVE * 2), 10_000).await;
        let body = w.finish().await.unwrap();
        let StagedBody::Spooled { file, .. } = &body else { panic!("not spooled") };
        file.keep();
        drop(body);
        assert!(path.exists());
    }

    #[tokio::test]
    async fn a_file_shorter_than_recorded_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("10");
        std::fs::write(&path, bytes(100)).unwrap();
        let r = BodyReader::file(std::fs::File::open(&path).unwrap(), 200);
        assert_eq!(r.read_all().await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
