//! ConfigMap `<ts>-config`: one key `<server>.yaml` per server, and per server an
//! annotation `config.kubetransport.io/<server>` with the revision of its file.
use super::{config_file::RenderedServer, owner_references};
use crate::crd::TransportService;
use crate::names;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

pub fn config_map(ts: &TransportService, servers: &[RenderedServer]) -> ConfigMap {
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    let data: BTreeMap<String, String> = servers.iter().map(|s| (names::config_key(&s.name), s.text.clone())).collect();
    let annotations: BTreeMap<String, String> =
        servers.iter().map(|s| (names::config_revision_annotation(&s.name), s.revision.clone())).collect();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(names::config_map_name(name)),
            namespace: ts.metadata.namespace.clone(),
            labels: Some(names::service_labels(name)),
            annotations: Some(annotations),
            owner_references: owner_references(ts),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::config_file::{rendered, transport_file};
    use crate::build::tests::{org, service};

    #[test]
    fn one_key_and_one_revision_annotation_per_server() {
        let ts = service("mail", 2);
        let servers: Vec<_> = (0..2)
            .map(|i| rendered(i, transport_file(&ts, "prod", i, &org(), Default::default(), &[]).unwrap()).unwrap())
            .collect();
        let cm = config_map(&ts, &servers);
        assert_eq!(cm.metadata.name.as_deref(), Some("mail-config"));
        let data = cm.data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), vec!["mail-0.yaml", "mail-1.yaml"]);
        assert_eq!(data["mail-1.yaml"], servers[1].text);
        let ann = cm.metadata.annotations.unwrap();
        assert_eq!(ann["config.kubetransport.io/mail-0"], transport::config::revision(&data["mail-0.yaml"]));
        assert_eq!(ann["config.kubetransport.io/mail-1"], servers[1].revision);
        let owner = &cm.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("TransportService", "mail", Some(true))
        );
    }
}
