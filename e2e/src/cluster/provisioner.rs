//! Storage, as local-path-provisioner provides it on small clusters: the default
//! StorageClass `local-path` (WaitForFirstConsumer), and a provisioner that, for each claim
//! the scheduler has picked a node for (`volume.kubernetes.io/selected-node`), creates a
//! `local` PersistentVolume backed by a folder of that node, pinned to it by node affinity;
//! the PV controller of kube-controller-manager binds them. A Released volume of class
//! `local-path` is deleted with its folder (reclaimPolicy Delete): deleting a claim deletes
//! its data, as on a cloud disk.
use anyhow::Result;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

pub const CLASS: &str = "local-path";
pub const PROVISIONER: &str = "kube-transport.dev/local-path";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// Creates the StorageClass (default class of the cluster).
pub async fn install(client: &kube::Client) -> Result<()> {
    let class: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    }))?;
    match Api::<StorageClass>::all(client.clone()).create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The folder of the volume of claim `uid` on `node`.
pub fn folder(root: &std::path::Path, node: &str, pv: &str) -> PathBuf {
    root.join("nodes").join(node).join("volumes").join(pv)
}

/// Provisions and deletes volumes every 300 ms, until dropped.
pub async fn run(client: kube::Client, root: PathBuf) {
    loop {
        if let Err(e) = pass(&client, &root).await {
            tracing::warn!(error = %e, "local-path provisioner");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn pass(client: &kube::Client, root: &std::path::Path) -> Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for claim in claims.list(&ListParams::default()).await?.items {
        let spec = claim.spec.clone().unwrap_or_default();
        let class = spec.storage_class_name.as_deref().unwrap_or(CLASS);
        let bound = spec.volume_name.as_deref().is_some_and(|v| !v.is_empty());
        let Some(node) = claim.annotations().get(SELECTED_NODE).cloned() else { continue };
        if class != CLASS || bound || claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = format!("pvc-{}", claim.uid().unwrap_or_default());
        let dir = folder(root, &node, &name);
        std::fs::create_dir_all(&dir)?;
        let size = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
        let pv: PersistentVolume = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
            "spec": {
                "capacity": {"storage": size.map(|q| q.0).unwrap_or_else(|| "1Gi".into())},
                "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": CLASS,
                "volumeMode": "Filesystem",
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": claim.namespace(), "name": claim.name_any(), "uid": claim.uid()},
                "local": {"path": dir.display().to_string()},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                ]}]}},
            },
        }))?;
        match volumes.create(&PostParams::default(), &pv).await {
            Ok(_) => tracing::info!(claim = %claim.name_any(), %node, volume = %name, "provisioned"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for pv in volumes.list(&ListParams::default()).await?.items {
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let ours = pv.annotations().get("pv.kubernetes.io/provisioned-by").map(String::as_str) == Some(PROVISIONER);
        if !released || !ours || pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(path) = pv.spec.as_ref().and_then(|s| s.local.as_ref()).map(|l| PathBuf::from(&l.path)) {
            let _ = std::fs::remove_dir_all(path);
        }
        match volumes.delete(&pv.name_any(), &DeleteParams::default()).await {
            Ok(_) => tracing::info!(volume = %pv.name_any(), "deleted a released volume"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
