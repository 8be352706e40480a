//! Durable store: one redb database `<dir>/queue.redb` written by a single
//! group-commit thread.
//!
//! Why this shape:
//! - The SMTP server answers `250` only once [`Store::insert`] returned, so every
//!   insert must be fsynced. One fsync per message caps throughput at the disk's
//!   fsync rate; instead a dedicated `queue-commit` thread takes every op that is
//!   waiting, applies the whole batch in ONE write transaction
//!   (`Durability::Immediate`: redb fsyncs before `commit` returns) and only then
//!   answers each caller. While it commits, new ops queue up for the next batch.
//! - redb allows concurrent readers next to the single writer, so
//!   [`Store::read_data`] does not go through the thread.
//! - Envelopes are stored as opaque serde_json bytes so that fields added later
//!   with `#[serde(default)]` read old records.
//!
//! - Removals (after delivery) are lazy: they do not start a commit but join
//!   the next one, at the latest 50 ms later, so a busy server spends its fsyncs
//!   on the inserts that clients wait for. A removal lost in a crash only means
//!   the message is delivered again (at least once); nothing acknowledged is
//!   ever lost.
//!
//! - Writes are ordered: [`Store::update`], [`Store::remove`] and the queue-state
//!   ops enqueue their op when called (not when first polled), so a caller
//!   holding its own lock gets its ops committed in the order it made them.
//!
//! - A failed commit (disk full, I/O error) leaves the batch's fate unknown and
//!   redb refuses to commit again on that handle. The store then answers every
//!   write with [`StoreError::Failed`] (the server says `452 4.3.1`), remembers
//!   what those writes wanted (the latest envelope or removal per message, the
//!   latest state per queue), and every [`RECOVERY_INTERVAL`] reopens the
//!   database and applies them. Once that commits it takes writes again; the
//!   queue manager's in-memory state never had to change.
//!
//! - Bodies above [`SPOOL_ABOVE`] are not in the database but in a file of their
//!   own under `<dir>/spool/` (see [`super::body`]), written and fsynced by the
//!   session while the message arrives; a batch that stores one syncs the spool
//!   folder before it commits. Files without a stored message are removed when
//!   the queue opens.
//!
//! Tables: `envelopes` (id → JSON envelope), `bodies` (id → message data),
//! `spooled` (id → length of the body in `spool/<id>`), `meta` (`"id_high_water"` → highest id ever handed out and committed,
//! `"incarnation"` → random number chosen when the database was created),
//! `queues` (queue key → JSON queue state), `quarantine` (id → (reason, raw
//! envelope bytes, body bytes or empty)) for records that could not be recovered,
//! and `retired` (id → milliseconds since the epoch): the Safety Net, delivered
//! messages kept where they are (envelope with the final recipient states, body)
//! for SafetyNetHoldTime. A retired message is not recovered into the queue and
//! not counted in [`Store::len`]; [`Store::retire`] is lazy like a removal, and a
//! retirement asked while the store is failed becomes a removal (the Safety Net
//! is a convenience, never worth a write the failed disk cannot take).
use super::body::{BodyReader, BodyWriter, SpoolHealth, StagedBody, SPOOL_ABOVE};
use crate::envelope::{Envelope, MessageId};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub(crate) const ENVELOPES: TableDefinition<u64, &[u8]> = TableDefinition::new("envelopes");
pub(crate) const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
/// id → length of a body kept in its spool file instead of `bodies`.
pub(crate) const SPOOLED: TableDefinition<u64, u64> = TableDefinition::new("spooled");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (reason, raw envelope bytes, body bytes — empty when the body was missing)
pub(crate) const QUARANTINE: TableDefinition<u64, (&str, &[u8], &[u8])> = TableDefinition::new("quarantine");
/// Queue state that survives restarts (retry counts and times, suspension),
/// keyed by the queue's identity key; the value is the manager's JSON.
pub(crate) const QUEUES: TableDefinition<&str, &[u8]> = TableDefinition::new("queues");
/// Safety Net: delivered messages kept (envelope and body where they were) → when.
pub(crate) const RETIRED: TableDefinition<u64, u64> = TableDefinition::new("retired");
const HIGH_WATER_KEY: &str = "id_high_water";
const INCARNATION_KEY: &str = "incarnation";

/// File name of the database inside the queue directory.
pub const DB_FILE: &str = "queue.redb";
/// Folder of the spooled bodies inside the queue directory (`spool/<id>`).
pub const SPOOL_DIR: &str = "spool";
/// Suffix of a spooled body whose envelope could not be read (kept for a person).
const QUARANTINED_SUFFIX: &str = ".quarantined";

/// A batch stops growing at this many ops...
const MAX_BATCH_OPS: usize = 1024;
/// ...or once it carries this many bytes (bounds the memory of one transaction).
const MAX_BATCH_BYTES: usize = 64 << 20;
/// redb's page cache (default 1 GiB). Bodies are written once and read once
/// for delivery, and recovery walks every record once: a large cache only holds
/// pages nobody reads again (and shows up as RSS), the OS page cache serves the
/// rare re-read.
const CACHE_BYTES: usize = 32 << 20;
/// How long a removal may wait for a commit to join. A removal that is not yet
/// durable when the process dies means the message is delivered again after
/// the restart (at least once, never lost); it costs no fsync of its own.
const LAZY_LINGER: Duration = Duration::from_millis(50);
/// ...unless this many removals are waiting: a server that only delivers (a
/// drain: Redirect-Message, no mail coming in) has no insert for them to join,
/// and its connections, which may run only a few deliveries ahead of their
/// confirmed removals, would wait the whole linger every few messages.
const LAZY_BATCH: usize = 16;
/// redb refuses values above 3 GiB; refuse them up front so that one huge
/// message cannot fail a whole batch (and thereby poison the store).
const MAX_VALUE_LEN: usize = 3 << 30;
/// After a failed commit, how often the store tries to reopen the database.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// How long a recovery attempt waits for readers to let go of the old handle.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("queue storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("queue storage: {context} {path}: {source}")]
    File {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("queue directory {path} is in use by another process (the database {db} is locked)")]
    InUse { path: PathBuf, db: PathBuf },
    #[error("queue database {path}: {context}: {source}")]
    Open {
        context: &'static str,
        path: PathBuf,
        /// Boxed: redb::Error is large and every Result would carry its size.
        #[source]
        source: Box<redb::Error>,
    },
    #[error("queue database: {context}: {source}")]
    Database {
        context: &'static str,
        /// Boxed: redb::Error is large and every Result would carry its size.
        #[source]
        source: Box<redb::Error>,
    },
    #[error("queue: cannot serialize the envelope of message {id}: {source}")]
    Serialize {
        id: MessageId,
        #[source]
        source: serde_json::Error,
    },
    #[error("queue: message {0} is not in the store")]
    NotFound(MessageId),
    #[error("queue: message {0} is already in the store")]
    DuplicateId(MessageId),
    #[error("queue: message {id} is too large to store ({size} bytes)")]
    TooLarge { id: MessageId, size: usize },
    #[error("queue: the store is closed")]
    Closed,
    /// A commit failed earlier; the store refuses every write until it has
    /// reopened the database (the outcome of the failed batch is unknown, so
    /// nothing may claim success). It retries every [`RECOVERY_INTERVAL`].
    #[error("queue: storage failed, writes refused until it recovers: {0}")]
    Failed(String),
    #[error("queue: the commit thread stopped unexpectedly")]
    CommitterGone,
    #[error("queue database is damaged: {0}")]
    Damaged(String),
}

impl StoreError {
    /// The file's content is unreadable (as opposed to the file system being
    /// unavailable, a lock, or a version mismatch, which must stop the start).
    fn is_damage(&self) -> bool {
        let redb_damage = |e: &redb::Error| match e {
            redb::Error::Corrupted(_) => true,
            redb::Error::Io(io) => matches!(io.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData),
            _ => false,
        };
        match self {
            StoreError::Damaged(_) => true,
            StoreError::Open { source, .. } | StoreError::Database { source, .. } => redb_damage(source),
            _ => false,
        }
    }

    fn db<E: Into<redb::Error>>(context: &'static str) -> impl FnOnce(E) -> StoreError {
        move |e| StoreError::Database { context, source: Box::new(e.into()) }
    }
}

/// What [`Store::open`] found on disk.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every readable message, sorted by id. Boxed: the queue keeps each box as
    /// it is, so a million recovered envelopes are not held twice while the
    /// queue takes them over (the list itself is 8 bytes a message).
    pub messages: Vec<Box<Envelope>>,
    /// Persisted queue states (key, JSON value).
    pub queues: Vec<(String, Vec<u8>)>,
    /// Random, chosen when the database was created: a queue that was lost
    /// and created afresh has a new one (what shadow servers watch for).
    pub incarnation: u64,
    /// Messages in the Safety Net (not in `messages`).
    pub retired: u64,
}

/// Counters of the commit thread (they show how well ops are batched).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Write transactions committed by the commit thread.
    pub commits: u64,
    /// Ops (insert, update, remove) carried by those commits.
    pub ops: u64,
}

/// The on-disk queue. Cheap to clone (shared inside); the database closes when
/// the last handle is dropped or on [`Store::close`].
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreCore>,
}

struct StoreCore {
    dir: PathBuf,
    /// `None` once closed. A Mutex (not RwLock) is fine: it is held only to clone
    /// the sender or the Arc.
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    /// Shared with the commit thread, which swaps in a new handle when it recovers.
    db: Arc<DbSlot>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

/// The open database; `None` once closed or while a recovery has no handle.
type DbSlot = Mutex<Option<Arc<Database>>>;

/// State shared with the commit thread.
struct Shared {
    /// The queue directory (the database file, and the test hooks' flag files).
    dir: PathBuf,
    /// The next id to hand out.
    next_id: AtomicU64,
    commits: AtomicU64,
    ops: AtomicU64,
    len: AtomicU64,
    /// Messages in the Safety Net.
    retired: AtomicU64,
    /// Set while the store is failed: the reason every write reports.
    failed: Mutex<Option<String>>,
    /// Whether spool files can be written (a full disk shows there first).
    spool_health: Arc<SpoolHealth>,
    closed: AtomicBool,
}

enum OpKind {
    Insert {
        id: u64,
        envelope: Vec<u8>,
        body: OpBody,
    },
    Update {
        id: u64,
        envelope: Vec<u8>,
    },
    Remove {
        id: u64,
    },
    /// Into the Safety Net: the final envelope, and when.
    Retire {
        id: u64,
        envelope: Vec<u8>,
        at_ms: u64,
    },
    PutQueue {
        key: String,
        value: Vec<u8>,
    },
    DeleteQueue {
        key: String,
    },
    /// Test hook: makes the commit thread panic, to prove callers never hang.
    #[cfg(test)]
    Crash,
}

/// Where an inserted message's body is.
enum OpBody {
    Inline(Vec<u8>),
    /// In `spool/<id>`, fsynced, this long.
    Spooled(u64),
}

struct Op {
    kind: OpKind,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

impl OpKind {
    /// Ops nobody needs to wait for: they do not start a commit of their own
    /// but join the next one (at the latest after [`LAZY_LINGER`]).
    fn lazy(&self) -> bool {
        matches!(self, OpKind::Remove { .. } | OpKind::Retire { .. })
    }

    fn bytes(&self) -> usize {
        match self {
            OpKind::Insert { envelope, body: OpBody::Inline(data), .. } => envelope.len() + data.len(),
            OpKind::Insert { envelope, body: OpBody::Spooled(_), .. } => envelope.len(),
            OpKind::Update { envelope, .. } => envelope.len(),
            OpKind::Remove { .. } => 8,
            OpKind::Retire { envelope, .. } => envelope.len() + 16,
            OpKind::PutQueue { key, value } => key.len() + value.len(),
            OpKind::DeleteQueue { key } => key.len(),
            #[cfg(test)]
            OpKind::Crash => 0,
        }
    }
}

impl Store {
    /// Open (or create) the queue under `dir`; returns every recovered message,
    /// sorted by id. Unreadable records are moved to the `quarantine` table and
    /// skipped (with a warning), so one bad record never blocks the queue.
    pub fn open(dir: &Path) -> Result<(Store, Recovered), StoreError> {
        let dir_existed = dir.is_dir();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::File {
            context: "cannot create the queue directory",
            path: dir.into(),
            source,
        })?;
        if !dir_existed {
            // Make the new directory's own entry durable.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let path = dir.join(DB_FILE);
        // An existing but empty file would silently open as a new, empty queue.
        let emptied = std::fs::metadata(&path).is_ok_and(|m| m.len() == 0);
        let opened = if emptied {
            Err(StoreError::Damaged(format!("{} is empty (truncated?)", path.display())))
        } else {
            open_and_recover(dir, &path)
        };
        let (db, (recovered, max_id)) = match opened {
            Ok(opened) => opened,
            Err(e) if e.is_damage() => {
                // A damaged file must not keep the server down (a crash loop
                // delivers nothing): move it aside for a person to look at and
                // start with an empty queue.
                let aside = quarantine_file(dir, &path)?;
                tracing::error!(
                    error = %e,
                    quarantined = %aside.display(),
                    "queue database is damaged and cannot be opened; it was quarantined and the server starts \
                     with an empty queue (the messages in it are NOT delivered; inspect the quarantined file)"
                );
                let opened = open_and_recover(dir, &path)?;
                // Ids must not repeat those of the quarantined file: start above
                // any id it can hold (milliseconds since the epoch).
                let floor = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                (opened.0, (opened.1 .0, opened.1 .1.max(floor)))
            }
            Err(e) => return Err(e),
        };
        // Bodies whose message was never stored (a crash while they arrived).
        let spool = dir.join(SPOOL_DIR);
        std::fs::create_dir_all(&spool).map_err(|source| StoreError::File {
            context: "cannot create the spool directory",
            path: spool.clone(),
            source,
        })?;
        sweep_spool(&db, &spool)?;
        // redb fsyncs the file on commit but not the directory entry of a new file.
        sync_dir(dir)?;
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(max_id + 1),
            commits: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            len: AtomicU64::new(recovered.messages.len() as u64),
            retired: AtomicU64::new(recovered.retired),
            dir: dir.into(),
            failed: Mutex::new(None),
            spool_health: Arc::default(),
            closed: AtomicBool::new(false),
        });
        let db = Arc::new(db);
        let slot: Arc<DbSlot> = Arc::new(Mutex::new(Some(db.clone())));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let slot = slot.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("queue-commit".into())
                .spawn(move || commit_loop(db, &slot, rx, &shared))
                .map_err(|source| StoreError::File {
                context: "cannot start the commit thread for",
                path: dir.into(),
                source,
            })?
        };
        let inner =
            StoreCore { dir: dir.into(), tx: Mutex::new(Some(tx)), db: slot, thread: Mutex::new(Some(thread)), shared };
        Ok((Store { inner: Arc::new(inner) }, recovered))
    }

    /// A fresh, never reused message id (also not across restarts: the high-water
    /// mark is persisted with every commit).
    pub fn next_id(&self) -> MessageId {
        MessageId(self.inner.shared.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Store a new message; returns once data and envelope are durable. Data
    /// above [`SPOOL_ABOVE`] bytes is spooled to a file of its own first.
    pub async fn insert(&self, envelope: &Envelope, data: &[u8]) -> Result<(), StoreError> {
        self.insert_body(envelope, StagedBody::Inline(data.to_vec())).await
    }

    /// A body built in memory that is too large to store inline, to its spool file.
    async fn spool(&self, id: MessageId, data: &[u8]) -> Result<StagedBody, StoreError> {
        let spool_error =
            |source| StoreError::File { context: "cannot spool the body to", path: self.spool_path(id), source };
        let mut writer = self.body_writer(id, 0);
        writer.write(data).await.map_err(spool_error)?;
        writer.finish().await.map_err(spool_error)
    }

    /// Where the body of message `id` goes while it arrives: memory, then
    /// `spool/<id>` once it is larger than [`SPOOL_ABOVE`]. The first
    /// `head_keep` bytes stay readable in memory.
    pub fn body_writer(&self, id: MessageId, head_keep: usize) -> BodyWriter {
        BodyWriter::new(self.spool_path(id), head_keep, self.inner.shared.spool_health.clone())
    }

    /// Store a new message whose body was written with [`Store::body_writer`]
    /// (or is in memory); returns once data and envelope are durable.
    pub async fn insert_body(&self, envelope: &Envelope, body: StagedBody) -> Result<(), StoreError> {
        let id = envelope.id;
        let body = match body {
            StagedBody::Inline(data) if data.len() > SPOOL_ABOVE => self.spool(id, &data).await?,
            body => body,
        };
        // An id not taken from next_id must not be handed out later either.
        self.inner.shared.next_id.fetch_max(id.0.saturating_add(1), Ordering::Relaxed);
        let encoded = encode(envelope)?;
        match body {
            StagedBody::Inline(data) => {
                if data.len() > MAX_VALUE_LEN {
                    return Err(StoreError::TooLarge { id, size: data.len() });
                }
                self.submit(OpKind::Insert { id: id.0, envelope: encoded, body: OpBody::Inline(data) }).await
            }
            StagedBody::Spooled { file, len } => {
                if file.path() != self.spool_path(id) {
                    return Err(StoreError::File {
                        context: "a spooled body must be in the spool file of its message, not",
                        path: file.path().into(),
                        source: io::Error::from(io::ErrorKind::InvalidInput),
                    });
                }
                let answer =
                    self.enqueue(Ok(OpKind::Insert { id: id.0, envelope: encoded, body: OpBody::Spooled(len) }));
                // Once the op is with the commit thread the file may be referred
                // to on disk, whatever the answer: from now on only the store
                // removes it (with the message, or as an orphan when it opens).
                file.keep();
                answer.await
            }
        }
    }

    /// Durably replace a message's envelope (recipient states, retry state).
    /// [`StoreError::NotFound`] if the message is not stored (never resurrects).
    /// The op is queued before this returns (see the module docs on ordering).
    pub fn update(&self, envelope: &Envelope) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let op = encode(envelope).map(|bytes| OpKind::Update { id: envelope.id.0, envelope: bytes });
        self.enqueue(op)
    }

    /// Durably remove a message (after delivery, NDR or Remove-Message).
    /// Removing a message that is not stored succeeds (idempotent). Queued before this returns;
    /// committed with the next commit, at the latest [`LAZY_LINGER`] later.
    pub fn remove(&self, id: MessageId) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.enqueue(Ok(OpKind::Remove { id: id.0 }))
    }

    /// Keeps a finished message in the Safety Net instead of removing it: its
    /// envelope (as given, with the final recipient states) and body stay, out
    /// of the queue, until [`Store::remove`]. Lazy and ordered like a removal;
    /// retiring a message that is not stored does nothing.
    pub fn retire(
        &self,
        envelope: &Envelope,
        at_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let op = encode(envelope).map(|bytes| OpKind::Retire { id: envelope.id.0, envelope: bytes, at_ms });
        self.enqueue(op)
    }

    /// Every message in the Safety Net, with when it was retired (ms since the epoch).
    pub fn retired(&self) -> Result<Vec<(MessageId, u64)>, StoreError> {
        let db = self.database()?;
        let txn = db.begin_read().map_err(StoreError::db("begin read"))?;
        let table = match txn.open_table(RETIRED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::db("open retired")(e)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(StoreError::db("scan retired"))? {
            let (id, at) = entry.map_err(StoreError::db("read retired"))?;
            out.push((MessageId(id.value()), at.value()));
        }
        Ok(out)
    }

    /// Durably store a queue's state under `key`. Queued before this returns.
    pub fn put_queue(
        &self,
        key: &str,
        value: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.enqueue(Ok(OpKind::PutQueue { key: key.to_string(), value }))
    }

    /// Durably forget a queue's state. Queued before this returns.
    pub fn delete_queue(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.enqueue(Ok(OpKind::DeleteQueue { key: key.to_string() }))
    }

    /// The stored data of a message, whole (for DSNs; delivery and export read
    /// it a chunk at a time with [`Store::open_body`]).
    pub fn read_data(&self, id: MessageId) -> Result<Vec<u8>, StoreError> {
        match self.locate_body(id)? {
            Located::Inline(data) => Ok(data),
            Located::Spooled(len) => {
                let path = self.spool_path(id);
                let data = std::fs::read(&path).map_err(|source| StoreError::File {
                    context: "cannot read the spooled body",
                    path: path.clone(),
                    source,
                })?;
                check_spooled_len(&path, data.len() as u64, len)?;
                Ok(data)
            }
        }
    }

    /// The stored data of a message, to be read a chunk at a time.
    pub fn open_body(&self, id: MessageId) -> Result<BodyReader, StoreError> {
        match self.locate_body(id)? {
            Located::Inline(data) => Ok(BodyReader::in_memory(data)),
            Located::Spooled(len) => {
                let path = self.spool_path(id);
                let file = File::open(&path).map_err(|source| StoreError::File {
                    context: "cannot open the spooled body",
                    path: path.clone(),
                    source,
                })?;
                let on_disk = file.metadata().map_err(|source| StoreError::File {
                    context: "cannot read the size of the spooled body",
                    path: path.clone(),
                    source,
                })?;
                check_spooled_len(&path, on_disk.len(), len)?;
                Ok(BodyReader::file(file, len))
            }
        }
    }

    /// The stored envelope of message `id` (for records kept on disk only,
    /// such as shadow copies).
    pub fn read_envelope(&self, id: MessageId) -> Result<Envelope, StoreError> {
        let db = self.database()?;
        let txn = db.begin_read().map_err(StoreError::db("begin read"))?;
        let envelopes = txn.open_table(ENVELOPES).map_err(StoreError::db("open envelopes"))?;
        let raw = envelopes.get(id.0).map_err(StoreError::db("read envelope"))?.ok_or(StoreError::NotFound(id))?;
        serde_json::from_slice(raw.value()).map_err(|source| StoreError::Serialize { id, source })
    }

    fn locate_body(&self, id: MessageId) -> Result<Located, StoreError> {
        let db = self.database()?;
        let txn = db.begin_read().map_err(StoreError::db("begin read"))?;
        let bodies = txn.open_table(BODIES).map_err(StoreError::db("open bodies"))?;
        if let Some(data) = bodies.get(id.0).map_err(StoreError::db("read body"))? {
            return Ok(Located::Inline(data.value().to_vec()));
        }
        let spooled = txn.open_table(SPOOLED).map_err(StoreError::db("open spooled"))?;
        let len = spooled.get(id.0).map_err(StoreError::db("read spooled"))?;
        len.map(|len| Located::Spooled(len.value())).ok_or(StoreError::NotFound(id))
    }

    fn spool_path(&self, id: MessageId) -> PathBuf {
        spool_path(&self.inner.dir, id.0)
    }

    /// Batching counters of the commit thread.
    pub fn stats(&self) -> StoreStats {
        let s = &self.inner.shared;
        StoreStats { commits: s.commits.load(Ordering::Relaxed), ops: s.ops.load(Ordering::Relaxed) }
    }

    /// Number of messages stored (as of the last commit).
    pub fn len(&self) -> usize {
        self.inner.shared.len.load(Ordering::Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages in the Safety Net (as of the last commit).
    pub fn retired_len(&self) -> usize {
        self.inner.shared.retired.load(Ordering::Relaxed) as usize
    }

    /// Why the store refuses writes right now (a commit failed and it has not
    /// recovered yet, or the last spool file could not be written and a probe
    /// still fails); `None` when it takes writes.
    pub fn failure(&self) -> Option<String> {
        let shared = &self.inner.shared;
        shared.failure().or_else(|| shared.spool_health.failure(&self.inner.dir.join(SPOOL_DIR), RECOVERY_INTERVAL))
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Finish every queued op, stop the commit thread and close the database
    /// (for every clone of this handle). Later ops fail with [`StoreError::Closed`].
    /// Blocks until the queued ops are committed.
    pub fn close(&self) {
        self.inner.close();
    }

    fn database(&self) -> Result<Arc<Database>, StoreError> {
        let db = self.inner.db.lock().unwrap_or_else(|e| e.into_inner()).clone();
        db.ok_or_else(|| self.inner.why_gone())
    }

    async fn submit(&self, kind: OpKind) -> Result<(), StoreError> {
        self.enqueue(Ok(kind)).await
    }

    /// Sends the op to the commit thread now; the future waits for its commit.
    fn enqueue(
        &self,
        kind: Result<OpKind, StoreError>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let queued = kind.and_then(|kind| self.send_op(kind));
        let inner = self.inner.clone();
        async move {
            let answer = queued?;
            // A dropped reply sender means the thread died or gave up: never hang,
            // never claim success.
            answer.await.unwrap_or_else(|_| Err(inner.why_gone()))
        }
    }

    /// Every op goes to the commit thread, also while the store is failed: the
    /// thread answers it and remembers what it wanted for the recovery.
    fn send_op(&self, kind: OpKind) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let tx = self.inner.tx.lock().unwrap_or_else(|e| e.into_inner());
        match tx.as_ref() {
            None => Err(StoreError::Closed),
            Some(tx) => match tx.send(Op { kind, reply }) {
                Ok(()) => Ok(answer),
                Err(_) => Err(self.inner.why_gone()),
            },
        }
    }
}

impl StoreCore {
    fn why_gone(&self) -> StoreError {
        if let Some(reason) = self.shared.failure() {
            StoreError::Failed(reason)
        } else if self.shared.closed.load(Ordering::Relaxed) {
            StoreError::Closed
        } else {
            StoreError::CommitterGone
        }
    }

    fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        // Dropping the sender lets the thread drain what is queued, then exit.
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!(dir = %self.dir.display(), "queue commit thread panicked");
            }
        }
        // Releases the file lock once in-flight readers are done.
        drop(self.db.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

impl Drop for StoreCore {
    fn drop(&mut self) {
        // Joining here makes "drop the store, open it again" work without racing
        // the thread for the file lock.
        self.close();
    }
}

impl Shared {
    fn failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_failure(&self, reason: Option<String>) {
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = reason;
    }
}

/// Opens the database and runs the start-up recovery; a panic inside redb
/// (which it may raise on a damaged file) is reported as damage.
fn open_and_recover(dir: &Path, path: &Path) -> Result<(Database, (Recovered, u64)), StoreError> {
    let attempt = std::panic::catch_unwind(|| {
        let db = open_database(dir, path)?;
        let recovered = recover(&db, dir)?;
        Ok((db, recovered))
    });
    attempt.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(StoreError::Damaged(format!("reading it panicked: {what}")))
    })
}

/// Renames a damaged database file to `queue.redb.corrupt-<unix ms>` (durably).
fn quarantine_file(dir: &Path, path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let aside = dir.join(format!("{DB_FILE}.corrupt-{stamp}"));
    std::fs::rename(path, &aside).map_err(|source| StoreError::File {
        context: "cannot move the damaged queue database aside",
        path: path.into(),
        source,
    })?;
    sync_dir(dir)?;
    Ok(aside)
}

/// Opens (or creates) the database file, repairing it after an unclean stop.
fn open_database(dir: &Path, path: &Path) -> Result<Database, StoreError> {
    let repair_logged = AtomicBool::new(false);
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .set_repair_callback(move |_session| {
            if !repair_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!("queue database was not closed cleanly; checking and repairing it");
            }
        })
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: dir.into(), db: path.into() },
            e => StoreError::Open { context: "cannot open", path: path.into(), source: Box::new(e.into()) },
        })
}

fn encode(envelope: &Envelope) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(envelope).map_err(|source| StoreError::Serialize { id: envelope.id, source })
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| StoreError::File {
        context: "cannot sync the directory",
        path: dir.into(),
        source,
    })
}

/// Where a stored body is.
enum Located {
    Inline(Vec<u8>),
    Spooled(u64),
}

fn spool_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(SPOOL_DIR).join(id.to_string())
}

/// A spooled body must be as long as recorded: a shorter file (a disk that
/// lost data) is an error, never a silently truncated message.
fn check_spooled_len(path: &Path, actual: u64, recorded: u64) -> Result<(), StoreError> {
    if actual == recorded {
        return Ok(());
    }
    Err(StoreError::File {
        context: if actual < recorded {
            "the spooled body is shorter than stored"
        } else {
            "the spooled body is longer than stored"
        },
        path: path.into(),
        source: io::Error::from(io::ErrorKind::InvalidData),
    })
}

/// Removes spooled bodies the database does not refer to: a message refused or
/// a crash while it arrived (never acknowledged), or a removal whose file was
/// not yet unlinked. Only at open: later, sessions write files not yet stored.
fn sweep_spool(db: &Database, spool: &Path) -> Result<(), StoreError> {
    let txn = db.begin_read().map_err(StoreError::db("begin spool sweep"))?;
    let spooled = txn.open_table(SPOOLED).map_err(StoreError::db("open spooled"))?;
    let entries = std::fs::read_dir(spool).map_err(|source| StoreError::File {
        context: "cannot list the spool directory",
        path: spool.into(),
        source,
    })?;
    let mut removed = 0usize;
    for entry in entries.flatten() {
        let name = entry.file_name();
        // Other names (quarantined bodies) are left for a person.
        let Some(id) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else { continue };
        if spooled.get(id).map_err(StoreError::db("read spooled"))?.is_none() {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove an orphaned spool file")
                }
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed spooled bodies of messages that were never stored");
    }
    Ok(())
}

/// Unlinks the spool files of removed messages (after their removal committed;
/// a file left by a crash here is swept at the next open).
fn unlink_spooled(dir: &Path, ids: &[u64]) {
    for &id in ids {
        let path = spool_path(dir, id);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a delivered message's spool file");
            }
        }
    }
}

/// Reads every envelope (quarantining bad ones) and the highest id ever used.
fn recover(db: &Database, dir: &Path) -> Result<(Recovered, u64), StoreError> {
    recover_with(db, dir, |_| Ok(()))
}

/// [`recover`], with `extra` applied in the same transaction before it commits.
fn recover_with(
    db: &Database,
    dir: &Path,
    extra: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
) -> Result<(Recovered, u64), StoreError> {
    let mut txn = db.begin_write().map_err(StoreError::db("begin recovery"))?;
    txn.set_durability(Durability::Immediate);
    let mut recovered = Vec::new();
    let mut queues = Vec::new();
    let max_id;
    let incarnation;
    {
        // Opening in a write transaction also creates the tables on first use.
        let mut envelopes = txn.open_table(ENVELOPES).map_err(StoreError::db("open envelopes"))?;
        let mut bodies = txn.open_table(BODIES).map_err(StoreError::db("open bodies"))?;
        let mut spooled = txn.open_table(SPOOLED).map_err(StoreError::db("open spooled"))?;
        let mut meta = txn.open_table(META).map_err(StoreError::db("open meta"))?;
        let mut quarantine = txn.open_table(QUARANTINE).map_err(StoreError::db("open quarantine"))?;
        let queue_table = txn.open_table(QUEUES).map_err(StoreError::db("open queues"))?;
        let retired = txn.open_table(RETIRED).map_err(StoreError::db("open retired"))?;
        for entry in queue_table.iter().map_err(StoreError::db("scan queues"))? {
            let (key, value) = entry.map_err(StoreError::db("read queue state"))?;
            queues.push((key.value().to_string(), value.value().to_vec()));
        }

        let mut bad: Vec<(u64, String, Vec<u8>)> = Vec::new();
        for entry in envelopes.iter().map_err(StoreError::db("scan envelopes"))? {
            let (key, value) = entry.map_err(StoreError::db("read envelope"))?;
            let (id, raw) = (key.value(), value.value());
            // In the Safety Net: delivered, not queued.
            if retired.get(id).map_err(StoreError::db("look up retired"))?.is_some() {
                continue;
            }
            let problem = match serde_json::from_slice::<Envelope>(raw) {
                Err(e) => Some(format!("envelope does not deserialize: {e}")),
                Ok(env) if env.id.0 != id => Some(format!("envelope stored under id {id} says id {}", env.id)),
                Ok(env) => match body_problem(&bodies, &spooled, dir, id)? {
                    Some(problem) => Some(problem),
                    None => {
                        // At once, so that the next envelope read fills the room given back.
                        let mut env = env;
                        env.shrink_to_fit();
                        recovered.push(Box::new(env));
                        None
                    }
                },
            };
            if let Some(reason) = problem {
                bad.push((id, reason, raw.to_vec()));
            }
        }
        for (id, reason, raw) in bad {
            tracing::warn!(id, %reason, "queue: quarantining an unreadable message");
            let body = bodies.remove(id).map_err(StoreError::db("move body to quarantine"))?;
            let body = body.map(|b| b.value().to_vec()).unwrap_or_default();
            if spooled.remove(id).map_err(StoreError::db("move spooled body to quarantine"))?.is_some() {
                // The file stays for a person, under a name the sweep leaves alone.
                let path = spool_path(dir, id);
                let aside = path.with_extension(&QUARANTINED_SUFFIX[1..]);
                if let Err(e) = std::fs::rename(&path, &aside) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot keep a quarantined message's spool file");
                }
            }
            quarantine
                .insert(id, (reason.as_str(), raw.as_slice(), body.as_slice()))
                .map_err(StoreError::db("write quarantine"))?;
            envelopes.remove(id).map_err(StoreError::db("remove quarantined envelope"))?;
        }

        // Ids are never reused: take the highest of every place an id can live.
        let mut max = meta.get(HIGH_WATER_KEY).map_err(StoreError::db("read high-water mark"))?.map(|v| v.value());
        for last in [
            envelopes.last().map_err(StoreError::db("read last envelope"))?.map(|(k, _)| k.value()),
            bodies.last().map_err(StoreError::db("read last body"))?.map(|(k, _)| k.value()),
            spooled.last().map_err(StoreError::db("read last spooled"))?.map(|(k, _)| k.value()),
            quarantine.last().map_err(StoreError::db("read last quarantined"))?.map(|(k, _)| k.value()),
        ] {
            max = max.max(last);
        }
        max_id = max.unwrap_or(0);
        meta.insert(HIGH_WATER_KEY, max_id).map_err(StoreError::db("write high-water mark"))?;
        let known = meta.get(INCARNATION_KEY).map_err(StoreError::db("read incarnation"))?.map(|v| v.value());
        incarnation = match known {
            Some(v) => v,
            None => {
                let fresh = uuid::Uuid::new_v4().as_u64_pair().0;
                meta.insert(INCARNATION_KEY, fresh).map_err(StoreError::db("write incarnation"))?;
                fresh
            }
        };
    }
    extra(&txn)?;
    // Counted after `extra`, which may have removed retired messages.
    let retired_count = txn
        .open_table(RETIRED)
        .map_err(StoreError::db("open retired"))?
        .len()
        .map_err(StoreError::db("count retired"))?;
    txn.commit().map_err(StoreError::db("commit recovery"))?;
    // The table iterates in key order, so `recovered` is sorted by id already.
    Ok((Recovered { messages: recovered, queues, incarnation, retired: retired_count }, max_id))
}

/// Why the body of message `id` cannot be recovered, if it cannot.
fn body_problem(
    bodies: &redb::Table<u64, &[u8]>,
    spooled: &redb::Table<u64, u64>,
    dir: &Path,
    id: u64,
) -> Result<Option<String>, StoreError> {
    if bodies.get(id).map_err(StoreError::db("read body"))?.is_some() {
        return Ok(None);
    }
    let Some(len) = spooled.get(id).map_err(StoreError::db("read spooled"))?.map(|l| l.value()) else {
        return Ok(Some("message data missing".to_string()));
    };
    let path = spool_path(dir, id);
    Ok(match std::fs::metadata(&path) {
        Ok(m) if m.len() == len => None,
        Ok(m) => Some(format!("spooled body {} is {} bytes, {len} were stored", path.display(), m.len())),
        Err(e) => Some(format!("spooled body {}: {e}", path.display())),
    })
}

/// What a successfully applied op changed (for the `len` counter).
enum Effect {
    Added,
    Removed,
    /// Out of the queue, into the Safety Net.
    Retired,
    /// Out of the Safety Net.
    Forgotten,
    None,
}

fn commit_loop(db: Arc<Database>, slot: &DbSlot, rx: mpsc::Receiver<Op>, shared: &Shared) {
    let mut db = db;
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH_OPS);
    let mut bytes = 0usize;
    // When the oldest op of a batch holding only lazy ops was queued.
    let mut lazy_since: Option<Instant> = None;
    let mut open = true;
    while open || !batch.is_empty() {
        // Wait for an op: without limit when nothing waits, else until the
        // lazy ops waiting have lingered long enough.
        let next = match lazy_since {
            None => rx.recv().ok(),
            Some(since) => match rx.recv_timeout(LAZY_LINGER.saturating_sub(since.elapsed())) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            },
        };
        match next {
            Some(op) => {
                bytes += op.kind.bytes();
                batch.push(op);
                while batch.len() < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(op) => {
                            bytes += op.kind.bytes();
                            batch.push(op);
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
            }
            // Every sender is gone and the channel is drained: the clean shutdown
            // (after committing what is left).
            None if lazy_since.is_none() => open = false,
            None => {}
        }
        if batch.is_empty() {
            continue;
        }
        let full = batch.len() >= MAX_BATCH_OPS || bytes >= MAX_BATCH_BYTES;
        let due = lazy_since.is_some_and(|t| t.elapsed() >= LAZY_LINGER);
        if open && !full && !due && batch.len() < LAZY_BATCH && batch.iter().all(|op| op.kind.lazy()) {
            // Only removals: they ride along with the next commit someone waits for.
            lazy_since.get_or_insert_with(Instant::now);
            continue;
        }
        lazy_since = None;
        bytes = 0;
        match apply(&db, &batch, shared) {
            Ok((results, unlink)) => {
                unlink_spooled(&shared.dir, &unlink);
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
                for (op, result) in batch.drain(..).zip(results) {
                    let reply = result.map(|effect| match effect {
                        Effect::Added => {
                            shared.len.fetch_add(1, Ordering::Relaxed);
                        }
                        Effect::Removed => {
                            shared.len.fetch_sub(1, Ordering::Relaxed);
                        }
                        Effect::Retired => {
                            shared.len.fetch_sub(1, Ordering::Relaxed);
                            shared.retired.fetch_add(1, Ordering::Relaxed);
                        }
                        Effect::Forgotten => {
                            shared.retired.fetch_sub(1, Ordering::Relaxed);
                        }
                        Effect::None => {}
                    });
                    let _ = op.reply.send(reply); // the caller may have gone away
                }
            }
            Err(e) => {
                // The batch's fate is unknown (e.g. fsync failed) and redb will not
                // commit again on this handle: fail the batch and every later write
                // until a reopened database has taken what they asked for.
                let reason = e.to_string();
                tracing::error!(error = %reason, "queue commit failed; writes are refused until the storage recovers");
                shared.set_failure(Some(reason.clone()));
                let mut unapplied = Unapplied::default();
                for op in batch.drain(..) {
                    unapplied.note(&op.kind);
                    let _ = op.reply.send(Err(StoreError::Failed(reason.clone())));
                }
                drop(db);
                match recover_loop(slot, &rx, shared, unapplied) {
                    Some(reopened) => db = reopened,
                    None => return,
                }
            }
        }
    }
}

/// What the writes refused while the store was failed asked for: the latest
/// wish per message and per queue, applied once the database is reopened.
#[derive(Default)]
struct Unapplied {
    /// Envelope to store (`Some`) or message to remove (`None`). A refused
    /// insert was never acknowledged, so a copy that reached the disk anyway
    /// is removed: the client was told to try again.
    messages: BTreeMap<u64, Option<Vec<u8>>>,
    /// Queue state to store (`Some`) or forget (`None`).
    queues: BTreeMap<String, Option<Vec<u8>>>,
}

impl Unapplied {
    fn note(&mut self, kind: &OpKind) {
        match kind {
            OpKind::Insert { id, .. } | OpKind::Remove { id } | OpKind::Retire { id, .. } => {
                self.messages.insert(*id, None);
            }
            OpKind::Update { id, envelope } => {
                self.messages.insert(*id, Some(envelope.clone()));
            }
            OpKind::PutQueue { key, value } => {
                self.queues.insert(key.clone(), Some(value.clone()));
            }
            OpKind::DeleteQueue { key } => {
                self.queues.insert(key.clone(), None);
            }
            #[cfg(test)]
            OpKind::Crash => {}
        }
    }

    /// Returns the removed messages whose spool files go once this commits.
    fn apply(&self, txn: &redb::WriteTransaction) -> Result<Vec<u64>, StoreError> {
        let mut envelopes = txn.open_table(ENVELOPES).map_err(StoreError::db("open envelopes"))?;
        let mut bodies = txn.open_table(BODIES).map_err(StoreError::db("open bodies"))?;
        let mut spooled = txn.open_table(SPOOLED).map_err(StoreError::db("open spooled"))?;
        let mut retired = txn.open_table(RETIRED).map_err(StoreError::db("open retired"))?;
        let mut unlink = Vec::new();
        let mut queue_table = txn.open_table(QUEUES).map_err(StoreError::db("open queues"))?;
        for (id, wish) in &self.messages {
            match wish {
                Some(envelope) => {
                    // Never resurrects a message that is not stored.
                    if envelopes.get(*id).map_err(StoreError::db("look up envelope"))?.is_some() {
                        envelopes.insert(*id, envelope.as_slice()).map_err(StoreError::db("write envelope"))?;
                    }
                }
                None => {
                    remove_message(&mut envelopes, &mut bodies, &mut spooled, &mut retired, *id, &mut unlink)?;
                }
            }
        }
        for (key, wish) in &self.queues {
            match wish {
                Some(value) => {
                    queue_table.insert(key.as_str(), value.as_slice()).map_err(StoreError::db("write queue state"))?;
                }
                None => {
                    queue_table.remove(key.as_str()).map_err(StoreError::db("remove queue state"))?;
                }
            }
        }
        Ok(unlink)
    }
}

/// The failed store: answers every op with the failure (remembering what it
/// wanted) and tries to recover every [`RECOVERY_INTERVAL`]. Returns the
/// reopened database, or `None` once the store is closed.
fn recover_loop(
    slot: &DbSlot,
    rx: &mpsc::Receiver<Op>,
    shared: &Shared,
    mut unapplied: Unapplied,
) -> Option<Arc<Database>> {
    let mut next_try = Instant::now() + RECOVERY_INTERVAL;
    let mut attempts = 0u64;
    loop {
        let wait = next_try.saturating_duration_since(Instant::now());
        let closing = match rx.recv_timeout(wait) {
            Ok(op) => {
                unapplied.note(&op.kind);
                let reason = shared.failure().unwrap_or_default();
                let _ = op.reply.send(Err(StoreError::Failed(reason)));
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            // Closing: one last attempt, so the disk reflects what was asked.
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        attempts += 1;
        match reopen(slot, shared, &unapplied) {
            Ok(db) => {
                tracing::warn!(attempts, "queue storage recovered; accepting writes again");
                shared.set_failure(None);
                return (!closing).then_some(db);
            }
            Err(e) if closing => {
                tracing::error!(error = %e, "queue storage did not recover before closing; the next start recovers it");
                return None;
            }
            Err(e) => {
                // Once a minute is enough to say it is still failing.
                if attempts == 1 || attempts.is_multiple_of(60) {
                    tracing::warn!(error = %e, attempts, "queue storage still failing; writes are refused");
                }
                shared.set_failure(Some(e.to_string()));
                next_try = Instant::now() + RECOVERY_INTERVAL;
            }
        }
    }
}

/// Drops the failed handle, opens the database again (redb repairs it), runs
/// the start-up recovery and applies what the refused writes asked for, all in
/// one durable transaction. The new handle is in `slot` for readers whatever
/// the outcome of the transaction.
fn reopen(slot: &DbSlot, shared: &Shared, unapplied: &Unapplied) -> Result<Arc<Database>, StoreError> {
    let old = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(old) = old {
        // Readers hold clones for the length of one read; the file lock goes
        // only with the last one.
        let deadline = Instant::now() + RELEASE_WAIT;
        while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if Arc::strong_count(&old) > 1 {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(old);
            return Err(StoreError::Failed("the old database handle is still in use".into()));
        }
        drop(old);
    }
    let path = shared.dir.join(DB_FILE);
    let db = Arc::new(open_database(&shared.dir, &path)?);
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(db.clone());
    let mut unlink = Vec::new();
    let (recovered, max_id) = recover_with(&db, &shared.dir, |txn| {
        unlink = unapplied.apply(txn)?;
        injected_fault(shared, "recovery")
    })?;
    unlink_spooled(&shared.dir, &unlink);
    shared.next_id.fetch_max(max_id + 1, Ordering::Relaxed);
    let removed = unapplied.messages.iter().filter(|(id, wish)| wish.is_none() && recovered_has(&recovered, **id));
    let len = recovered.messages.len() - removed.count();
    shared.len.store(len as u64, Ordering::Relaxed);
    shared.retired.store(recovered.retired, Ordering::Relaxed);
    Ok(db)
}

fn recovered_has(recovered: &Recovered, id: u64) -> bool {
    recovered.messages.binary_search_by_key(&id, |e| e.id.0).is_ok()
}

/// Test hook (feature `test-hooks`): while the file `DISK_FULL_FLAG` exists in
/// the queue directory, commits fail as on a full disk — before committing, or
/// after it when the file says `after-commit` (the batch's fate is then
/// unknown to the store, as after a failed fsync). While `SLOW_COMMIT_FLAG`
/// exists each commit takes 100 ms more, as on a slow disk, so that a crash
/// test's kills often land between the write and the answer. Without the
/// feature: never.
#[cfg(feature = "test-hooks")]
fn injected_fault(shared: &Shared, stage: &str) -> Result<(), StoreError> {
    if stage == "before-commit" && shared.dir.join(SLOW_COMMIT_FLAG).exists() {
        std::thread::sleep(Duration::from_millis(100));
    }
    match std::fs::read_to_string(shared.dir.join(DISK_FULL_FLAG)) {
        Ok(mode) if mode.trim() == "after-commit" && stage == "after-commit" => Err(disk_full()),
        Ok(mode) if mode.trim() != "after-commit" && stage != "after-commit" => Err(disk_full()),
        _ => Ok(()),
    }
}

#[cfg(not(feature = "test-hooks"))]
fn injected_fault(_shared: &Shared, _stage: &str) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(feature = "test-hooks")]
fn disk_full() -> StoreError {
    StoreError::Io(io::Error::new(io::ErrorKind::StorageFull, "No space left on device (test hook)"))
}

/// Name of the test hooks' disk-full flag file in the queue directory.
#[cfg(feature = "test-hooks")]
pub const DISK_FULL_FLAG: &str = "test-hook-disk-full";

/// Name of the test hooks' slow-commit flag file in the queue directory.
#[cfg(feature = "test-hooks")]
pub const SLOW_COMMIT_FLAG: &str = "test-hook-slow-commit";

/// What a committed batch did: a result per op, and the removed messages
/// whose spool files go now that the commit is durable.
type Applied = (Vec<Result<Effect, StoreError>>, Vec<u64>);

/// Applies a batch in one write transaction. The outer error fails the whole
/// batch (nothing committed or unknown); the inner results are per op
/// (e.g. update of a message that is not stored) and do not affect the others.
fn apply(db: &Database, batch: &[Op], shared: &Shared) -> Result<Applied, StoreError> {
    let mut txn = db.begin_write().map_err(StoreError::db("begin write"))?;
    txn.set_durability(Durability::Immediate);
    let mut results = Vec::with_capacity(batch.len());
    let mut unlink = Vec::new();
    let mut spooled_inserts = false;
    {
        let mut envelopes = txn.open_table(ENVELOPES).map_err(StoreError::db("open envelopes"))?;
        let mut bodies = txn.open_table(BODIES).map_err(StoreError::db("open bodies"))?;
        let mut spooled = txn.open_table(SPOOLED).map_err(StoreError::db("open spooled"))?;
        let mut meta = txn.open_table(META).map_err(StoreError::db("open meta"))?;
        let mut queue_table = txn.open_table(QUEUES).map_err(StoreError::db("open queues"))?;
        let mut retired = txn.open_table(RETIRED).map_err(StoreError::db("open retired"))?;
        for op in batch {
            let result = match &op.kind {
                OpKind::Insert { id, envelope, body } => {
                    if envelopes.get(*id).map_err(StoreError::db("look up envelope"))?.is_some() {
                        // Overwriting would silently lose the stored message.
                        Err(StoreError::DuplicateId(MessageId(*id)))
                    } else {
                        envelopes.insert(*id, envelope.as_slice()).map_err(StoreError::db("write envelope"))?;
                        match body {
                            OpBody::Inline(data) => {
                                bodies.insert(*id, data.as_slice()).map_err(StoreError::db("write body"))?;
                            }
                            OpBody::Spooled(len) => {
                                spooled.insert(*id, *len).map_err(StoreError::db("write spooled"))?;
                                spooled_inserts = true;
                            }
                        }
                        Ok(Effect::Added)
                    }
                }
                OpKind::Update { id, envelope } => {
                    if envelopes.get(*id).map_err(StoreError::db("look up envelope"))?.is_none() {
                        Err(StoreError::NotFound(MessageId(*id)))
                    } else {
                        envelopes.insert(*id, envelope.as_slice()).map_err(StoreError::db("write envelope"))?;
                        Ok(Effect::None)
                    }
                }
                OpKind::Remove { id } => {
                    let removal =
                        remove_message(&mut envelopes, &mut bodies, &mut spooled, &mut retired, *id, &mut unlink)?;
                    Ok(match removal {
                        Removal::Queued => Effect::Removed,
                        Removal::Retired => Effect::Forgotten,
                        Removal::Absent => Effect::None,
                    })
                }
                OpKind::Retire { id, envelope, at_ms } => {
                    let stored = envelopes.get(*id).map_err(StoreError::db("look up envelope"))?.is_some();
                    let already = retired.get(*id).map_err(StoreError::db("look up retired"))?.is_some();
                    if stored && !already {
                        envelopes.insert(*id, envelope.as_slice()).map_err(StoreError::db("write envelope"))?;
                        retired.insert(*id, *at_ms).map_err(StoreError::db("write retired"))?;
                        Ok(Effect::Retired)
                    } else {
                        Ok(Effect::None)
                    }
                }
                OpKind::PutQueue { key, value } => {
                    queue_table.insert(key.as_str(), value.as_slice()).map_err(StoreError::db("write queue state"))?;
                    Ok(Effect::None)
                }
                OpKind::DeleteQueue { key } => {
                    queue_table.remove(key.as_str()).map_err(StoreError::db("remove queue state"))?;
                    Ok(Effect::None)
                }
                #[cfg(test)]
                OpKind::Crash => panic!("test hook: commit thread crash"),
            };
            results.push(result);
        }
        // Covers every id handed out so far (insert() bumps next_id for foreign
        // ids), so a restart never reuses one.
        let high_water = shared.next_id.load(Ordering::Relaxed).saturating_sub(1);
        meta.insert(HIGH_WATER_KEY, high_water).map_err(StoreError::db("write high-water mark"))?;
    }
    if spooled_inserts {
        // The new spool files' names must be durable before anything refers to them.
        sync_dir(&shared.dir.join(SPOOL_DIR))?;
    }
    injected_fault(shared, "before-commit")?;
    txn.commit().map_err(StoreError::db("commit"))?;
    injected_fault(shared, "after-commit")?;
    Ok((results, unlink))
}

/// What a removal found.
enum Removal {
    Queued,
    Retired,
    Absent,
}

/// Removes a message's envelope and body, from the queue or the Safety Net.
/// A spooled body's id goes to `unlink`: its file goes once the removal is durable.
fn remove_message(
    envelopes: &mut redb::Table<u64, &[u8]>,
    bodies: &mut redb::Table<u64, &[u8]>,
    spooled: &mut redb::Table<u64, u64>,
    retired: &mut redb::Table<u64, u64>,
    id: u64,
    unlink: &mut Vec<u64>,
) -> Result<Removal, StoreError> {
    let was_retired = retired.remove(id).map_err(StoreError::db("remove retired"))?.is_some();
    let existed = envelopes.remove(id).map_err(StoreError::db("remove envelope"))?.is_some();
    bodies.remove(id).map_err(StoreError::db("remove body"))?;
    if spooled.remove(id).map_err(StoreError::db("remove spooled"))?.is_some() {
        unlink.push(id);
    }
    Ok(match (existed, was_retired) {
        (true, false) => Removal::Queued,
        (true, true) => Removal::Retired,
        (false, _) => Removal::Absent,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::envelope::{Address, Origin, Recipient, RecipientStatus};

    fn address(text: &str) -> Address {
        Address::parse(text).unwrap()
    }
    use std::collections::BTreeSet;
    use std::io::BufRead;

    /// Opens the store and returns the recovered messages only.
    fn open_messages(dir: &Path) -> (Store, Vec<Envelope>) {
        let (store, recovered) = Store::open(dir).unwrap();
        (store, recovered.messages.into_iter().map(|e| *e).collect())
    }

    #[tokio::test]
    async fn queue_state_survives_reopen_and_ops_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        // Enqueued in this order without awaiting: the last write wins.
        let a = store.put_queue("hop-a", b"first".to_vec());
        let b = store.put_queue("hop-a", b"second".to_vec());
        let c = store.put_queue("hop-b", b"kept".to_vec());
        let d = store.put_queue("hop-c", b"gone".to_vec());
        let e = store.delete_queue("hop-c");
        for f in [a, b, c, d] {
            f.await.unwrap();
        }
        e.await.unwrap();
        drop(store);
        let (_store, recovered) = Store::open(dir.path()).unwrap();
        assert_eq!(
            recovered.queues,
            vec![("hop-a".to_string(), b"second".to_vec()), ("hop-b".to_string(), b"kept".to_vec())]
        );
    }

    #[test]
    fn a_queue_keeps_its_incarnation_and_a_new_one_gets_another() {
        let dir = tempfile::tempdir().unwrap();
        let (store, first) = Store::open(dir.path()).unwrap();
        store.close();
        let (store, again) = Store::open(dir.path()).unwrap();
        assert_eq!(again.incarnation, first.incarnation, "reopened: the same queue");
        store.close();
        std::fs::remove_dir_all(dir.path()).unwrap();
        let (_store, fresh) = Store::open(dir.path()).unwrap();
        assert_ne!(fresh.incarnation, first.incarnation, "created afresh: another queue");
    }

    pub(crate) fn envelope(id: MessageId) -> Envelope {
        Envelope {
            id,
            mail_from: Some(address(&format!("sender{}@example.org", id.0))),
            recipients: vec![Recipient::new(address("a@example.com")), Recipient::new(address("b@example.net"))],
            size: data_for(id).len() as u64,
            body_8bit: id.0 & 1 == 0,
            binary_mime: false,
            smtputf8: false,
            requiretls: false,
            ret: None,
            envid: Some(format!("env-{}", id.0).into()),
            arrival_ms: 1_700_000_000_000 + id.0,
            origin: Origin {
                connector: "Default".into(),
                client_ip: None,
                helo: "client.example".into(),
                tls: false,
                source: Default::default(),
            },
            subject: None,
            internet_message_id: None,
            state: Default::default(),
        }
    }

    /// Deterministic, id-specific data of varying size (catches swapped or truncated bodies).
    /// Every eighth message is large enough to be spooled to a file of its own.
    pub(crate) fn data_for(id: MessageId) -> Vec<u8> {
        let spread = (id.0 as usize * 7919) % 20_000;
        let len = if id.0.is_multiple_of(8) { SPOOL_ABOVE + 1 + spread * 10 } else { 100 + spread };
        (0..len).map(|i| (id.0 as usize * 31 + i) as u8).collect()
    }

    /// Stores `n` new messages one after the other ([`envelope`], [`data_for`]); their ids.
    async fn insert_new(store: &Store, n: usize) -> Vec<MessageId> {
        let ids: Vec<_> = (0..n).map(|_| store.next_id()).collect();
        for id in &ids {
            store.insert(&envelope(*id), &data_for(*id)).await.unwrap();
        }
        ids
    }

    #[tokio::test]
    async fn insert_update_remove_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, recovered) = open_messages(dir.path());
        assert!(recovered.is_empty());
        let ids = insert_new(&store, 3).await;
        assert_eq!(store.len(), 3);
        assert_eq!(store.read_data(ids[1]).unwrap(), data_for(ids[1]));
        drop(store);

        let (store, recovered) = open_messages(dir.path());
        assert_eq!(recovered, ids.iter().map(|id| envelope(*id)).collect::<Vec<_>>());
        for id in &ids {
            assert_eq!(store.read_data(*id).unwrap(), data_for(*id));
        }
        let mut updated = envelope(ids[0]);
        updated.recipients[0].status = RecipientStatus::Delivered;
        store.update(&updated).await.unwrap();
        store.remove(ids[1]).await.unwrap();
        drop(store);

        let (store, recovered) = open_messages(dir.path());
        assert_eq!(recovered, vec![updated, envelope(ids[2])]);
        assert!(matches!(store.read_data(ids[1]), Err(StoreError::NotFound(_))));
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn ids_not_reused_after_removing_the_highest() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let ids = insert_new(&store, 3).await;
        let highest = *ids.iter().max().unwrap();
        store.remove(highest).await.unwrap();
        drop(store);

        let (store, recovered) = open_messages(dir.path());
        assert_eq!(recovered.len(), 2);
        assert!(store.next_id() > highest);
        drop(store);
        // And once more with an empty store.
        let (store, _) = open_messages(dir.path());
        for e in &recovered {
            store.remove(e.id).await.unwrap();
        }
        drop(store);
        let (store, recovered) = open_messages(dir.path());
        assert!(recovered.is_empty());
        assert!(store.next_id() > highest);
    }

    #[tokio::test]
    async fn update_missing_is_not_found_and_duplicate_insert_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let id = store.next_id();
        assert!(matches!(store.update(&envelope(id)).await, Err(StoreError::NotFound(i)) if i == id));
        store.insert(&envelope(id), b"first").await.unwrap();
        assert!(matches!(store.insert(&envelope(id), b"second").await, Err(StoreError::DuplicateId(i)) if i == id));
        assert_eq!(store.read_data(id).unwrap(), b"first");
        store.remove(id).await.unwrap();
        store.remove(id).await.unwrap(); // idempotent
        assert!(store.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_inserts_are_group_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let id = store.next_id();
                    store.insert(&envelope(id), &data_for(id)).await.map(|()| id)
                })
            })
            .collect();
        let mut ids = BTreeSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap().unwrap());
        }
        let stats = store.stats();
        assert_eq!(stats.ops, 500);
        assert!(stats.commits < 100, "expected batching, got {stats:?}");
        drop(store);

        let (store, recovered) = open_messages(dir.path());
        assert_eq!(recovered.iter().map(|e| e.id).collect::<BTreeSet<_>>(), ids);
        for id in ids {
            assert_eq!(store.read_data(id).unwrap(), data_for(id));
        }
    }

    #[tokio::test]
    async fn corrupt_records_are_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let ids = insert_new(&store, 3).await;
        drop(store);
        let orphan = 1000u64; // an envelope without a body
        {
            let db = Database::create(dir.path().join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut env = txn.open_table(ENVELOPES).unwrap();
                env.insert(ids[1].0, b"\xff garbage {".as_slice()).unwrap();
                env.insert(orphan, encode(&envelope(MessageId(orphan))).unwrap().as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }

        let (store, recovered) = open_messages(dir.path());
        assert_eq!(recovered, vec![envelope(ids[0]), envelope(ids[2])]);
        assert_eq!(store.len(), 2);
        assert!(store.next_id().0 > orphan, "quarantined ids are not reused");
        store.close();

        let db = Database::create(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_read().unwrap();
        let q = txn.open_table(QUARANTINE).unwrap();
        let bad = q.get(ids[1].0).unwrap().unwrap();
        let (reason, raw, body) = bad.value();
        assert!(reason.contains("deserialize"), "{reason}");
        assert_eq!(raw, b"\xff garbage {");
        assert_eq!(body, data_for(ids[1]).as_slice(), "the body is kept with the quarantined envelope");
        let bad = q.get(orphan).unwrap().unwrap();
        let (reason, _, body) = bad.value();
        assert!(reason.contains("missing"), "{reason}");
        assert!(body.is_empty());
        let env = txn.open_table(ENVELOPES).unwrap();
        assert!(env.get(ids[1].0).unwrap().is_none());
        assert!(txn.open_table(BODIES).unwrap().get(ids[1].0).unwrap().is_none());
    }

    #[tokio::test]
    async fn second_open_reports_directory_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let err = match Store::open(dir.path()) {
            Err(e) => e,
            Ok(_) => panic!("second open succeeded"),
        };
        assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("in use by another process"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        // After close the directory can be opened again.
        store.close();
        assert!(matches!(store.insert(&envelope(MessageId(1)), b"x").await, Err(StoreError::Closed)));
        assert!(matches!(store.read_data(MessageId(1)), Err(StoreError::Closed)));
        open_messages(dir.path());
    }

    #[tokio::test]
    async fn close_finishes_queued_ops() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let ids: Vec<_> = (0..50).map(|_| store.next_id()).collect();
        let inserts: Vec<_> = ids
            .iter()
            .map(|id| {
                let store = store.clone();
                let id = *id;
                tokio::spawn(async move { store.insert(&envelope(id), &data_for(id)).await })
            })
            .collect();
        for t in inserts {
            t.await.unwrap().unwrap();
        }
        drop(store); // last handle: joins the thread
        let (_store, recovered) = open_messages(dir.path());
        assert_eq!(recovered.len(), 50);
    }

    #[tokio::test]
    async fn removals_not_awaited_are_committed_by_close() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let ids = insert_new(&store, 5).await;
        // Removals are lazy (no commit of their own); nobody waits for these.
        for id in &ids[..3] {
            drop(store.remove(*id));
        }
        store.close();
        let (_store, recovered) = open_messages(dir.path());
        assert_eq!(recovered.iter().map(|e| e.id).collect::<Vec<_>>(), ids[3..].to_vec());
    }

    #[test]
    fn errors_and_handles_are_thread_safe() {
        fn check<T: Send + Sync + 'static>() {}
        check::<StoreError>();
        check::<Store>();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dead_commit_thread_fails_ops_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let id = store.next_id();
        store.insert(&envelope(id), b"kept").await.unwrap();
        // Queue ops behind the crash so some are pending when the thread dies.
        let crash = {
            let s = store.clone();
            tokio::spawn(async move { s.submit(OpKind::Crash).await })
        };
        let pending: Vec<_> = (0..20)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move {
                    let id = s.next_id();
                    s.insert(&envelope(id), b"x").await
                })
            })
            .collect();
        let timeout = std::time::Duration::from_secs(10);
        assert!(tokio::time::timeout(timeout, crash).await.unwrap().unwrap().is_err());
        for p in pending {
            // Each either made it into a batch before the crash (Ok) or fails; none hangs.
            let _ = tokio::time::timeout(timeout, p).await.expect("op hung after the commit thread died");
        }
        let later = tokio::time::timeout(timeout, store.insert(&envelope(store.next_id()), b"y")).await.unwrap();
        assert!(matches!(later, Err(StoreError::CommitterGone)), "{later:?}");
        assert!(matches!(store.remove(id).await, Err(StoreError::CommitterGone)));
        store.close(); // logs the panic, must not panic itself
        drop(store);
        let (_store, recovered) = open_messages(dir.path());
        assert!(recovered.iter().any(|e| e.id == id));
    }

    /// Waits (bounded) until the store takes writes again.
    #[cfg(feature = "test-hooks")]
    async fn recovered(store: &Store) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.failure().is_some() {
            assert!(Instant::now() < deadline, "the store did not recover: {:?}", store.failure());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A failed commit: every write is refused meanwhile, the writes the queue
    /// made meanwhile are applied on recovery, refused inserts never stay.
    #[cfg(feature = "test-hooks")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_commits_refuse_writes_then_recover_what_was_asked() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let ids = insert_new(&store, 3).await;
        std::fs::write(dir.path().join(DISK_FULL_FLAG), "").unwrap();
        let refused = store.next_id();
        let err = store.insert(&envelope(refused), b"refused").await.unwrap_err();
        assert!(matches!(err, StoreError::Failed(_)), "{err:?}");
        assert!(store.failure().is_some());
        // The queue goes on meanwhile: a delivery recorded, a message removed.
        let mut updated = envelope(ids[0]);
        updated.recipients[0].status = RecipientStatus::Delivered;
        assert!(matches!(store.update(&updated).await, Err(StoreError::Failed(_))));
        assert!(matches!(store.remove(ids[1]).await, Err(StoreError::Failed(_))));
        assert!(matches!(store.put_queue("hop", b"retry".to_vec()).await, Err(StoreError::Failed(_))));
        // Still failing after a few recovery attempts; reads still work.
        std::thread::sleep(RECOVERY_INTERVAL * 3);
        assert!(matches!(store.insert(&envelope(store.next_id()), b"x").await, Err(StoreError::Failed(_))));
        assert_eq!(store.read_data(ids[2]).unwrap(), data_for(ids[2]));

        std::fs::remove_file(dir.path().join(DISK_FULL_FLAG)).unwrap();
        recovered(&store).await;
        let later = store.next_id();
        store.insert(&envelope(later), &data_for(later)).await.unwrap();
        assert_eq!(store.len(), 3, "ids[0], ids[2] and the later one");
        drop(store);

        let (_store, recovered) = Store::open(dir.path()).unwrap();
        assert_eq!(recovered.messages, vec![Box::new(updated), Box::new(envelope(ids[2])), Box::new(envelope(later))]);
        assert_eq!(recovered.queues, vec![("hop".to_string(), b"retry".to_vec())]);
    }

    /// A commit that reached the disk but reported failure (a failed fsync):
    /// the refused insert is removed again, so it is not delivered behind the
    /// client's back (the client was told to try again).
    #[cfg(feature = "test-hooks")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn insert_whose_commit_failed_late_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let kept = store.next_id();
        store.insert(&envelope(kept), &data_for(kept)).await.unwrap();
        std::fs::write(dir.path().join(DISK_FULL_FLAG), "after-commit").unwrap();
        let refused = store.next_id();
        assert!(matches!(store.insert(&envelope(refused), b"x").await, Err(StoreError::Failed(_))));
        std::fs::remove_file(dir.path().join(DISK_FULL_FLAG)).unwrap();
        recovered(&store).await;
        assert_eq!(store.len(), 1);
        drop(store);
        let (_store, recovered) = open_messages(dir.path());
        assert_eq!(recovered, vec![envelope(kept)]);
    }

    const CRASH_CHILD_ENV: &str = "KT_QUEUE_CRASH_CHILD_DIR";

    /// Parent: runs this same test in a child process that inserts messages and
    /// prints `ACK <id>` only after insert returned, SIGKILLs it mid-stream, then
    /// checks every acknowledged id is recovered with its exact data.
    #[test]
    fn sigkill_loses_no_acknowledged_message() {
        if let Ok(dir) = std::env::var(CRASH_CHILD_ENV) {
            crash_child(Path::new(&dir));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let module = module_path!().split_once("::").map(|(_, rest)| rest).unwrap_or(module_path!());
        let name = format!("{module}::sigkill_loses_no_acknowledged_message");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &name, "--nocapture", "--test-threads=1"])
            .env(CRASH_CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        let mut killed = false;
        for line in lines {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.push(MessageId(id.trim().parse().unwrap()));
            }
            if acked.len() == 200 && !killed {
                child.kill().unwrap(); // SIGKILL on Unix
                killed = true;
                // Keep reading: lines already in the pipe were acknowledged too.
            }
        }
        let status = child.wait().unwrap();
        assert!(killed, "child ended after {} acks with {status}", acked.len());

        let (store, recovered) = open_messages(dir.path());
        let recovered: std::collections::HashMap<_, _> = recovered.into_iter().map(|e| (e.id, e)).collect();
        for id in &acked {
            assert_eq!(recovered.get(id), Some(&envelope(*id)), "acknowledged message {id} lost");
            assert_eq!(store.read_data(*id).unwrap(), data_for(*id), "data of {id}");
        }
        // Every recovered message is intact, acknowledged or not.
        for id in recovered.keys() {
            assert_eq!(store.read_data(*id).unwrap(), data_for(*id));
        }
        // Bodies being written at the kill are gone: only recovered messages have a file.
        let spooled = spool_files(dir.path());
        assert!(spooled.iter().all(|id| recovered.contains_key(&MessageId(*id))), "orphaned spool files left");
        assert!(!spooled.is_empty(), "the crash test wrote no spooled body");
        eprintln!("crash test: {} acknowledged, {} recovered", acked.len(), recovered.len());
    }

    fn spool_files(dir: &Path) -> Vec<u64> {
        let entries = std::fs::read_dir(dir.join(SPOOL_DIR)).unwrap();
        entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter_map(|n| n.parse().ok()).collect()
    }

    #[tokio::test]
    async fn large_bodies_live_in_spool_files_read_in_chunks_and_go_with_their_message() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let (small, large) = (MessageId(1), MessageId(8));
        for id in [small, large] {
            store.insert(&envelope(id), &data_for(id)).await.unwrap();
        }
        assert_eq!(spool_files(dir.path()), vec![large.0]);
        let mut reader = store.open_body(large).unwrap();
        assert_eq!(reader.len(), data_for(large).len() as u64);
        let mut back = Vec::new();
        while let Some(chunk) = reader.next_chunk().await.unwrap() {
            assert!(chunk.len() <= super::super::body::CHUNK);
            back.extend_from_slice(&chunk);
        }
        assert_eq!(back, data_for(large));
        assert_eq!(store.open_body(small).unwrap().read_all().await.unwrap(), data_for(small));

        drop(store);
        let (store, recovered) = open_messages(dir.path());
        assert_eq!(recovered.len(), 2);
        assert_eq!(store.read_data(large).unwrap(), data_for(large));
        store.remove(large).await.unwrap();
        assert!(spool_files(dir.path()).is_empty(), "a removed message's file goes with it");
    }

    #[tokio::test]
    async fn orphaned_spool_files_are_removed_and_a_damaged_one_is_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_messages(dir.path());
        let (kept, damaged) = (MessageId(8), MessageId(16));
        for id in [kept, damaged] {
            store.insert(&envelope(id), &data_for(id)).await.unwrap();
        }
        drop(store);
        // A body a crash left unfinished (no envelope), and a stored one that lost data.
        std::fs::write(dir.path().join(SPOOL_DIR).join("99"), b"half a message").unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(dir.path().join(SPOOL_DIR).join("16")).unwrap();
        file.set_len(1000).unwrap();

        let (store, recovered) = open_messages(dir.path());
        assert_eq!(recovered.iter().map(|e| e.id).collect::<Vec<_>>(), vec![kept]);
        assert_eq!(spool_files(dir.path()), vec![kept.0]);
        assert!(dir.path().join(SPOOL_DIR).join("16.quarantined").exists(), "the damaged body is kept for a person");
        assert_eq!(store.read_data(kept).unwrap(), data_for(kept));
    }

    fn crash_child(dir: &Path) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let (store, _) = open_messages(dir);
            let workers: Vec<_> = (0..16)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        // Bounded so an orphaned child cannot run forever.
                        for _ in 0..10_000 {
                            let id = store.next_id();
                            store.insert(&envelope(id), &data_for(id)).await.unwrap();
                            println!("ACK {id}");
                        }
                    })
                })
                .collect();
            for w in workers {
                w.await.unwrap();
            }
        });
    }
}
