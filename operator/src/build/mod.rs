//! Pure builders of everything a TransportService is made of (no I/O): the rendered
//! configuration of each server, the ConfigMap, the admin token Secret, the Services, and
//! per server a Pod and its queue PVC. Every object carries a controller owner reference
//! to the TransportService, so Kubernetes deletes it with the TransportService.
pub mod admin_secret;
pub mod config_file;
pub mod config_map;
pub mod disruption_budget;
pub mod pod;
pub mod services;

pub use admin_secret::admin_token_secret;
pub use config_file::{component_states, rendered, requester_wish, transport_file, RenderedServer};
pub use config_map::config_map;
pub use disruption_budget::disruption_budget;
pub use pod::{queue_pvc, restart_hash, server_pod, server_pod_spec};
pub use services::{headless_service, smtp_service};

use crate::crd::TransportService;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

/// The controller owner reference to `ts` (absent only for an object without a uid, which
/// the API server never returns).
/// The TransportService as controller owner: its children go with it (garbage collection).
/// Without blockOwnerDeletion, which would need update rights on the service's finalizers
/// (OwnerReferencesPermissionEnforcement) for a foreground deletion nobody asks for.
pub fn owner_references(ts: &TransportService) -> Option<Vec<OwnerReference>> {
    ts.controller_owner_ref(&()).map(|o| vec![OwnerReference { block_owner_deletion: None, ..o }])
}

#[cfg(test)]
pub(crate) mod tests {
    //! Fixtures shared by the builder and reconciler tests.
    use crate::crd::{
        ReceiveConnectorSpec, ServerComponentState, ServerComponentStateSpec, TransportService, TransportServiceRef,
        TransportServiceSpec,
    };
    use kube::api::ObjectMeta;
    use transport::config::{
        AcceptedDomain, AcceptedDomainType, AddressSpace, Component, ComponentState, OrgSettings, Requester,
        SendConnector,
    };

    /// A TransportService `name` in namespace `prod` with one receive connector (Default,
    /// 2525) and one smart-host send connector.
    pub fn service(name: &str, servers: u32) -> TransportService {
        let mut ts = TransportService::new(
            name,
            TransportServiceSpec {
                servers: Some(servers),
                receive_connectors: vec![ReceiveConnectorSpec {
                    name: "Default".into(),
                    port: 2525,
                    ..Default::default()
                }],
                send_connectors: vec![SendConnector {
                    name: "Outbound".into(),
                    address_spaces: vec![AddressSpace { domain: "*".into(), cost: None }],
                    smart_hosts: vec!["relay.example.net:25".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        ts.metadata.namespace = Some("prod".into());
        ts.metadata.uid = Some(format!("uid-{name}"));
        ts.metadata.generation = Some(1);
        ts
    }

    pub fn org() -> OrgSettings {
        OrgSettings {
            accepted_domains: vec![AcceptedDomain {
                domain: "example.com".into(),
                domain_type: AcceptedDomainType::Authoritative,
            }],
            postmaster: Some("postmaster@example.com".into()),
            ..Default::default()
        }
    }

    pub fn scs(
        name: &str,
        service: &str,
        server: &str,
        component: Component,
        requester: Requester,
        state: ComponentState,
    ) -> ServerComponentState {
        ServerComponentState {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("prod".into()), ..Default::default() },
            spec: ServerComponentStateSpec {
                server: server.into(),
                transport_service_ref: TransportServiceRef { name: service.into() },
                component,
                requester,
                state,
                redirect_to: None,
            },
            status: None,
        }
    }
}
