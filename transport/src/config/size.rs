//! Byte sizes as Exchange writes them: `36MB`, `10KB`, `1048576`, `unlimited`.
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes. `unlimited` is `u64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const UNLIMITED: ByteSize = ByteSize(u64::MAX);

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(_s: &str) -> Result<Self, String> {
        todo!("config helper")
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        todo!("config helper")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(_d: D) -> Result<Self, D::Error> {
        todo!("config helper: accept an integer or a string")
    }
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        todo!("config helper: int-or-string with a pattern")
    }
}
