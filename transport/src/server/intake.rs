//! Where accepted messages go: the store (durable before the 250), then the
//! queue manager. Shared by the SMTP sessions and the replay directory.
use crate::clock::{to_millis, SharedClock};
use crate::control::Gate;
use crate::queue::body::BodyWriter;
use crate::queue::manager::QueueManager;
use crate::queue::{Envelope, MessageId, Store, StoreError};
use crate::smtp::{Incoming, Submit, SubmitError};
use futures::future::BoxFuture;

pub struct Intake {
    store: Store,
    manager: QueueManager,
    clock: SharedClock,
    gate: Gate,
}

impl Intake {
    pub fn new(store: Store, manager: QueueManager, clock: SharedClock, gate: Gate) -> Intake {
        Intake { store, manager, clock, gate }
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
            // The server may have stopped taking mail while the client sent DATA
            // (a redirect started, a component went Inactive): refuse, never lose.
            if !self.gate.now().mail {
                return Err(SubmitError::Unavailable("the server stopped taking mail".into()));
            }
            let envelope = Envelope {
                id: msg.id,
                mail_from: msg.mail_from.map(Into::into),
                recipients: msg.recipients,
                size: msg.data.len(),
                body_8bit: msg.body_8bit,
                ret: msg.ret,
                envid: msg.envid.map(Into::into),
                arrival_ms: to_millis(self.clock.now()),
                origin: msg.origin,
                subject: msg.subject.map(Into::into),
                internet_message_id: msg.internet_message_id.map(Into::into),
                state: Default::default(),
            };
            self.store.insert_body(&envelope, msg.data).await.map_err(storage_error)?;
            self.manager.enqueue(envelope);
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
