//! Services of a TransportService: `<ts>` for SMTP clients (ready pods only) and
//! `<ts>-headless` that gives every pod its DNS name, ready or not.
use super::owner_references;
use crate::crd::TransportService;
use crate::names;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;

/// A Service port that targets the container port of the same name: while a port change
/// rolls the servers, each pod is reached on the port it listens on (old or new).
fn port(name: String, port: u16) -> ServicePort {
    ServicePort {
        target_port: Some(IntOrString::String(name.clone())),
        name: Some(name),
        port: i32::from(port),
        protocol: Some("TCP".to_string()),
        ..Default::default()
    }
}

/// The receive connectors' ports, named `smtp-<i>` in spec order.
fn smtp_ports(ts: &TransportService) -> Vec<ServicePort> {
    ts.spec.receive_connectors.iter().enumerate().map(|(i, c)| port(names::smtp_port_name(i), c.port)).collect()
}

/// `<ts>`: the SMTP ports of the receive connectors, to Ready pods only (a drained or
/// paused server fails readiness and stops getting connections). None when the service
/// has no receive connector: a ClusterIP Service needs at least one port.
pub fn smtp_service(ts: &TransportService) -> Option<Service> {
    let ports = smtp_ports(ts);
    if ports.is_empty() {
        return None;
    }
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    Some(Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: ts.metadata.namespace.clone(),
            labels: Some(names::service_labels(name)),
            owner_references: owner_references(ts),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(names::pod_selector(name)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// `<ts>-headless`: DNS names `<server>.<ts>-headless.<ns>.svc` for every pod, published
/// before they are ready (servers find each other through it while draining).
pub fn headless_service(ts: &TransportService) -> Service {
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    let mut ports = smtp_ports(ts);
    ports.push(port(names::INTRA_PORT_NAME.to_string(), ts.spec.intra_port()));
    ports.push(port(names::ADMIN_PORT_NAME.to_string(), names::ADMIN_PORT));
    ports.push(port(names::SHADOW_PORT_NAME.to_string(), names::SHADOW_PORT));
    Service {
        metadata: ObjectMeta {
            name: Some(names::headless_service_name(name)),
            namespace: ts.metadata.namespace.clone(),
            labels: Some(names::service_labels(name)),
            owner_references: owner_references(ts),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names::pod_selector(name)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::service;
    use crate::crd::ReceiveConnectorSpec;

    fn ports(s: &Service) -> Vec<(String, i32)> {
        s.spec.as_ref().unwrap().ports.iter().flatten().map(|p| (p.name.clone().unwrap(), p.port)).collect()
    }

    #[test]
    fn smtp_service_exposes_the_receive_connectors_to_ready_pods() {
        let mut ts = service("mail", 2);
        ts.spec.receive_connectors.push(ReceiveConnectorSpec {
            name: "Submission".into(),
            port: 587,
            ..Default::default()
        });
        let svc = smtp_service(&ts).unwrap();
        assert_eq!(svc.metadata.name.as_deref(), Some("mail"));
        assert_eq!(ports(&svc), vec![("smtp-0".into(), 2525), ("smtp-1".into(), 587)]);
        let spec = svc.spec.unwrap();
        assert_eq!(spec.selector.unwrap(), names::pod_selector("mail"));
        assert_eq!(spec.publish_not_ready_addresses, None, "only ready pods get SMTP clients");
    }

    #[test]
    fn no_smtp_service_without_receive_connectors() {
        let mut ts = service("mail", 1);
        ts.spec.receive_connectors.clear();
        assert!(smtp_service(&ts).is_none());
    }

    #[test]
    fn headless_service_publishes_not_ready_pods_with_intra_admin_and_shadow() {
        let svc = headless_service(&service("mail", 2));
        assert_eq!(svc.metadata.name.as_deref(), Some("mail-headless"));
        assert_eq!(
            ports(&svc),
            vec![("smtp-0".into(), 2525), ("intra".into(), 2527), ("admin".into(), 8025), ("shadow".into(), 2528)]
        );
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
    }
}
