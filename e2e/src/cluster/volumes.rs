//! A pod's volumes on this machine, as the kubelet lays them out: ConfigMap, Secret,
//! projected (ServiceAccount token from the TokenRequest API, `kube-root-ca.crt`, the
//! namespace) and downwardAPI volumes written the kubelet's atomic way (the files in a
//! timestamped folder, `..data` pointing at it, each key a symlink through `..data`; an
//! update writes a new folder and swaps `..data` with one rename), emptyDir folders, and
//! PersistentVolumeClaims resolved through their bound PersistentVolume to its folder.
use super::downward;
use anyhow::{anyhow, bail, Context as _, Result};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
    Volume,
};
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Relative path → (content, mode) of an atomically written volume.
type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// The pod's volumes, by name, and what is needed to keep them current.
pub struct Volumes {
    dir: PathBuf,
    /// Volume name → the folder (or file) bind-mounted for it.
    pub paths: BTreeMap<String, PathBuf>,
    written: BTreeMap<String, Payload>,
    /// When a projected token must be requested again (80% of its lifetime, as the kubelet).
    token_refresh: BTreeMap<String, Instant>,
    tokens: BTreeMap<String, Vec<u8>>,
}

impl Volumes {
    /// Writes every volume of `pod` under `dir` (`<pod folder>/volumes`).
    pub async fn prepare(client: &kube::Client, pod: &Pod, dir: &Path) -> Result<Volumes> {
        let mut v = Volumes {
            dir: dir.to_path_buf(),
            paths: BTreeMap::new(),
            written: BTreeMap::new(),
            token_refresh: BTreeMap::new(),
            tokens: BTreeMap::new(),
        };
        for volume in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
            let path = v.prepare_one(client, pod, volume).await.with_context(|| format!("volume {}", volume.name))?;
            v.paths.insert(volume.name.clone(), path);
        }
        Ok(v)
    }

    /// Rewrites the ConfigMap, Secret, projected and downwardAPI volumes whose content
    /// changed (a new ConfigMap revision, a token near its expiry).
    pub async fn refresh(&mut self, client: &kube::Client, pod: &Pod) -> Result<()> {
        for volume in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
            if self.written.contains_key(&volume.name) {
                let payload =
                    self.payload(client, pod, volume).await.with_context(|| format!("volume {}", volume.name))?;
                self.write(&volume.name, payload)?;
            }
        }
        Ok(())
    }

    async fn prepare_one(&mut self, client: &kube::Client, pod: &Pod, volume: &Volume) -> Result<PathBuf> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        if volume.empty_dir.is_some() {
            let path = self.dir.join("empty-dir").join(&volume.name);
            std::fs::create_dir_all(&path)?;
            return Ok(path);
        }
        if let Some(claim) = &volume.persistent_volume_claim {
            return claim_folder(client, &ns, &claim.claim_name).await;
        }
        if let Some(host) = &volume.host_path {
            return Ok(PathBuf::from(&host.path));
        }
        let payload = self.payload(client, pod, volume).await?;
        self.write(&volume.name, payload)?;
        Ok(self.atomic_dir(&volume.name))
    }

    fn atomic_dir(&self, volume: &str) -> PathBuf {
        self.dir.join("atomic").join(volume)
    }

    /// What an atomically written volume holds now.
    async fn payload(&mut self, client: &kube::Client, pod: &Pod, volume: &Volume) -> Result<Payload> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut payload = Payload::new();
        if let Some(cm) = &volume.config_map {
            let mode = mode(cm.default_mode);
            let source = Projection { name: &cm.name, items: cm.items.as_ref(), optional: cm.optional, mode };
            object_files(client, &ns, source, &mut payload, config_map_data).await?;
        } else if let Some(s) = &volume.secret {
            let name = s.secret_name.clone().context("a secret volume without secretName")?;
            let source =
                Projection { name: &name, items: s.items.as_ref(), optional: s.optional, mode: mode(s.default_mode) };
            object_files(client, &ns, source, &mut payload, secret_data).await?;
        } else if let Some(d) = &volume.downward_api {
            downward_files(pod, d.items.as_ref(), mode(d.default_mode), &mut payload)?;
        } else if let Some(p) = &volume.projected {
            let default = mode(p.default_mode);
            for source in p.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    let source =
                        Projection { name: &cm.name, items: cm.items.as_ref(), optional: cm.optional, mode: default };
                    object_files(client, &ns, source, &mut payload, config_map_data).await?;
                } else if let Some(s) = &source.secret {
                    let source =
                        Projection { name: &s.name, items: s.items.as_ref(), optional: s.optional, mode: default };
                    object_files(client, &ns, source, &mut payload, secret_data).await?;
                } else if let Some(d) = &source.downward_api {
                    downward_files(pod, d.items.as_ref(), default, &mut payload)?;
                } else if let Some(t) = &source.service_account_token {
                    let key = format!("{}/{}", volume.name, t.path);
                    let token = self.token(client, pod, &key, t.audience.clone(), t.expiration_seconds).await?;
                    payload.insert(t.path.clone(), (token, default));
                } else {
                    bail!("a projected source other than configMap, secret, downwardAPI or serviceAccountToken");
                }
            }
        } else {
            bail!("volume type not supported by the e2e kubelet (configMap, secret, projected, downwardAPI, emptyDir, persistentVolumeClaim, hostPath are)");
        }
        Ok(payload)
    }

    /// A ServiceAccount token bound to the pod, requested again at 80% of its lifetime.
    async fn token(
        &mut self,
        client: &kube::Client,
        pod: &Pod,
        key: &str,
        audience: Option<String>,
        expiration: Option<i64>,
    ) -> Result<Vec<u8>> {
        if let (Some(token), Some(at)) = (self.tokens.get(key), self.token_refresh.get(key)) {
            if Instant::now() < *at {
                return Ok(token.clone());
            }
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let sa = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.into_iter().collect(),
                expiration_seconds: Some(expiration.unwrap_or(3600)),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let answer = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .create_token_request(&sa, &PostParams::default(), &request)
            .await
            .with_context(|| format!("TokenRequest for ServiceAccount {ns}/{sa}"))?;
        let status = answer.status.context("a TokenRequest answered without status")?;
        let lifetime = status.expiration_timestamp.0.duration_since(jiff::Timestamp::now()).as_secs_f64().max(10.0);
        self.token_refresh.insert(key.to_string(), Instant::now() + Duration::from_secs_f64(lifetime * 0.8));
        let token = status.token.into_bytes();
        self.tokens.insert(key.to_string(), token.clone());
        Ok(token)
    }

    /// Writes `payload` into the volume's folder when it differs from what is there.
    fn write(&mut self, volume: &str, payload: Payload) -> Result<()> {
        if self.written.get(volume) == Some(&payload) {
            return Ok(());
        }
        write_atomic(&self.atomic_dir(volume), &payload)?;
        self.written.insert(volume.to_string(), payload);
        Ok(())
    }
}

fn mode(m: Option<i32>) -> u32 {
    m.map(|m| m as u32).unwrap_or(0o644)
}

/// The keys (or `items`) of a map as files.
fn map_files<'a>(
    data: impl Iterator<Item = (&'a String, Vec<u8>)>,
    items: Option<&Vec<KeyToPath>>,
    default: u32,
    what: &str,
    payload: &mut Payload,
) -> Result<()> {
    let data: BTreeMap<&String, Vec<u8>> = data.collect();
    match items {
        None => {
            for (k, v) in data {
                payload.insert(k.clone(), (v, default));
            }
        }
        Some(items) => {
            for item in items {
                let v = data.get(&item.key).ok_or_else(|| anyhow!("{what} has no key {}", item.key))?;
                payload.insert(item.path.clone(), (v.clone(), item.mode.map(|m| m as u32).unwrap_or(default)));
            }
        }
    }
    Ok(())
}

/// The keys (or `items`) of the ConfigMap or Secret `ns/name` as files; `data` reads its
/// keys and values. A missing object is an error unless `optional`.
/// One ConfigMap or Secret as a volume or projected source names it.
struct Projection<'a> {
    name: &'a str,
    items: Option<&'a Vec<KeyToPath>>,
    optional: Option<bool>,
    /// File mode when an item names none.
    mode: u32,
}

/// The files of the object `source` names, its entries taken by `data`.
async fn object_files<K>(
    client: &kube::Client,
    ns: &str,
    source: Projection<'_>,
    payload: &mut Payload,
    data: fn(K) -> Vec<(String, Vec<u8>)>,
) -> Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let name = source.name;
    let Some(obj) = Api::<K>::namespaced(client.clone(), ns).get_opt(name).await? else {
        if source.optional == Some(true) {
            return Ok(());
        }
        bail!("{kind} {ns}/{name} not found");
    };
    let entries = data(obj);
    let what = format!("{kind} {name}");
    map_files(entries.iter().map(|(k, v)| (k, v.clone())), source.items, source.mode, &what, payload)
}

fn config_map_data(cm: ConfigMap) -> Vec<(String, Vec<u8>)> {
    let text = cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes()));
    text.chain(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0))).collect()
}

fn secret_data(secret: Secret) -> Vec<(String, Vec<u8>)> {
    let data = secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0));
    data.chain(secret.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes()))).collect()
}

fn downward_files(
    pod: &Pod,
    items: Option<&Vec<DownwardAPIVolumeFile>>,
    default: u32,
    payload: &mut Payload,
) -> Result<()> {
    for item in items.into_iter().flatten() {
        let value = if let Some(f) = &item.field_ref {
            downward::field(pod, f)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            let spec = pod.spec.as_ref().context("no pod spec")?;
            let c =
                spec.containers.iter().find(|c| c.name == name).context("resourceFieldRef of an unknown container")?;
            downward::resource(c, r)?
        } else {
            bail!("a downwardAPI item without fieldRef or resourceFieldRef");
        };
        payload.insert(item.path.clone(), (value.into_bytes(), item.mode.map(|m| m as u32).unwrap_or(default)));
    }
    Ok(())
}

/// The folder of the PersistentVolume bound to claim `ns/name`.
async fn claim_folder(client: &kube::Client, ns: &str, name: &str) -> Result<PathBuf> {
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns).get(name).await?;
    let volume = claim.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty());
    let volume = volume.ok_or_else(|| anyhow!("PersistentVolumeClaim {ns}/{name} is not bound yet"))?;
    let pv = Api::<PersistentVolume>::all(client.clone()).get(&volume).await?;
    let spec = pv.spec.context("a PersistentVolume without spec")?;
    let path = spec.local.map(|l| l.path).or(spec.host_path.map(|h| h.path));
    let path = path.ok_or_else(|| anyhow!("PersistentVolume {volume} is neither local nor hostPath"))?;
    let path = PathBuf::from(path);
    if !path.is_dir() {
        bail!("the folder {} of PersistentVolume {volume} is gone", path.display());
    }
    Ok(path)
}

/// The kubelet's atomic writer: a new `..<timestamp>` folder, `..data` swapped to it with
/// one rename, a symlink per top-level entry through `..data`, the old folder removed.
pub fn write_atomic(dir: &Path, payload: &Payload) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let stamp = format!("..{}", jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S.%f"));
    let fresh = dir.join(&stamp);
    std::fs::create_dir_all(&fresh)?;
    for (path, (content, mode)) in payload {
        if path.split('/').any(|part| part == ".." || part.is_empty()) {
            bail!("a volume path must be relative and stay inside the volume: {path}");
        }
        let file = fresh.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, content)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))?;
    }
    let data = dir.join("..data");
    let old = std::fs::read_link(&data).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, &data)?;
    let top: std::collections::BTreeSet<&str> = payload.keys().filter_map(|p| p.split('/').next()).collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(name.as_str()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_swaps_the_data_link_and_keeps_each_key_readable() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("config");
        let one = Payload::from([("a.yaml".into(), (b"1".to_vec(), 0o644)), ("b.yaml".into(), (b"2".to_vec(), 0o600))]);
        write_atomic(&vol, &one).unwrap();
        assert_eq!(std::fs::read(vol.join("a.yaml")).unwrap(), b"1");
        let first = std::fs::read_link(vol.join("..data")).unwrap();
        assert_eq!(std::fs::read_link(vol.join("a.yaml")).unwrap(), Path::new("..data/a.yaml"));
        std::thread::sleep(Duration::from_millis(2));
        let two = Payload::from([("a.yaml".into(), (b"3".to_vec(), 0o644))]);
        write_atomic(&vol, &two).unwrap();
        assert_eq!(std::fs::read(vol.join("a.yaml")).unwrap(), b"3");
        assert!(std::fs::symlink_metadata(vol.join("b.yaml")).is_err(), "a key gone is gone");
        assert_ne!(std::fs::read_link(vol.join("..data")).unwrap(), first);
        assert!(!vol.join(&first).exists(), "the old folder is removed");
        assert!(write_atomic(&vol, &Payload::from([("../x".into(), (vec![], 0o644))])).is_err());
    }
}
