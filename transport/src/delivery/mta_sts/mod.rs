//! MTA-STS (RFC 8461) for DNS-routed send connectors: a recipient domain publishes a
//! TXT record `_mta-sts.<domain>` and a policy at `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! saying which MX hosts are its own and whether mail to it must go over TLS with a valid
//! certificate. docs/design.md §5 has the behaviour, RELIABILITY.md what is proven.
//!
//! - [`record`], [`policy`]: the TXT record and the policy file, parsed strictly (pure)
//! - `fetch`: the HTTPS fetch of a policy
//! - `cache`: policies per domain with id and expiry, persisted under the queue directory
//! - [`enforce`]: what a policy means for one delivery attempt
//!
//! [`MtaSts`] owns the cache and the rules of §3.3 and §5.1 (when to fetch, when a cached
//! policy still applies); the server creates one and the queue side reaches it through
//! its `RuntimeConfig`, as the resolver.
mod cache;
pub mod enforce;
mod fetch;
pub mod policy;
pub mod record;

pub use cache::FILE as CACHE_FILE;
pub use enforce::Enforcement;
pub use policy::{Mode, MxPattern, Policy, PolicyError};
pub use record::{Record, RecordError};

use crate::clock::{to_millis, SharedClock};
use crate::config::{MtaStsMode, SendConnector};
use crate::durable_file;
use crate::routing::mx::Resolver;
use crate::routing::{DeliveryType, NextHop};
use cache::{Cache, Cached};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::{debug, info, warn, Instrument};

/// Why a published policy could not be had; RFC 8460 §4.3.2.2 reports the three apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchFailureKind {
    /// The policy host cannot be reached, or does not answer 200 with text/plain.
    Fetch,
    /// The policy does not parse.
    Invalid,
    /// The policy host's certificate does not pass.
    WebPki,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    pub kind: FetchFailureKind,
    pub reason: String,
}

impl FetchFailure {
    fn of(error: &fetch::FetchError) -> FetchFailure {
        let kind = match error {
            fetch::FetchError::Certificate { .. } => FetchFailureKind::WebPki,
            _ => FetchFailureKind::Fetch,
        };
        FetchFailure { kind, reason: error.to_string() }
    }
}

/// §3.3: after a failed fetch, the same policy id is not fetched again for this long.
const FETCH_BACKOFF_MS: u64 = 5 * 60 * 1000;

/// What a domain's policy is now.
enum Found {
    Policy(Arc<Policy>),
    /// No policy published (or MTA-STS does not apply).
    Nothing,
    /// A policy is published and could not be had.
    Unavailable(FetchFailure),
}

/// The policies of recipient domains, as this server knows them.
pub struct MtaSts {
    clock: SharedClock,
    /// Where the test hook's port file is looked for (the queue directory).
    #[cfg(feature = "test-hooks")]
    dir: PathBuf,
    cache: Mutex<Cache>,
    /// Domain → (id, not before, why): fetches that failed, not tried again before then.
    failed: Mutex<HashMap<String, (String, u64, FetchFailure)>>,
    /// Writes of the cache file, one at a time and in order.
    writing: tokio::sync::Mutex<()>,
}

/// Test hook (feature `test-hooks`): while this file in the queue directory holds a port
/// number, policies are fetched from that port instead of 443 (a test cannot serve HTTPS
/// on 443). Without the feature: always 443.
#[cfg(feature = "test-hooks")]
pub const PORT_FLAG: &str = "test-hook-mta-sts-port";

impl MtaSts {
    /// The policies cached in `queue_dir` (none when there are none, or they cannot be read).
    pub fn open(queue_dir: &Path, clock: SharedClock) -> MtaSts {
        MtaSts {
            clock,
            #[cfg(feature = "test-hooks")]
            dir: queue_dir.to_path_buf(),
            cache: Mutex::new(Cache::load(queue_dir)),
            failed: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// What MTA-STS asks of an attempt to deliver to `hop` through `connector`: nothing
    /// unless the connector routes by MX with `mtaSts` on and the domain has a policy
    /// (mode `none` included) that is live or still cached.
    pub async fn enforcement(
        &self,
        resolver: &Resolver,
        hop: &NextHop,
        connector: Option<&SendConnector>,
    ) -> Enforcement {
        let Some(connector) = connector else { return Enforcement::none() };
        if hop.delivery_type != DeliveryType::DnsConnectorDelivery
            || connector.mta_sts_or_default() == MtaStsMode::Disabled
        {
            return Enforcement::none();
        }
        let domain = hop.next_hop_domain.trim().trim_end_matches('.').to_ascii_lowercase();
        // A domain literal has no DNS to publish a policy in.
        if domain.is_empty() || domain.starts_with('[') {
            return Enforcement::none();
        }
        let roots = connector.tls_certificate_authorities.as_deref();
        let span = tracing::info_span!("mta_sts", %domain);
        match self.policy(resolver, &domain, roots).instrument(span).await {
            Found::Policy(policy) => Enforcement::new(&domain, policy, connector),
            Found::Nothing => Enforcement::none(),
            Found::Unavailable(failure) => Enforcement::unavailable(&domain, failure),
        }
    }

    /// The policy of `domain` now (§3, §5.1): the cached one while its id is the one
    /// published and it has not expired; else a fetch; a cached unexpired policy also when
    /// no live one can be had (no valid TXT record, a DNS failure, a failed fetch).
    /// A policy published but not fetched, with none cached, is `Unavailable`.
    async fn policy(&self, resolver: &Resolver, domain: &str, roots: Option<&Path>) -> Found {
        let now = to_millis(self.clock.now());
        let cached = self.lock_cache().get(domain).filter(|c| c.fresh(now)).cloned();
        let cached_or = |otherwise: Found| cached.as_ref().map_or(otherwise, |c| Found::Policy(c.policy.clone()));
        let record = match resolver.txt(&format!("_mta-sts.{domain}")).await {
            Ok(texts) => record::discover(&texts),
            Err(e) => {
                debug!(error = %e, "MTA-STS: TXT lookup failed");
                return cached_or(Found::Nothing);
            }
        };
        let record = match record {
            Ok(record) => record,
            Err(RecordError::None(_)) => return cached_or(Found::Nothing),
            Err(e) => {
                warn!(%domain, error = %e, "MTA-STS: the TXT record cannot be used");
                return cached_or(Found::Nothing);
            }
        };
        if let Some(c) = cached.as_ref().filter(|c| c.id == record.id) {
            return Found::Policy(c.policy.clone());
        }
        if let Some(failure) = self.backing_off(domain, &record.id, now) {
            return cached_or(Found::Unavailable(failure));
        }
        match self.fetch(resolver, domain, &record.id, roots, now).await {
            Ok(policy) => Found::Policy(policy),
            Err(failure) => {
                let keeping = if cached.is_some() { "the cached policy applies" } else { "no policy applies" };
                warn!(%domain, id = %record.id, error = %failure.reason, "MTA-STS: the policy cannot be fetched; {keeping}");
                let until = now + FETCH_BACKOFF_MS;
                self.lock_failed().insert(domain.to_string(), (record.id, until, failure.clone()));
                cached_or(Found::Unavailable(failure))
            }
        }
    }

    /// Fetches the policy of `domain` published under `id` and caches it for its max_age
    /// from `now`; `Err` says why there is none (the cache is left as it was).
    async fn fetch(
        &self,
        resolver: &Resolver,
        domain: &str,
        id: &str,
        roots: Option<&Path>,
        now: u64,
    ) -> Result<Arc<Policy>, FetchFailure> {
        let text = fetch::fetch(resolver, domain, roots, self.https_port()).await.map_err(|e| FetchFailure::of(&e))?;
        let policy = Policy::parse(&text).map_err(|e| FetchFailure {
            kind: FetchFailureKind::Invalid,
            reason: format!("the policy of {domain} is not valid: {e}"),
        })?;
        info!(%id, mode = policy.mode.as_str(), max_age = policy.max_age, mx = %policy.mx_list(), "MTA-STS policy fetched");
        let policy = Arc::new(policy);
        let expires_ms = now.saturating_add(policy.max_age.saturating_mul(1000));
        let entry = Cached { id: id.to_string(), policy: policy.clone(), text, expires_ms };
        self.lock_cache().put(domain, entry);
        self.lock_failed().remove(domain);
        self.save().await;
        Ok(policy)
    }

    /// §10.2: fetches again every cached policy past half its max_age, so that a policy
    /// host unreachable when the policy would expire (an attacker's doing, or an outage)
    /// does not leave the domain without one. A policy that cannot be fetched stays until
    /// it expires; the next refresh tries again. `roots` gives each domain's CA bundle.
    pub async fn refresh(&self, resolver: &Resolver, roots: impl Fn(&str) -> Option<PathBuf>) {
        let now = to_millis(self.clock.now());
        let due = self.lock_cache().due_for_refresh(now);
        for (domain, cached_id) in due {
            let span = tracing::info_span!("mta_sts_refresh", %domain);
            async {
                // The id published now, if a valid record says; the cached one otherwise.
                let id = match resolver.txt(&format!("_mta-sts.{domain}")).await.map(|t| record::discover(&t)) {
                    Ok(Ok(record)) => record.id,
                    _ => cached_id,
                };
                let roots = roots(&domain);
                if let Err(failure) = self.fetch(resolver, &domain, &id, roots.as_deref(), now).await {
                    warn!(error = %failure.reason, "MTA-STS: the policy cannot be refreshed; the cached one applies until it expires");
                }
            }
            .instrument(span)
            .await;
        }
    }

    /// A fetch of this id failed a moment ago: why.
    fn backing_off(&self, domain: &str, id: &str, now: u64) -> Option<FetchFailure> {
        let mut failed = self.lock_failed();
        failed.retain(|_, (_, until, _)| *until > now);
        failed.get(domain).filter(|(failed_id, _, _)| failed_id == id).map(|(_, _, failure)| failure.clone())
    }

    /// Writes the cache file (off the async threads); a failure is logged and costs
    /// only the policies' survival of a restart.
    async fn save(&self) {
        let _turn = self.writing.lock().await;
        let now = to_millis(self.clock.now());
        let (path, bytes) = {
            let mut cache = self.lock_cache();
            (cache.path().to_path_buf(), cache.snapshot(now))
        };
        let written =
            tokio::task::spawn_blocking(move || durable_file::replace(&path, &bytes).map_err(|e| (path, e))).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err((path, e))) => warn!(path = %path.display(), error = %e, "MTA-STS: cannot write the policy cache"),
            Err(e) => warn!(error = %e, "MTA-STS: writing the policy cache failed"),
        }
    }

    fn https_port(&self) -> u16 {
        #[cfg(feature = "test-hooks")]
        if let Some(port) = std::fs::read_to_string(self.dir.join(PORT_FLAG)).ok().and_then(|t| t.trim().parse().ok()) {
            return port;
        }
        fetch::HTTPS_PORT
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_failed(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, u64, FetchFailure)>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }
}
