//! The background refresh of cached MTA-STS policies (RFC 8461 §10.2), on the server's
//! clock: every hour, each policy past half its max_age is fetched again
//! (`MtaSts::refresh`), with the CA bundle of the send connector that routes to its domain.
use super::QueueManager;
use crate::routing::Route;
use std::path::PathBuf;
use std::time::Duration;
use tracing::Instrument;

const EVERY: Duration = Duration::from_secs(3600);

impl QueueManager {
    pub async fn refresh_mta_sts_forever(self) {
        loop {
            let wake = self.inner.clock.now() + EVERY;
            self.inner.clock.sleep_until(wake).await;
            let config = self.config();
            let roots = |domain: &str| self.connector_roots(domain);
            config.mta_sts.refresh(&config.resolver, roots).instrument(tracing::info_span!("mta_sts_refresh")).await;
        }
    }

    /// The CA bundle (`tlsCertificateAuthorities`) of the send connector that routes mail
    /// to `domain`, if it names one: what the domain's HTTPS hosts are checked against.
    pub(super) fn connector_roots(&self, domain: &str) -> Option<PathBuf> {
        let config = self.config();
        let Route::Hop(hop) = config.router.route(domain) else { return None };
        let connector = config.router.connector(hop.connector.as_deref()?)?;
        connector.tls_certificate_authorities.clone()
    }
}
