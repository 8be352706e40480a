//! Where accepted messages go: the store (durable before the 250), then the
//! queue manager. Shared by the SMTP sessions and the replay directory.
use crate::clock::{to_millis, SharedClock};
use crate::control::Gate;
use crate::metrics::Telemetry;
use crate::queue::body::BodyWriter;
use crate::queue::manager::QueueManager;
use crate::queue::{Envelope, MessageId, Store, StoreError};
use crate::shadow::{CopyOutcome, Primary};
use crate::smtp::{Incoming, Submit, SubmitError};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Instant;

pub struct Intake {
    store: Store,
    manager: QueueManager,
    clock: SharedClock,
    gate: Gate,
    /// Shadow copies (when the server has peers and shadowing is on).
    shadow: Arc<Primary>,
    /// How long each accepted message took to store (the acceptance latency).
    telemetry: Arc<Telemetry>,
}

impl Intake {
    pub fn new(
        store: Store,
        manager: QueueManager,
        clock: SharedClock,
        gate: Gate,
        shadow: Arc<Primary>,
        telemetry: Arc<Telemetry>,
    ) -> Intake {
        Intake { store, manager, clock, gate, shadow, telemetry }
    }
}

impl Submit for Intake {
    fn next_id(&self) -> MessageId {
        self.store.next_id()
    }

    fn body_writer(&self, id: MessageId, head_keep: usize) -> BodyWriter {
        self.store.body_writer(id, head_keep)
    }

    fn submit(&self, msg: Incoming) -> BoxFuture<'_, Result<(), SubmitError>> {
        Box::pin(async move {
            // Real time, not the server's clock: what the client waits for between its
            // final dot and the 250 (the store's fsync, the shadow copy).
            let started = Instant::now();
            // The server may have stopped taking mail while the client sent DATA
            // (a redirect started, a component went Inactive): refuse, never lose.
            if !self.gate.now().mail {
                return Err(SubmitError::Unavailable("the server stopped taking mail".into()));
            }
            // Its size is the data as stored; it arrives now, on the server's clock.
            let envelope = Envelope {
                size: msg.data.len(),
                arrival_ms: to_millis(self.clock.now()),
                state: Default::default(),
                ..msg.envelope
            };
            if !self.shadow.wanted() {
                self.store.insert_body(&envelope, msg.data).await.map_err(storage_error)?;
                self.manager.track_received(&envelope);
                self.manager.enqueue(envelope);
                self.telemetry.message_accepted(started.elapsed());
                return Ok(());
            }
            // Stored here and copied to a peer at once: the client waits for
            // the slower of the two, not for both in turn. Until it is queued
            // here, the message counts as held for the shadow's heartbeat.
            let _held = self.shadow.begin(envelope.id.0);
            let copy_body = msg.data.clone();
            let (stored, copied) =
                tokio::join!(self.store.insert_body(&envelope, msg.data), self.shadow.copy(&envelope, &copy_body));
            // A copy whose message is not stored is dropped by the shadow's next heartbeat.
            stored.map_err(storage_error)?;
            match copied {
                CopyOutcome::Failed { reason } => {
                    if self.shadow.reject_on_failure() {
                        // The client is told to send again: take this one back out.
                        let _ = self.store.remove(envelope.id).await;
                        return Err(SubmitError::ShadowFailed(reason));
                    }
                    tracing::warn!(id = %envelope.id, %reason, "message accepted without a shadow copy");
                    self.manager.track_received(&envelope);
                }
                CopyOutcome::Shadowed { peer } => {
                    self.manager.track_received(&envelope);
                    self.manager.track_shadowed(&envelope, &peer);
                }
                CopyOutcome::NotWanted => self.manager.track_received(&envelope),
            }
            self.manager.enqueue(envelope);
            self.telemetry.message_accepted(started.elapsed());
            Ok(())
        })
    }

    fn storage_failure(&self) -> Option<String> {
        self.store.failure()
    }
}

fn storage_error(e: StoreError) -> SubmitError {
    tracing::error!(error = %e, "cannot store an incoming message");
    SubmitError::Storage(e.to_string())
}
