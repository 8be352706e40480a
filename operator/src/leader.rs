//! Leader election on a coordination.k8s.io Lease, for more than one replica: a replica
//! runs the controllers only while it holds the Lease. A leader that cannot renew stops
//! (exits) before its Lease can have expired in the others' eyes, so two replicas never act
//! at once, even when one is cut off from the API server and cannot learn it lost.
use kube_leader_election::{LeaseLock, LeaseLockResult};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the Lease holds without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often the leader renews it (and a standby tries to take it).
pub const LEASE_RENEW: Duration = Duration::from_secs(5);

/// The leader must stop acting: its last renewal is so old that the Lease may expire
/// before the next attempt could renew it (another replica may take it then).
pub fn must_stop(since_renewal: Duration) -> bool {
    since_renewal + LEASE_RENEW >= LEASE_TTL
}

/// Waits until this replica holds the Lease.
pub async fn acquire(lock: &LeaseLock) {
    loop {
        match tokio::time::timeout(LEASE_RENEW, lock.try_acquire_or_renew()).await {
            Ok(Ok(LeaseLockResult::Acquired(_))) => return,
            Ok(Ok(LeaseLockResult::NotAcquired(_))) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot take the lease"),
            Err(_) => tracing::warn!("no answer to taking the lease"),
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

/// Renews the Lease every [`LEASE_RENEW`] until the process ends; exits the process when
/// another replica holds it, or when renewals failed for so long that one might.
pub fn keep(lock: Arc<LeaseLock>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(LEASE_RENEW).await;
            match tokio::time::timeout(LEASE_RENEW, lock.try_acquire_or_renew()).await {
                Ok(Ok(LeaseLockResult::Acquired(_))) => renewed = Instant::now(),
                Ok(Ok(LeaseLockResult::NotAcquired(_))) => {
                    tracing::error!("another replica holds the lease; exiting");
                    std::process::exit(1);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the lease"),
                Err(_) => tracing::warn!("no answer to renewing the lease"),
            }
            if must_stop(renewed.elapsed()) {
                tracing::error!(since = ?renewed.elapsed(), "the lease could not be renewed in time; exiting before another replica takes it");
                std::process::exit(1);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_stops_before_its_lease_can_expire() {
        assert!(!must_stop(Duration::ZERO));
        assert!(!must_stop(LEASE_RENEW), "one missed renewal is tolerated");
        assert!(must_stop(LEASE_TTL - LEASE_RENEW), "the next attempt would come too late");
        assert!(must_stop(LEASE_TTL));
    }
}
