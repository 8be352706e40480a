//! Parsing and validation of the configuration file. Every error names its field
//! path (`receiveConnectors[1].maxMessageSize`), and all errors are reported at
//! once. `transport check-config`, the server at start and reload, and the
//! operator (before it renders a ConfigMap) all run these same checks.
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
        todo!("config helper")
    }

    /// Read, parse and validate a file.
    pub fn load(_path: &Path) -> Result<Self, ConfigErrors> {
        todo!("config helper")
    }

    /// Every semantic check (ranges, references, cross-field rules).
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        todo!("config helper")
    }
}
