//! GitOps: `kubectl apply --server-side -k examples/gitops/base` (what Argo CD and Flux do),
//! then the same again changes nothing: no `metadata.generation` moves, `kubectl diff
//! --server-side` (Argo CD's ServerSideDiff) finds no difference once the operator has
//! written its status, and nothing the operator made is written again. The maintenance
//! overlay applied from Git drains mail-1; deleting it ends the maintenance.
use e2e::scenario::flow::{condition, wait_component_state, wait_service_ready};
use e2e::scenario::Suite;
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::api::ListParams;
use kube::ResourceExt;
use operator::crd::{TransportConfig, TransportService};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const BASE: &str = "examples/gitops/base";
const OVERLAY: &str = "examples/gitops/overlays/maintenance-mail-1";

pub fn apply_twice_changes_nothing(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("mail").await.expect("namespace");
        suite.kubectl(&["apply", "--server-side", "-k", BASE]).expect("kubectl apply -k base");
        wait_service_ready(&env, "mail", 3).await;

        let versions = || async {
            let mut v: BTreeMap<String, String> = BTreeMap::new();
            let ts = env.api::<TransportService>().get("mail").await.unwrap();
            let tc = env.api::<TransportConfig>().get("default").await.unwrap();
            v.insert("ts generation".into(), format!("{:?}", ts.metadata.generation));
            v.insert("tc generation".into(), format!("{:?}", tc.metadata.generation));
            let cm = env.api::<ConfigMap>().get("mail-config").await.unwrap();
            v.insert("configmap".into(), cm.resource_version().unwrap_or_default());
            for p in env.api::<Pod>().list(&ListParams::default()).await.unwrap().items {
                v.insert(format!("pod {} uid", p.name_any()), p.uid().unwrap_or_default());
            }
            for p in env.api::<PersistentVolumeClaim>().list(&ListParams::default()).await.unwrap().items {
                v.insert(format!("pvc {}", p.name_any()), p.uid().unwrap_or_default());
            }
            for s in env.api::<Service>().list(&ListParams::default()).await.unwrap().items {
                v.insert(format!("service {}", s.name_any()), s.resource_version().unwrap_or_default());
            }
            v
        };
        let before = versions().await;
        // Argo CD's server-side diff of the unchanged commit: nothing to sync.
        let diff = suite.kubectl(&["diff", "--server-side", "-k", BASE]);
        assert!(diff.is_ok(), "kubectl diff --server-side found a difference: {diff:?}");
        suite.kubectl(&["apply", "--server-side", "-k", BASE]).expect("second apply");
        tokio::time::sleep(Duration::from_secs(10)).await;
        wait_service_ready(&env, "mail", 3).await;
        assert_eq!(versions().await, before, "the second apply changed something");

        // Maintenance from Git.
        suite.kubectl(&["apply", "--server-side", "-k", OVERLAY]).expect("kubectl apply -k overlay");
        let name = env.kubectl(&["get", "scs", "-o", "jsonpath={.items[0].metadata.name}"]).unwrap();
        wait_component_state(&env, &name, "mail-1 drained", |s| {
            condition(&s.conditions, "Drained").is_some_and(|c| c.status == "True")
        })
        .await;
        suite.kubectl(&["delete", "scs", "-n", "mail", &name]).unwrap();
        wait_service_ready(&env, "mail", 3).await;
        env.finish().await.unwrap();
    }
    .boxed()
}
