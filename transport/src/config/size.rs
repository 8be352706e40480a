//! Byte sizes. STUB: the config helper replaces this file.
use serde::{Deserialize, Serialize};

/// A size in bytes, written `36MB`, `10KB`, `1048576` ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}
