//! The admin API token of each TransportService, derived from one operator key: HMAC-SHA256
//! of the key and the service's namespace, name and uid. The operator writes the Secret
//! `<ts>-admin-token` for the servers' pods to mount and computes the token wherever it
//! needs it, so it never reads a Secret of a user's namespace (its RBAC has no `get` on
//! Secrets there). The key lives in one Secret of the operator's own namespace, created by
//! the operator on its first start and kept across upgrades and reinstalls, so tokens are
//! stable (they are never rotated, as before).
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Key in the key Secret.
const KEY_FIELD: &str = "key";
/// Bytes of a new key.
const KEY_LEN: usize = 32;

#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A new random key (the operating system's CSPRNG through `rand`).
    pub fn random() -> TokenKey {
        let mut key = vec![0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        TokenKey(key)
    }

    /// The token of the TransportService `namespace/name` with `uid` (64 hex digits).
    pub fn token(&self, namespace: &str, name: &str, uid: &str) -> String {
        hmac_sha256(&self.0, format!("{namespace}/{name}/{uid}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The key from Secret `namespace/name`, created with a random key when there is none.
    pub async fn load_or_create(client: kube::Client, namespace: &str, name: &str) -> Result<TokenKey, kube::Error> {
        let api: Api<Secret> = Api::namespaced(client, namespace);
        for _ in 0..3 {
            if let Some(secret) = api.get_opt(name).await? {
                if let Some(key) = secret.data.as_ref().and_then(|d| d.get(KEY_FIELD)).filter(|k| !k.0.is_empty()) {
                    return Ok(TokenKey(key.0.clone()));
                }
                tracing::warn!(secret = %name, "the token key Secret has no key; tokens use a key of this process only");
                return Ok(TokenKey::random());
            }
            let key = TokenKey::random();
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(namespace.to_string()),
                    labels: Some(BTreeMap::from([(
                        crate::names::LABEL_NAME.to_string(),
                        crate::names::APP_NAME.to_string(),
                    )])),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                data: Some(BTreeMap::from([(KEY_FIELD.to_string(), ByteString(key.0.clone()))])),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => return Ok(key),
                // Another replica created it first: read theirs.
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        api.get(name)
            .await
            .map(|s| TokenKey(s.data.and_then(|d| d.get(KEY_FIELD).map(|k| k.0.clone())).unwrap_or_default()))
    }
}

/// HMAC-SHA256 (RFC 2104). Written out over `sha2`, which the workspace already has: the
/// construction is ten lines and the `hmac` crate is not among the project's dependencies.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231_vectors() {
        // Test case 2 and test case 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn tokens_differ_per_service_and_per_key_and_stay_the_same_otherwise() {
        let key = TokenKey(b"k".to_vec());
        let a = key.token("prod", "mail", "u1");
        assert_eq!(a.len(), 64);
        assert_eq!(a, key.token("prod", "mail", "u1"));
        assert_ne!(a, key.token("prod", "mail", "u2"), "a service created again gets a new token");
        assert_ne!(a, key.token("test", "mail", "u1"));
        assert_ne!(a, TokenKey(b"other".to_vec()).token("prod", "mail", "u1"));
        assert_ne!(TokenKey::random().0, TokenKey::random().0);
    }
}
