//! Small state files the server keeps beside its queue (the component states, the
//! MTA-STS policy cache, the TLS report counts), replaced whole so that a crash leaves
//! the old file or the new one, never half of either.
use std::io::Write;
use std::path::Path;

/// Replaces the file at `path` by `bytes` durably: written aside, synced, renamed, and
/// the directory synced.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let aside = path.with_extension("tmp");
    let mut file = std::fs::File::create(&aside)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&aside, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
