//! Configuration reloads: on SIGHUP and whenever the file's content changes
//! (a mounted ConfigMap changes it by swapping a symlink, so the content is
//! compared, not the inode or mtime). Intervals, connectors, limits, accepted
//! domains, components and the ServerState apply at once, without dropping
//! sessions or queued mail; what only a restart can apply (a listener's
//! address, the queue, log or admin location) is reported as
//! `restartRequired`. An invalid file is refused and the old config stays.
//!
//! A receive connector's certificate and key are watched the same way (their
//! content, on the same poll): when cert-manager renews a mounted Secret, new
//! sessions get the new pair; open sessions keep theirs. A new pair that does
//! not load (a key that is not the certificate's, a half-written file) is
//! logged and the old one stays until the files change again.
use super::{read_shadow_token, read_token, session_settings, ServerActivity, Shared};
use crate::config::{TlsFiles, TransportFile};
use crate::queue::manager::RuntimeConfig;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// How often the file is compared with the one in effect.
const POLL: Duration = Duration::from_secs(2);

pub(super) async fn watch(shared: Arc<Shared>, path: PathBuf, mut shutdown: watch::Receiver<bool>) {
    let mut last = std::fs::read_to_string(&path).unwrap_or_default();
    let mut certificates = tls_digests(&shared);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let forced = tokio::select! {
            _ = tokio::time::sleep(POLL) => false,
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
            _ = shutdown.changed() => return,
        };
        reload_certificates(&shared, &mut certificates);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                if forced {
                    warn!(path = %path.display(), error = %e, "cannot read the configuration file; keeping the current one");
                }
                continue;
            }
        };
        if text == last && !forced {
            continue;
        }
        last = text.clone();
        match TransportFile::from_yaml_str(&text) {
            Ok(file) => {
                apply(&shared, file, &text).await;
                // The reload read the files the new config names.
                certificates = tls_digests(&shared);
            }
            Err(errors) => {
                error!(path = %path.display(), %errors, "the changed configuration is invalid; keeping the current one")
            }
        }
    }
}

/// What each receive connector's certificate and key files hold (a digest;
/// `None` while they cannot be read).
type TlsDigests = HashMap<String, Option<[u8; 32]>>;

fn tls_digests(shared: &Shared) -> TlsDigests {
    let file = shared.file.read().unwrap_or_else(|e| e.into_inner());
    file.receive_connectors.iter().filter_map(|c| Some((c.name.clone(), digest(c.tls.as_ref()?)))).collect()
}

fn digest(files: &TlsFiles) -> Option<[u8; 32]> {
    let mut hash = Sha256::new();
    hash.update(std::fs::read(&files.certificate_file).ok()?);
    hash.update(std::fs::read(&files.key_file).ok()?);
    Some(hash.finalize().into())
}

/// New sessions of a connector whose certificate or key changed get the new
/// pair, if it loads; otherwise the old one stays and the log says why.
fn reload_certificates(shared: &Shared, seen: &mut TlsDigests) {
    let now = tls_digests(shared);
    // Unreadable for a moment (a Secret being swapped): wait for the new files.
    let changed: Vec<&String> =
        now.iter().filter(|(name, d)| d.is_some() && seen.get(*name) != Some(d)).map(|(name, _)| name).collect();
    if changed.is_empty() {
        return;
    }
    let file = shared.file.read().unwrap_or_else(|e| e.into_inner()).clone();
    for connector in file.receive_connectors.iter().filter(|c| changed.contains(&&c.name)) {
        seen.insert(connector.name.clone(), now.get(&connector.name).copied().flatten());
        let Some(tx) = shared.sessions.get(&connector.name) else { continue };
        match session_settings(&file, connector, &shared.clock) {
            Ok((s, certificate)) => {
                tx.send_replace(Arc::new(s));
                if let Some(c) = &certificate {
                    shared.admin.certificates.loaded(&connector.name, c, shared.clock.now());
                }
                let file = connector.tls.as_ref().map(|t| t.certificate_file.display().to_string());
                info!(connector = %connector.name, certificate = ?file, "TLS certificate reloaded: new sessions use it");
            }
            Err(e) => {
                error!(connector = %connector.name, error = %e,
                       "the new TLS certificate or key cannot be used; keeping the old one");
                shared.admin.certificates.refused(&connector.name, e.to_string());
            }
        }
    }
}

/// Applies a valid configuration to the running server.
pub(super) async fn apply(shared: &Shared, new: TransportFile, text: &str) {
    let old = shared.file.read().unwrap_or_else(|e| e.into_inner()).clone();
    let runtime = match RuntimeConfig::from_file(&new, shared.manager.mta_sts(), shared.manager.tls_reports()) {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "the changed configuration cannot be applied; keeping the current one");
            return;
        }
    };
    let restart_required = needs_restart(&old, &new);
    if restart_required {
        warn!("the configuration changed in a way only a restart applies (listener, queue, log or admin address)");
    }
    let routing_changed = old.send_connectors != new.send_connectors
        || old.mailbox_delivery != new.mailbox_delivery
        || old.transport_config.accepted_domains != new.transport_config.accepted_domains;
    shared.manager.reload(runtime, routing_changed);
    for connector in &new.receive_connectors {
        let Some(tx) = shared.sessions.get(&connector.name) else { continue };
        if old.receive_connectors.iter().any(|c| c.name == connector.name && c.bind == connector.bind) {
            match session_settings(&new, connector, &shared.clock) {
                Ok((s, certificate)) => {
                    tx.send_replace(Arc::new(s));
                    if let Some(c) = &certificate {
                        shared.admin.certificates.loaded(&connector.name, c, shared.clock.now());
                    }
                }
                Err(e) => {
                    error!(connector = %connector.name, error = %e, "receive connector keeps its old settings");
                    shared.admin.certificates.refused(&connector.name, e.to_string());
                }
            }
        }
    }
    let with_tls: Vec<&str> =
        new.receive_connectors.iter().filter(|c| c.tls.is_some()).map(|c| c.name.as_str()).collect();
    shared.admin.certificates.keep_only(&with_tls);
    shared.control.apply_file_components(&new.components);
    match read_token(&new) {
        Ok(token) => *shared.admin.token.write().unwrap_or_else(|e| e.into_inner()) = token,
        Err(e) => error!(error = %e, "the admin API keeps its old token"),
    }
    match read_shadow_token(&new) {
        Ok(token) => {
            *shared.shadow.write().unwrap_or_else(|e| e.into_inner()) =
                crate::shadow::ShadowConfig::from_file(&new, token)
        }
        Err(e) => error!(error = %e, "shadow redundancy keeps its old settings"),
    }
    {
        let mut status = shared.admin.status.write().unwrap_or_else(|e| e.into_inner());
        status.revision = crate::config::revision(text);
        status.restart_required = restart_required;
    }
    let state_changed = old.server_state != new.server_state;
    let target = new.server_state;
    *shared.file.write().unwrap_or_else(|e| e.into_inner()) = new;
    info!(revision = %crate::config::revision(text), restart_required, "configuration reloaded");
    if state_changed {
        let activity = ServerActivity { telemetry: shared.admin.telemetry.clone(), manager: shared.manager.clone() };
        shared.control.set_server_state(target, &activity).await;
    }
}

/// What the running process cannot change in place.
fn needs_restart(old: &TransportFile, new: &TransportFile) -> bool {
    let binds = |f: &TransportFile| -> Vec<(String, std::net::SocketAddr)> {
        let mut v: Vec<_> = f.receive_connectors.iter().map(|c| (c.name.clone(), c.bind)).collect();
        v.sort();
        v
    };
    binds(old) != binds(new)
        || old.queue_directory != new.queue_directory
        || old.log_directory != new.log_directory
        || old.replay_directory != new.replay_directory
        || old.admin.as_ref().map(|a| a.bind) != new.admin.as_ref().map(|a| a.bind)
        || old.shadow.as_ref().map(|s| s.bind) != new.shadow.as_ref().map(|s| s.bind)
        || old.server_name != new.server_name
}
