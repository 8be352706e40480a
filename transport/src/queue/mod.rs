//! Messages and their durable store.
//! - [`message`]: the envelope model shared by receive, routing and delivery
//! - [`store`]: the on-disk queue (group commit, recovery)
//! - [`manager`]: submission → categorizer → delivery queues, and their workers
//! - [`retry`]: when a failed next hop is tried again
pub mod manager;
pub mod message;
pub mod retry;
pub mod store;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;

pub use message::{Envelope, MessageId, Notify, Recipient, RecipientStatus, Ret};
pub use store::{Store, StoreError};
