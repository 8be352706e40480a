//! Server-side apply of children with one field manager (force), writing only when the
//! object in the cluster does not already hold what would be applied. That comparison is
//! what makes a reconcile that finds nothing new write nothing (and it also holds against
//! API servers whose apply is a plain merge).
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Debug;

/// What [`ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// Whether `existing` already holds every field of `desired` (fields the server adds, such
/// as defaults, status and managedFields, do not matter). Lists must have the same length
/// and hold their items in the same order; a `null` in `desired` means absent.
pub fn contains(existing: &Value, desired: &Value) -> bool {
    match (existing, desired) {
        (_, Value::Null) => existing.is_null(),
        (Value::Object(e), Value::Object(d)) => d.iter().all(|(k, dv)| contains(e.get(k).unwrap_or(&Value::Null), dv)),
        (Value::Array(e), Value::Array(d)) => e.len() == d.len() && e.iter().zip(d).all(|(ev, dv)| contains(ev, dv)),
        (e, d) => e == d,
    }
}

/// Applies `desired` (server-side apply, `force`) unless the object already holds it.
pub async fn ensure<K>(api: &Api<K>, desired: &K, field_manager: &str) -> Result<(Outcome, K), kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    let wanted = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
    let existing = api.get_opt(&name).await?;
    if let Some(existing) = &existing {
        let current = serde_json::to_value(existing).map_err(kube::Error::SerdeError)?;
        if contains(&current, &wanted) {
            return Ok((Outcome::Unchanged, existing.clone()));
        }
    }
    let applied = api.patch(&name, &PatchParams::apply(field_manager).force(), &Patch::Apply(&wanted)).await?;
    Ok((if existing.is_some() { Outcome::Updated } else { Outcome::Created }, applied))
}

/// Creates `desired` (server-side apply) only when no object of that name exists; an
/// existing one is left alone (pods are replaced by the roller, PVCs and the token are
/// never rewritten).
pub async fn create_if_missing<K>(api: &Api<K>, desired: &K, field_manager: &str) -> Result<(Outcome, K), kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    if let Some(existing) = api.get_opt(&name).await? {
        return Ok((Outcome::Unchanged, existing));
    }
    let created = api.patch(&name, &PatchParams::apply(field_manager).force(), &Patch::Apply(desired)).await?;
    Ok((Outcome::Created, created))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_added_by_the_server_do_not_count() {
        let existing = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "y": "2"}},
                              "spec": {"ports": [{"port": 25, "protocol": "TCP", "targetPort": 25}], "clusterIP": "10.0.0.1"}});
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"ports": [{"port": 25}]}});
        assert!(contains(&existing, &desired));
    }

    #[test]
    fn a_changed_value_or_list_length_counts() {
        let existing = json!({"data": {"a": "1"}, "ports": [{"port": 25}]});
        assert!(!contains(&existing, &json!({"data": {"a": "2"}})));
        assert!(!contains(&existing, &json!({"data": {"b": "1"}})));
        assert!(!contains(&existing, &json!({"ports": [{"port": 25}, {"port": 587}]})));
        assert!(!contains(&existing, &json!({"ports": []})));
        assert!(contains(&existing, &json!({"data": {"c": null}})));
        assert!(!contains(&existing, &json!({"data": {"a": null}})));
    }
}
