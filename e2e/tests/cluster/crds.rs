//! The CRDs both ways a user installs them: `kubectl apply --server-side -f crds/` (the
//! GitOps path) must be accepted by the API server (structural schema, CEL cost budget) and
//! become Established; then, with those removed, `helm install` of the chart creates its
//! own copy and runs the operator as the chart's Deployment, under the chart's RBAC.
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

async fn wait_established(suite: &Suite, present: bool) {
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
            ok &= if present { established } else { crd.is_none() };
        }
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "CRDs not {} after 60 s", if present { "Established" } else { "gone" });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn install(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let out =
            suite.kubectl(&["apply", "--server-side", "-f", "crds/"]).expect("kubectl apply --server-side -f crds/");
        assert_eq!(out.lines().count(), 3, "{out}");
        wait_established(&suite, true).await;
        // The schema the API server now serves explains the fields, as `kubectl explain` shows.
        // (The OpenAPI document is published a moment after the CRD is Established.)
        let deadline = Instant::now() + Duration::from_secs(60);
        let explain = loop {
            match suite.kubectl(&["explain", "transportservice.spec.receiveConnectors.remoteIPRanges"]) {
                Ok(text) => break text,
                Err(e) if Instant::now() > deadline => panic!("{e:#}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        assert!(explain.contains("remoteIPRanges <[]string>"), "{explain}");
        suite.kubectl(&["delete", "-f", "crds/"]).expect("kubectl delete -f crds/");
        wait_established(&suite, false).await;

        let out = suite.install_operator(&[]).expect("helm install");
        assert!(out.contains("STATUS: deployed"), "{out}");
        wait_established(&suite, true).await;
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
    }
    .boxed()
}
