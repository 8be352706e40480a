//! Bad input gets a clear error and nothing is lost: the API server refuses what the CRD
//! schema and its CEL rules refuse, with the field and the rule's message; what only the
//! operator can check is a `Ready=False` condition `InvalidSpec` naming the field, with a
//! Warning Event (its note cut to the API server's 1024 bytes, even in a language whose
//! letters take two bytes), nothing applied; the corrected spec then runs.
use e2e::scenario::flow::{condition, mail_service, wait_service_ready};
use e2e::scenario::sink::Sink;
use e2e::scenario::Suite;
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use operator::crd::{TransportConfig, TransportService};
use std::sync::Arc;
use std::time::Duration;

fn service(name: &str, ranges: &str, port: u16) -> String {
    format!(
        "apiVersion: kubetransport.io/v1alpha1\nkind: TransportService\nmetadata: {{name: {name}}}\n\
         spec:\n  receiveConnectors: [{{name: Default, port: {port}, remoteIPRanges: [{ranges}]}}]\n"
    )
}

pub fn refused_with_the_field(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("invalid").await.expect("namespace");
        // The API server: a CIDR CEL rule, the name rule, nothing stored.
        let err = env.apply_yaml(&service("mail", "\"10.0.0.0/33\"", 2525)).unwrap_err().to_string();
        assert!(
            err.contains("spec.receiveConnectors[0].remoteIPRanges[0]") && err.contains("must be an address range"),
            "{err}"
        );
        let long = "m".repeat(51);
        let err = env.apply_yaml(&service(&long, "\"10.0.0.0/8\"", 2525)).unwrap_err().to_string();
        assert!(err.contains("at most 50 characters"), "{err}");
        let base = service("mail", "\"10.0.0.0/8\"", 2525);
        for (bad, expected) in [
            (service("mail", "\"10.0.0.0/8\"", 0).replace("port: 0", "port: 70000"), "spec.receiveConnectors[0].port"),
            (format!("{base}  role: Hub\n"), "spec.role: Unsupported value: \"Hub\""),
            (format!("{base}  retry: {{queueGlitchRetryCount: 16}}\n"), "spec.retry.queueGlitchRetryCount"),
            (format!("{base}  retry: {{messageRetryInterval: 15 minutes}}\n"), "spec.retry.messageRetryInterval"),
            (base.replace("receiveConnectors", "recieveConnectors"), "unknown field \"spec.recieveConnectors\""),
            // A send connector's TLS settings that need another one (CEL rules with fieldPath).
            (
                format!(
                    "{base}  sendConnectors: [{{name: Relay, addressSpaces: [{{domain: \"*\"}}], smartHosts: [\"relay.example.com:25\"], mtaSts: AsPublished}}]\n"
                ),
                "spec.sendConnectors[0].mtaSts: Invalid value: \"object\": mtaSts is only used with dnsRouting: true",
            ),
            (
                format!(
                    "{base}  sendConnectors: [{{name: Internet, addressSpaces: [{{domain: \"*\"}}], dnsRouting: true, tlsAuthLevel: DomainValidation}}]\n"
                ),
                "spec.sendConnectors[0].tlsAuthLevel: Invalid value: \"object\": tlsAuthLevel checks the next hop's certificate, so it needs TLS",
            ),
            (
                format!(
                    "{base}  sendConnectors: [{{name: Relay, addressSpaces: [{{domain: \"*\"}}], smartHosts: [\"relay.example.com:25\"], dane: AsPublished}}]\n"
                ),
                "spec.sendConnectors[0].dane: Invalid value: \"object\": dane is only used with dnsRouting: true",
            ),
        ] {
            let err = env.apply_yaml(&bad).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in: {err}");
        }
        assert!(env.api::<TransportService>().list(&ListParams::default()).await.unwrap().items.is_empty());

        // The operator: a postmaster that is no address, long and not ASCII.
        let postmaster = "pöstmästér".repeat(120);
        env.apply_yaml(&format!(
            "apiVersion: kubetransport.io/v1alpha1\nkind: TransportConfig\nmetadata: {{name: default}}\nspec: {{postmaster: \"{postmaster}\"}}\n"
        ))
        .unwrap();
        env.wait_for(Duration::from_secs(60), "TransportConfig default InvalidSpec naming postmaster", || async {
            let tc = env.api::<TransportConfig>().get("default").await.map_err(|e| e.to_string())?;
            let ready = tc.status.as_ref().and_then(|s| condition(&s.conditions, "Ready").cloned()).ok_or("no Ready")?;
            if ready.status == "False" && ready.reason == "InvalidSpec" && ready.message.contains("postmaster") {
                Ok(())
            } else {
                Err(format!("{} {}", ready.reason, ready.message))
            }
        })
        .await;
        let event = env
            .wait_for(Duration::from_secs(30), "a Warning Event InvalidSpec about it", || async {
                let events = env.api::<Event>().list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
                events
                    .into_iter()
                    .find(|e| e.reason.as_deref() == Some("InvalidSpec") && e.type_.as_deref() == Some("Warning"))
                    .ok_or_else(|| "none yet".to_string())
            })
            .await;
        let note = event.note.unwrap_or_default();
        assert!(note.len() <= 1024 && note.ends_with('…') && note.contains("postmaster"), "{} bytes: {note}", note.len());

        // A schema-valid spec the operator refuses: a receive connector on the admin port.
        let sink = Sink::start(env.cluster()).expect("smtp-sink");
        env.apply_yaml("apiVersion: kubetransport.io/v1alpha1\nkind: TransportConfig\nmetadata: {name: default}\nspec: {postmaster: postmaster@example.com}\n").unwrap();
        let mut ts = mail_service("mail", 2, sink.addr, serde_json::json!({}));
        ts.spec.receive_connectors[0].port = 8025;
        env.apply(&ts).await.unwrap();
        let ready = env
            .wait_for(Duration::from_secs(60), "mail InvalidSpec naming the port", || async {
                let ts = env.service("mail").await.map_err(|e| e.to_string())?;
                let ready = ts.status.as_ref().and_then(|s| condition(&s.conditions, "Ready").cloned()).ok_or("no Ready")?;
                if ready.reason == "InvalidSpec" { Ok(ready) } else { Err(ready.reason) }
            })
            .await;
        assert!(ready.message.contains("spec.receiveConnectors[0].port"), "{}", ready.message);
        assert!(env.pod_names().await.unwrap().is_empty(), "nothing applied");
        // Corrected: it runs.
        ts.spec.receive_connectors[0].port = 2525;
        env.apply(&ts).await.unwrap();
        wait_service_ready(&env, "mail", 2).await;
        env.finish().await.unwrap();
    }
    .boxed()
}
