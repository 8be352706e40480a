//! Server component states as Set-ServerComponentState keeps them: one wish
//! per (component, requester) with the time it was made. The combined state of
//! a component is the strongest wish (Inactive over Draining over Active), and
//! ServerWideOffline Inactive makes every component Inactive. Only the requester
//! that set Inactive can clear it, because clearing means replacing its own wish.
use crate::api::{ComponentInfo, RequesterState};
use crate::clock::{from_millis, rfc3339, to_millis};
use crate::config::{Component, ComponentState, Requester};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Wish {
    state: ComponentState,
    since_ms: u64,
}

/// Every requester's wish for every component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentTable {
    wishes: BTreeMap<Component, BTreeMap<Requester, Wish>>,
}

impl ComponentTable {
    /// Reads `components.json`; a missing or unreadable file is an empty table
    /// (an unreadable one is logged: it is better to start Active than not at all).
    pub fn load(path: &Path) -> ComponentTable {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable component states");
                ComponentTable::default()
            }),
            Err(_) => ComponentTable::default(),
        }
    }

    /// Writes `components.json`, replaced whole (crate::durable_file).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::durable_file::replace(path, &bytes)
    }

    pub fn set(&mut self, component: Component, requester: Requester, state: ComponentState, at: SystemTime) {
        self.wishes.entry(component).or_default().insert(requester, Wish { state, since_ms: to_millis(at) });
    }

    /// Applies the config file's entries; returns whether anything changed.
    pub fn apply_file(
        &mut self,
        file: &BTreeMap<Component, BTreeMap<Requester, ComponentState>>,
        at: SystemTime,
    ) -> bool {
        let mut changed = false;
        for (component, requesters) in file {
            for (requester, state) in requesters {
                let current = self.wishes.get(component).and_then(|r| r.get(requester)).map(|w| w.state);
                if current != Some(*state) {
                    self.set(*component, *requester, *state, at);
                    changed = true;
                }
            }
        }
        changed
    }

    /// The strongest wish for the component alone.
    fn own(&self, component: Component) -> ComponentState {
        ComponentState::strongest(self.wishes.get(&component).into_iter().flat_map(|r| r.values().map(|w| w.state)))
    }

    /// The combined state, ServerWideOffline Inactive included (the rule lives in the
    /// config module so that the operator applies the same one).
    pub fn effective(&self, component: Component) -> ComponentState {
        crate::config::combined_component_state(component, |c| self.own(c))
    }

    pub fn infos(&self) -> Vec<ComponentInfo> {
        Component::ALL
            .into_iter()
            .map(|component| ComponentInfo {
                component,
                state: self.effective(component),
                requesters: self
                    .wishes
                    .get(&component)
                    .map(|r| {
                        r.iter()
                            .map(|(requester, w)| RequesterState {
                                requester: *requester,
                                state: w.state,
                                since: rfc3339(from_millis(w.since_ms)),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn inactive_wins_then_draining_then_active() {
        let mut t = ComponentTable::default();
        assert_eq!(t.effective(Component::HubTransport), ComponentState::Active);
        t.set(Component::HubTransport, Requester::Functional, ComponentState::Draining, UNIX_EPOCH);
        t.set(Component::HubTransport, Requester::Deployment, ComponentState::Active, UNIX_EPOCH);
        assert_eq!(t.effective(Component::HubTransport), ComponentState::Draining);
        t.set(Component::HubTransport, Requester::Maintenance, ComponentState::Inactive, UNIX_EPOCH);
        assert_eq!(t.effective(Component::HubTransport), ComponentState::Inactive);
        // Another requester setting Active does not clear Maintenance's Inactive.
        t.set(Component::HubTransport, Requester::Functional, ComponentState::Active, UNIX_EPOCH);
        assert_eq!(t.effective(Component::HubTransport), ComponentState::Inactive);
        t.set(Component::HubTransport, Requester::Maintenance, ComponentState::Active, UNIX_EPOCH);
        assert_eq!(t.effective(Component::HubTransport), ComponentState::Active);
    }

    #[test]
    fn server_wide_offline_takes_every_component_down() {
        let mut t = ComponentTable::default();
        t.set(Component::ServerWideOffline, Requester::Maintenance, ComponentState::Inactive, UNIX_EPOCH);
        assert_eq!(t.effective(Component::HubTransport), ComponentState::Inactive);
        assert_eq!(t.effective(Component::FrontendTransport), ComponentState::Inactive);
        let hub = t.infos().into_iter().find(|i| i.component == Component::HubTransport).unwrap();
        assert_eq!(hub.state, ComponentState::Inactive);
        assert!(hub.requesters.is_empty(), "HubTransport itself has no wish");
    }

    #[test]
    fn file_entries_apply_and_report_changes() {
        let mut t = ComponentTable::default();
        let mut file = BTreeMap::new();
        file.insert(Component::HubTransport, BTreeMap::from([(Requester::Maintenance, ComponentState::Draining)]));
        assert!(t.apply_file(&file, UNIX_EPOCH));
        assert!(!t.apply_file(&file, UNIX_EPOCH), "same entries again change nothing");
        assert_eq!(t.effective(Component::HubTransport), ComponentState::Draining);
    }

    #[test]
    fn saved_table_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("components.json");
        let mut t = ComponentTable::default();
        t.set(Component::FrontendTransport, Requester::HealthApi, ComponentState::Inactive, UNIX_EPOCH);
        t.save(&path).unwrap();
        assert_eq!(ComponentTable::load(&path), t);
        std::fs::write(&path, b"{ not json").unwrap();
        assert_eq!(ComponentTable::load(&path), ComponentTable::default());
    }
}
