//! Validation. STUB: the config helper replaces this file.
use super::TransportFile;
use std::path::Path;

/// One problem, with the field path it concerns (e.g. `retry.queueGlitchRetryCount`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl TransportFile {
    /// Parse YAML text and validate it; all errors at once.
    pub fn from_yaml_str(_text: &str) -> Result<Self, ConfigErrors> {
        unimplemented!()
    }

    /// Read, parse and validate a file.
    pub fn load(_path: &Path) -> Result<Self, ConfigErrors> {
        unimplemented!()
    }

    /// Every semantic check (ranges, references, cross-field rules).
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        unimplemented!()
    }
}
