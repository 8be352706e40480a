//! Messages and their durable store.
//! - [`message`]: the envelope model shared by receive, routing and delivery
//! - [`store`]: the on-disk queue (group commit, recovery)
pub mod message;
pub mod store;

pub use message::{Envelope, MessageId, Notify, Recipient, RecipientStatus, Ret};
pub use store::{Store, StoreError};
