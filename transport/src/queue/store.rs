//! Durable store. STUB: the queue helper replaces this file.
use super::{Envelope, MessageId};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("queue storage: {0}")]
    Io(#[from] std::io::Error),
}

/// The on-disk queue. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct Store {}

impl Store {
    /// Open (or create) the queue under `dir`; returns every recovered message.
    pub fn open(_dir: &Path) -> Result<(Store, Vec<Envelope>), StoreError> {
        unimplemented!()
    }
    /// A fresh, never reused message id.
    pub fn next_id(&self) -> MessageId {
        unimplemented!()
    }
    /// Store a new message; returns once data and envelope are durable.
    pub async fn insert(&self, _envelope: &Envelope, _data: &[u8]) -> Result<(), StoreError> {
        unimplemented!()
    }
    /// Durably replace a message's envelope (recipient states, retry state).
    pub async fn update(&self, _envelope: &Envelope) -> Result<(), StoreError> {
        unimplemented!()
    }
    /// Durably remove a message (after delivery, NDR or Remove-Message).
    pub async fn remove(&self, _id: MessageId) -> Result<(), StoreError> {
        unimplemented!()
    }
    /// The stored data of a message.
    pub fn read_data(&self, _id: MessageId) -> Result<Vec<u8>, StoreError> {
        unimplemented!()
    }
}
