//! Policies as fetched, one per domain with its id and expiry, kept across restarts in
//! one small JSON file under the queue directory (`mta-sts-policies.json`). A restart
//! must not forget a policy: after one, an attacker who strips the TXT record or blocks
//! the policy host would otherwise get the mail in clear (RFC 8461 §5.1, §10.2).
//!
//! The file keeps each policy's text as fetched, parsed again by the one parser when it
//! is read; expired entries are dropped when it is written. It is replaced whole
//! (written aside, synced, renamed): a crash leaves the old file or the new one.
use super::policy::Policy;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::warn;

/// The cache file's name in the queue directory.
pub const FILE: &str = "mta-sts-policies.json";
const FORMAT: u32 = 1;

/// A domain's policy as the last successful fetch gave it.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The TXT record's id it was fetched for.
    pub id: String,
    pub policy: Arc<Policy>,
    /// The body as fetched (what the file keeps).
    pub text: String,
    /// Milliseconds since the epoch on the server's clock: fetch time + max_age.
    pub expires_ms: u64,
}

impl Cached {
    /// §5.1: a policy applies until max_age seconds after its fetch.
    pub fn fresh(&self, now_ms: u64) -> bool {
        now_ms < self.expires_ms
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredFile {
    format: u32,
    policies: BTreeMap<String, Stored>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    id: String,
    expires_ms: u64,
    policy: String,
}

/// The policies of every domain, in memory, and where they are kept.
pub struct Cache {
    path: PathBuf,
    entries: HashMap<String, Cached>,
}

impl Cache {
    /// Reads the file in `dir`. A file that cannot be read or parsed costs the policies
    /// it held (logged), never the start of the server.
    pub fn load(dir: &Path) -> Cache {
        let path = dir.join(FILE);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).unwrap_or_else(|e| {
                warn!(path = %path.display(), error = %e, "MTA-STS: the policy cache cannot be read; starting empty");
                HashMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "MTA-STS: the policy cache cannot be read; starting empty");
                HashMap::new()
            }
        };
        Cache { path, entries }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The domain's policy, expired or not.
    pub fn get(&self, domain: &str) -> Option<&Cached> {
        self.entries.get(domain)
    }

    pub fn put(&mut self, domain: &str, cached: Cached) {
        self.entries.insert(domain.to_string(), cached);
    }

    /// (domain, id) of the policies still fresh at `now_ms` with less than half their
    /// max_age left: those a background refresh fetches again.
    pub fn due_for_refresh(&self, now_ms: u64) -> Vec<(String, String)> {
        let mut due: Vec<(String, String)> = self
            .entries
            .iter()
            .filter(|(_, c)| c.fresh(now_ms) && c.expires_ms - now_ms < c.policy.max_age.saturating_mul(500))
            .map(|(domain, c)| (domain.clone(), c.id.clone()))
            .collect();
        due.sort();
        due
    }

    /// The file's content now: every policy still fresh at `now_ms` (the others go).
    pub fn snapshot(&mut self, now_ms: u64) -> Vec<u8> {
        self.entries.retain(|_, c| c.fresh(now_ms));
        let policies = self
            .entries
            .iter()
            .map(|(domain, c)| {
                let stored = Stored { id: c.id.clone(), expires_ms: c.expires_ms, policy: c.text.clone() };
                (domain.clone(), stored)
            })
            .collect();
        serde_json::to_vec_pretty(&StoredFile { format: FORMAT, policies }).unwrap_or_default()
    }
}

/// The entries of a file; one whose policy no longer parses is left out (logged).
fn decode(bytes: &[u8]) -> Result<HashMap<String, Cached>, String> {
    let file: StoredFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.format != FORMAT {
        return Err(format!("format {} is not {FORMAT}", file.format));
    }
    let mut entries = HashMap::new();
    for (domain, stored) in file.policies {
        match Policy::parse(&stored.policy) {
            Ok(policy) => {
                let cached = Cached {
                    id: stored.id,
                    policy: Arc::new(policy),
                    text: stored.policy,
                    expires_ms: stored.expires_ms,
                };
                entries.insert(domain, cached);
            }
            Err(e) => warn!(%domain, error = %e, "MTA-STS: a cached policy does not parse; dropped"),
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 600\n";

    fn cached(id: &str, expires_ms: u64) -> Cached {
        Cached { id: id.into(), policy: Arc::new(Policy::parse(TEXT).unwrap()), text: TEXT.into(), expires_ms }
    }

    #[test]
    fn policies_survive_a_reload_and_expired_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::load(dir.path());
        assert!(cache.get("example.com").is_none());
        cache.put("example.com", cached("a1", 2_000));
        cache.put("old.example", cached("b1", 1_000));
        let bytes = cache.snapshot(1_500);
        crate::durable_file::replace(cache.path(), &bytes).unwrap();

        let again = Cache::load(dir.path());
        let kept = again.get("example.com").expect("kept");
        assert_eq!((kept.id.as_str(), kept.expires_ms, kept.text.as_str()), ("a1", 2_000, TEXT));
        assert_eq!(kept.policy.mx_list(), "mx.example.com");
        assert!(kept.fresh(1_999) && !kept.fresh(2_000));
        assert!(again.get("old.example").is_none(), "expired when written");
    }

    #[test]
    fn policies_past_half_their_max_age_are_due_for_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::load(dir.path());
        // max_age 600 s: fetched at 0, expires at 600,000 ms, due from 300,000 ms.
        cache.put("b.example", cached("b1", 600_000));
        cache.put("a.example", cached("a1", 700_000));
        assert!(cache.due_for_refresh(299_999).is_empty());
        assert_eq!(cache.due_for_refresh(300_001), [("b.example".to_string(), "b1".to_string())]);
        assert_eq!(cache.due_for_refresh(400_001).len(), 2);
        assert_eq!(
            cache.due_for_refresh(650_000),
            [("a.example".to_string(), "a1".to_string())],
            "expired: not refreshed"
        );
    }

    #[test]
    fn a_damaged_file_costs_its_policies_not_the_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(Cache::load(dir.path()).get("example.com").is_none());
        let bad_policy = r#"{"format":1,"policies":{"a.test":{"id":"1","expiresMs":9,"policy":"mode: x"},
            "b.test":{"id":"2","expiresMs":9,"policy":"version: STSv1\nmode: none\nmax_age: 1\n"}}}"#;
        std::fs::write(dir.path().join(FILE), bad_policy).unwrap();
        let cache = Cache::load(dir.path());
        assert!(cache.get("a.test").is_none());
        assert_eq!(cache.get("b.test").map(|c| c.id.as_str()), Some("2"));
    }
}
