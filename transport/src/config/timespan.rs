//! Exchange time spans: `[d.]hh:mm:ss`, and the short forms `90s`, `15m`, `4h`, `2d`.
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

/// A duration as written in the config file and the CRDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeSpan(pub Duration);

impl TimeSpan {
    pub fn as_duration(self) -> Duration {
        self.0
    }
    pub fn from_secs(secs: u64) -> Self {
        TimeSpan(Duration::from_secs(secs))
    }
}

impl std::str::FromStr for TimeSpan {
    type Err = String;
    fn from_str(_s: &str) -> Result<Self, String> {
        todo!("config helper")
    }
}

/// Written back in the Exchange form, `[d.]hh:mm:ss`.
impl std::fmt::Display for TimeSpan {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        todo!("config helper")
    }
}

impl Serialize for TimeSpan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeSpan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for TimeSpan {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeSpan".into()
    }
    fn json_schema(_g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        todo!("config helper: string with a pattern")
    }
}
