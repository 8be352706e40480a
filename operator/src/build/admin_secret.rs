//! Secret `<ts>-admin-token`: the bearer token of every server's admin API and the
//! credential the servers present to each other on the shadow channel, as the pods mount
//! them (both are derived by [`crate::token`]; they differ, so a peer cannot administer).
use super::owner_references;
use crate::crd::TransportService;
use crate::names;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

pub fn admin_token_secret(ts: &TransportService, token: &str, shadow_token: &str) -> Secret {
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    Secret {
        metadata: ObjectMeta {
            name: Some(names::admin_secret_name(name)),
            namespace: ts.metadata.namespace.clone(),
            labels: Some(names::service_labels(name)),
            owner_references: owner_references(ts),
            ..Default::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([
            (names::TOKEN_KEY.to_string(), ByteString(token.as_bytes().to_vec())),
            (names::SHADOW_TOKEN_KEY.to_string(), ByteString(shadow_token.as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::service;

    #[test]
    fn secret_holds_the_token_under_key_token_and_the_peer_credential_beside_it() {
        let s = admin_token_secret(&service("mail", 1), "abc", "def");
        assert_eq!(s.metadata.name.as_deref(), Some("mail-admin-token"));
        let data = s.data.clone().unwrap();
        assert_eq!(data["token"].0, b"abc");
        assert_eq!(data["shadow-token"].0, b"def");
        assert_eq!(s.metadata.owner_references.unwrap()[0].controller, Some(true));
    }
}
