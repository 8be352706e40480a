//! Messages and their durable store.
//! - [`store`]: the on-disk queue (group commit, recovery)
//! - [`body`]: message bodies written and read a chunk at a time (spooled when large)
//! - [`manager`]: submission → categorizer → delivery queues, and their workers
//! - [`retry`]: when a failed next hop is tried again
pub mod body;
pub mod manager;
pub mod retry;
pub mod store;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;

pub use store::{Store, StoreError};
