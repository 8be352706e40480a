//! The shadow copies this server holds for its peers: durable in an append-only
//! log of their own (`<queueDirectory>/shadow`, see [`super::log`]), indexed in
//! memory by primary, never delivered unless taken over.
use super::channel::{unframe_one, Unframed};
use super::log::CopyLog;
use super::{HeartbeatRequest, PeerClient, ShadowConfig, SharedShadowConfig, HEARTBEAT_PAGE};
use crate::api::TrackingEvent;
use crate::api::{DeliveryType, QueueInfo, QueueStatus};
use crate::clock::{from_millis, rfc3339, to_millis, SharedClock};
use crate::envelope::MessageId;
use crate::logs::{TrackingLog, TrackingSource};
use crate::metrics::Telemetry;
use crate::queue::manager::QueueManager;
use crate::queue::StoreError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tracing::{info, info_span, warn, Instrument};

/// The folder under the queue directory that holds the copies.
pub const SHADOW_DIR: &str = "shadow";

/// One copy, as the index knows it (the envelope and body stay on disk).
struct Copy {
    primary: Arc<str>,
    incarnation: u64,
    primary_id: u64,
    arrival_ms: u64,
}

/// What this server knows of one primary it holds copies for.
struct Link {
    /// The `<n>` of `server\Shadow\<n>`: stable while the server runs.
    queue: u32,
    /// Last heartbeat the primary answered (or when the link was first seen).
    last_contact: SystemTime,
    last_attempt: Option<SystemTime>,
    last_error: Option<String>,
}

#[derive(Default)]
struct Index {
    copies: HashMap<MessageId, Copy>,
    links: BTreeMap<Arc<str>, Link>,
    next_queue: u32,
}

impl Index {
    fn link(&mut self, primary: &str, now: SystemTime) -> (Arc<str>, &mut Link) {
        let key: Arc<str> = match self.links.get_key_value(primary) {
            Some((k, _)) => k.clone(),
            None => {
                self.next_queue += 1;
                let link = Link { queue: self.next_queue, last_contact: now, last_attempt: None, last_error: None };
                let key: Arc<str> = primary.into();
                self.links.insert(key.clone(), link);
                key
            }
        };
        let link = self.links.get_mut(&key).expect("inserted above");
        (key, link)
    }
}

/// Why copies are delivered from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takeover {
    /// The primary's queue is not the one that sent them (created afresh).
    NewIncarnation,
    Unreachable,
    Requested,
}

/// What can stop a takeover: the copy log, or the queue it goes to.
#[derive(Debug, thiserror::Error)]
pub enum HolderError {
    #[error("shadow log: {0}")]
    Log(#[from] std::io::Error),
    #[error("shadow log: copy {id}: {reason}")]
    Damaged { id: u64, reason: String },
    #[error(transparent)]
    Queue(#[from] StoreError),
}

pub struct Holder {
    log: Arc<CopyLog>,
    /// One takeover at a time: two (the heartbeat's and an administrator's)
    /// must not both read a copy before either drops it.
    takeovers: tokio::sync::Mutex<()>,
    clock: SharedClock,
    index: Mutex<Index>,
    telemetry: Arc<Telemetry>,
    /// HARECEIVE and HADISCARD records (HARESUBMIT is the queue's, at requeue).
    tracking: TrackingLog,
}

impl Holder {
    /// Opens (or creates) the copy log under `queue_dir` and indexes every
    /// copy in it. Every primary starts as just heard from: a restart of this
    /// server does not count against ShadowResubmitTimeSpan.
    pub fn open(
        queue_dir: &Path,
        clock: SharedClock,
        telemetry: Arc<Telemetry>,
        tracking: TrackingLog,
    ) -> std::io::Result<Holder> {
        let (log, logged) = CopyLog::open(&queue_dir.join(SHADOW_DIR))?;
        let now = clock.now();
        let mut index = Index::default();
        let mut damaged = Vec::new();
        for copy in logged {
            match unframe_one(&copy.frame) {
                Ok(c) => {
                    let (primary, _) = index.link(&copy.primary, now);
                    let entry = Copy {
                        primary,
                        incarnation: copy.incarnation,
                        primary_id: c.envelope.id.0,
                        arrival_ms: c.envelope.arrival_ms,
                    };
                    index.copies.insert(MessageId(copy.id), entry);
                }
                Err(e) => {
                    warn!(id = copy.id, error = %e, "a shadow copy that cannot be read was dropped");
                    damaged.push(copy.id);
                }
            }
        }
        log.drop_copies(&damaged, true)?;
        if !index.copies.is_empty() {
            info!(copies = index.copies.len(), primaries = index.links.len(), "shadow copies recovered");
        }
        Ok(Holder {
            log: Arc::new(log),
            takeovers: Default::default(),
            clock,
            index: Mutex::new(index),
            telemetry,
            tracking,
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies held, over every primary.
    pub fn len(&self) -> usize {
        self.index().copies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores copies of `primary`'s messages durably (one write, one fdatasync);
    /// returns once they are.
    pub(super) async fn accept(&self, primary: &str, incarnation: u64, copies: &[Unframed<'_>]) -> std::io::Result<()> {
        let frames: Vec<Vec<u8>> = copies.iter().map(|c| c.raw.to_vec()).collect();
        let name = primary.to_string();
        let ids = self
            .on_log(move |log| {
                let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
                log.append(&name, incarnation, &frames)
            })
            .await?;
        let now = self.clock.now();
        let mut index = self.index();
        let (primary, link) = index.link(primary, now);
        link.last_contact = now;
        for (id, c) in ids.into_iter().zip(copies) {
            let context = format!("{primary} message {}", c.envelope.id);
            self.tracking
                .record(TrackingEvent::HaReceive, TrackingSource::Redundancy, &c.envelope)
                .id(id)
                .all_recipients()
                .source_context(&context)
                .write();
            let copy = Copy {
                primary: primary.clone(),
                incarnation,
                primary_id: c.envelope.id.0,
                arrival_ms: c.envelope.arrival_ms,
            };
            index.copies.insert(MessageId(id), copy);
        }
        Ok(())
    }

    /// The shadow queues as Get-Queue shows them: one per primary,
    /// `server\Shadow\<n>`, next hop the primary.
    pub fn queues(&self, server: &str) -> Vec<QueueInfo> {
        let index = self.index();
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for copy in index.copies.values() {
            *counts.entry(&copy.primary).or_default() += 1;
        }
        index
            .links
            .iter()
            .map(|(primary, link)| QueueInfo {
                identity: format!("{server}\\Shadow\\{}", link.queue),
                id: format!("Shadow\\{}", link.queue),
                delivery_type: DeliveryType::ShadowRedundancy,
                next_hop_domain: primary.to_string(),
                next_hop_connector: None,
                status: if link.last_error.is_some() { QueueStatus::Retry } else { QueueStatus::Ready },
                message_count: counts.get(&**primary).copied().unwrap_or(0),
                last_error: link.last_error.clone(),
                last_retry_time: link.last_attempt.map(rfc3339),
                next_retry_time: None,
                first_retry_time: None,
                retry_count: 0,
            })
            .collect()
    }

    /// Delivers every copy of `primary` from this server (an administrator's
    /// or the operator's request: the primary is gone for good). Returns how
    /// many messages were queued here.
    pub async fn take_over(&self, primary: &str, into: &QueueManager) -> Result<usize, HolderError> {
        let ids = self.copies_of(primary).into_iter().map(|(id, _, _)| id).collect();
        self.resubmit(primary, ids, Takeover::Requested, into).await
    }

    /// The copies held for `primary`: (id here, the primary's id, its incarnation).
    fn copies_of(&self, primary: &str) -> Vec<(MessageId, u64, u64)> {
        let index = self.index();
        let of_primary = index.copies.iter().filter(|(_, c)| &*c.primary == primary);
        of_primary.map(|(id, c)| (*id, c.primary_id, c.incarnation)).collect()
    }

    /// One heartbeat round over every primary this server holds copies for.
    pub async fn heartbeat(&self, config: &ShadowConfig, client: &PeerClient, server: &str, into: &QueueManager) {
        let now = self.clock.now();
        let mut groups: BTreeMap<Arc<str>, Vec<(MessageId, u64, u64)>> = BTreeMap::new();
        let mut expired = Vec::new();
        {
            let index = self.index();
            let oldest_kept = to_millis(now).saturating_sub(config.policy.auto_discard_interval.as_millis() as u64);
            for (id, copy) in &index.copies {
                if copy.arrival_ms < oldest_kept {
                    expired.push(*id);
                } else {
                    groups.entry(copy.primary.clone()).or_default().push((*id, copy.primary_id, copy.incarnation));
                }
            }
        }
        if !expired.is_empty() {
            warn!(copies = expired.len(), "shadow copies older than shadowMessageAutoDiscardInterval dropped");
            self.discard(&expired).await;
        }
        for (primary, copies) in groups {
            let span = info_span!("shadow_heartbeat", %primary, copies = copies.len());
            // A failure is recorded on the link (Get-Queue shows it) and logged inside.
            let _ = self.beat(config, client, server, &primary, &copies, into).instrument(span).await;
        }
    }

    /// Heartbeats `primary` now, outside the schedule, and returns how many of
    /// its copies this server still holds afterwards. The operator asks this of
    /// every server before it removes a drained one (or lets its pod go with its
    /// volume): a drained queue is empty, so the copies go, and none is delivered
    /// a second time once the primary is gone or back with a new queue.
    pub async fn check_now(
        &self,
        config: &ShadowConfig,
        client: &PeerClient,
        server: &str,
        primary: &str,
        into: &QueueManager,
    ) -> Result<usize, String> {
        let copies = self.copies_of(primary);
        if !copies.is_empty() {
            let span = info_span!("shadow_heartbeat", %primary, copies = copies.len(), asked = true);
            self.beat(config, client, server, primary, &copies, into).instrument(span).await?;
        }
        Ok(self.copies_of(primary).len())
    }

    /// One heartbeat to `primary` about `copies`: drops those it has finished,
    /// takes over those of another incarnation, and, when it does not answer,
    /// takes over all of them once it has been silent for shadowResubmitTimeSpan.
    async fn beat(
        &self,
        config: &ShadowConfig,
        client: &PeerClient,
        server: &str,
        primary: &str,
        copies: &[(MessageId, u64, u64)],
        into: &QueueManager,
    ) -> Result<(), String> {
        let now = self.clock.now();
        let token = config.token.clone().unwrap_or_default();
        let result = match config.address_of(primary) {
            None => Err(format!("{primary} is not a peer in the configuration any more")),
            Some(address) => self.ask(client, address, &token, server, copies).await,
        };
        match result {
            Ok((new_incarnation, finished)) => {
                {
                    let mut index = self.index();
                    let (_, link) = index.link(primary, now);
                    link.last_contact = now;
                    link.last_attempt = Some(now);
                    link.last_error = None;
                }
                self.discard(&finished).await;
                if !new_incarnation.is_empty() {
                    warn!(
                        copies = new_incarnation.len(),
                        "the primary's queue was created afresh (its disk was lost): delivering its messages from here"
                    );
                    self.log_resubmit(self.resubmit(primary, new_incarnation, Takeover::NewIncarnation, into).await);
                }
                Ok(())
            }
            Err(e) => {
                let silent_since = {
                    let mut index = self.index();
                    let (_, link) = index.link(primary, now);
                    link.last_attempt = Some(now);
                    link.last_error = Some(e.clone());
                    link.last_contact
                };
                let silent = now.duration_since(silent_since).unwrap_or_default();
                if silent >= config.policy.resubmit_time_span {
                    warn!(error = %e, silent_s = silent.as_secs(), "the primary has not answered for \
                          shadowResubmitTimeSpan: delivering its messages from here");
                    let ids = copies.iter().map(|(id, _, _)| *id).collect();
                    self.log_resubmit(self.resubmit(primary, ids, Takeover::Unreachable, into).await);
                } else {
                    info!(error = %e, silent_s = silent.as_secs(), "shadow heartbeat failed");
                }
                Err(e)
            }
        }
    }

    fn log_resubmit(&self, result: Result<usize, HolderError>) {
        if let Err(e) = result {
            warn!(error = %e, "shadow takeover stopped; the copies left are tried at the next heartbeat");
        }
    }

    /// Asks `primary` about `copies` (page by page). Returns the copies of
    /// another incarnation and those the primary has finished.
    async fn ask(
        &self,
        client: &PeerClient,
        address: &str,
        token: &str,
        server: &str,
        copies: &[(MessageId, u64, u64)],
    ) -> Result<(Vec<MessageId>, Vec<MessageId>), String> {
        let (mut other, mut finished) = (Vec::new(), Vec::new());
        for page in copies.chunks(HEARTBEAT_PAGE) {
            let request = HeartbeatRequest { shadow: server.to_string(), ids: page.iter().map(|c| c.1).collect() };
            let reply = client.heartbeat(address, token, &request).await.map_err(|e| e.to_string())?;
            let held: HashSet<u64> = reply.held.into_iter().collect();
            for (id, primary_id, incarnation) in page {
                if *incarnation != reply.incarnation {
                    other.push(*id);
                } else if !held.contains(primary_id) {
                    finished.push(*id);
                }
            }
        }
        Ok((other, finished))
    }

    /// Runs `f` on the copy log off the runtime's threads (its writes fdatasync).
    async fn on_log<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CopyLog) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || f(&log)).await.map_err(std::io::Error::other)?
    }

    /// Drops copies (their messages are finished, or too old).
    async fn discard(&self, ids: &[MessageId]) {
        if ids.is_empty() {
            return;
        }
        {
            let mut index = self.index();
            for id in ids {
                if let Some(copy) = index.copies.remove(id) {
                    let context = format!("{} message {}", copy.primary, copy.primary_id);
                    self.tracking
                        .record_id(TrackingEvent::HaDiscard, TrackingSource::Redundancy, id.0)
                        .source_context(&context)
                        .write();
                }
            }
            self.forget_empty_links(&mut index);
        }
        // Not synced: a drop lost in a crash only keeps a copy until the next heartbeat.
        let raw: Vec<u64> = ids.iter().map(|id| id.0).collect();
        if let Err(e) = self.on_log(move |log| log.drop_copies(&raw, false)).await {
            warn!(error = %e, "cannot record dropped shadow copies; they are dropped again after a restart");
        }
        self.telemetry.shadow_discarded(ids.len());
    }

    fn forget_empty_links(&self, index: &mut Index) {
        let live: HashSet<Arc<str>> = index.copies.values().map(|c| c.primary.clone()).collect();
        index.links.retain(|primary, _| live.contains(primary));
    }

    /// Queues the messages of `ids` on this server (new ids, the original
    /// arrival time, every recipient pending) and drops their copies.
    async fn resubmit(
        &self,
        primary: &str,
        ids: Vec<MessageId>,
        why: Takeover,
        into: &QueueManager,
    ) -> Result<usize, HolderError> {
        let _one_at_a_time = self.takeovers.lock().await;
        let mut done = 0;
        for id in ids {
            if !self.index().copies.contains_key(&id) {
                continue; // taken over or dropped meanwhile
            }
            let Some(frame) = self.on_log(move |log| log.read(id.0)).await? else {
                self.index().copies.remove(&id); // dropped meanwhile
                continue;
            };
            let copy = unframe_one(&frame).map_err(|reason| HolderError::Damaged { id: id.0, reason })?;
            let arrival = rfc3339(from_millis(copy.envelope.arrival_ms));
            let context = format!("shadow copy {id} of {primary} message {} ({why:?})", copy.envelope.id);
            let tracked = (TrackingEvent::HaResubmit, TrackingSource::Redundancy, context.as_str());
            let new_id = into.requeue(copy.envelope, copy.data.to_vec(), tracked).await?;
            info!(%primary, shadow_id = %id, id = %new_id, reason = ?why, %arrival, "shadow copy resubmitted for delivery");
            // Queued durably before the copy goes, and its drop synced: a crash in
            // between delivers twice, never loses; a restart does not take over again.
            self.on_log(move |log| log.drop_copies(&[id.0], true)).await?;
            let mut index = self.index();
            index.copies.remove(&id);
            done += 1;
        }
        let mut index = self.index();
        self.forget_empty_links(&mut index);
        drop(index);
        self.telemetry.shadow_resubmitted(done);
        Ok(done)
    }

    /// Heartbeats every shadowHeartbeatFrequency (on the server's clock) until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        config: SharedShadowConfig,
        client: PeerClient,
        server: String,
        into: QueueManager,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let config_now = config.read().unwrap_or_else(|e| e.into_inner()).clone();
            let wake = self.clock.now() + config_now.policy.heartbeat_frequency.max(Duration::from_millis(100));
            tokio::select! {
                _ = self.clock.sleep_until(wake) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            if !self.is_empty() {
                let config_now = config.read().unwrap_or_else(|e| e.into_inner()).clone();
                self.heartbeat(&config_now, &client, &server, &into).await;
            }
        }
    }
}
