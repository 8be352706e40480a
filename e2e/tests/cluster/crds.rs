//! The CRDs both ways a user installs them: `kubectl apply --server-side -f crds/` (the
//! GitOps path) must be accepted by the API server (structural schema, CEL cost budget),
//! and `helm install` of the chart creates its copy, which becomes Established, and runs
//! the operator as the chart's Deployment, under the chart's RBAC.
use e2e::scenario::{Suite, OPERATOR_NS};
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CRDS: [&str; 3] = [
    "transportservices.kubetransport.io",
    "transportconfigs.kubetransport.io",
    "servercomponentstates.kubetransport.io",
];

async fn wait_established(suite: &Suite) {
    let api: Api<CustomResourceDefinition> = Api::all(suite.cluster.client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ok = true;
        for name in CRDS {
            let crd = api.get_opt(name).await.expect("get CRD");
            let established = crd
                .as_ref()
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            ok &= established;
        }
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "CRDs not Established after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn install(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        // The GitOps path: the API server runs its whole create path (structural schema,
        // CEL cost budget, admission) on crds/ without storing them. (Storing and deleting
        // them again can leave the delete waiting minutes on the API server's cleanup.)
        let out = suite
            .kubectl(&["apply", "--server-side", "--dry-run=server", "-f", "crds/"])
            .expect("kubectl apply --server-side --dry-run=server -f crds/");
        assert_eq!(out.lines().filter(|l| l.contains("serverside-applied (server dry run)")).count(), 3, "{out}");

        // The chart's copy (byte for byte crds/, checked by the chart tests), for real, with
        // the operator.
        let out = suite.install_operator(&[]).expect("helm install");
        assert!(out.contains("STATUS: deployed"), "{out}");
        wait_established(&suite).await;
        let pods = suite
            .kubectl(&[
                "get",
                "pods",
                "-n",
                OPERATOR_NS,
                "-o",
                "jsonpath={.items[*].status.containerStatuses[*].ready}",
            ])
            .unwrap();
        assert_eq!(pods.trim(), "true", "the operator's pod is Ready after helm install --wait");
        // The schema the API server now serves explains the fields, as `kubectl explain` shows
        // (the OpenAPI document is published a moment after the CRD is Established).
        let deadline = Instant::now() + Duration::from_secs(60);
        let explain = loop {
            match suite.kubectl(&["explain", "transportservice.spec.receiveConnectors.remoteIPRanges"]) {
                Ok(text) => break text,
                Err(e) if Instant::now() > deadline => panic!("{e:#}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        assert!(explain.contains("remoteIPRanges <[]string>"), "{explain}");
    }
    .boxed()
}
