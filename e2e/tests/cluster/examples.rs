//! `examples/` as examples/README.md tells a user to use it: the Edge example's TLS Secret
//! made with openssl, `kubectl apply --server-side -f examples/` (TransportConfig `default`,
//! TransportServices `mail` and `edge`), every server Ready and Started; then the
//! maintenance example drains mail-1 to mail-0, and deleting it ends the maintenance.
use e2e::scenario::flow::{condition, wait_component_state, wait_pod_ready, wait_service_ready};
use e2e::scenario::Suite;
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;
use transport::config::ComponentState;

pub fn as_documented(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("examples").await.expect("namespace");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("edge.crt"), dir.path().join("edge.key"));
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj", "/CN=mx.example.com"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian package openssl)");
        assert!(status.success());
        env.kubectl(&[
            "create",
            "secret",
            "tls",
            "edge-tls",
            &format!("--cert={}", cert.display()),
            &format!("--key={}", key.display()),
        ])
        .unwrap();

        let out = env.kubectl(&["apply", "--server-side", "-f", "examples/"]).expect("kubectl apply -f examples/");
        for object in [
            "transportconfig.kubetransport.io/default",
            "transportservice.kubetransport.io/mail",
            "transportservice.kubetransport.io/edge",
        ] {
            assert!(out.contains(object), "{out}");
        }
        assert!(!out.contains("servercomponentstate"), "maintenance is a separate step: {out}");
        wait_service_ready(&env, "mail", 3).await;
        let edge = wait_service_ready(&env, "edge", 2).await;
        assert_eq!(edge.status.unwrap().server_state.as_deref(), Some("Started"));
        env.kubectl(&["wait", "ts", "--all", "--for=condition=Ready", "--timeout=60s"]).unwrap();
        // The Edge servers answer with the example's FQDN and offer STARTTLS with the Secret's certificate.
        let pod = env.pod("edge-0").await.unwrap().unwrap();
        let ip = pod.status.and_then(|s| s.pod_ip).unwrap();
        let (mut c, banner) = testkit::AsyncSmtpClient::connect(format!("{ip}:25").parse().unwrap()).await.unwrap();
        assert!(banner.starts_with("220") && banner.contains("mx.example.com"), "{banner}");
        let ehlo = c.cmd("EHLO client.e2e.test").await.unwrap();
        assert!(ehlo.contains("STARTTLS"), "{ehlo}");

        // Maintenance, as the example's comment says.
        env.kubectl(&["apply", "--server-side", "-f", "examples/maintenance/"]).unwrap();
        let status = wait_component_state(&env, "mail-1-maintenance", "mail-1 drained to mail-0", |s| {
            condition(&s.conditions, "Drained").is_some_and(|c| c.status == "True")
                && condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
        assert_eq!(status.effective_state, Some(ComponentState::Draining));
        env.kubectl(&["wait", "scs/mail-1-maintenance", "--for=condition=Drained", "--timeout=60s"]).unwrap();
        wait_pod_ready(&env, "mail-1", false).await;
        env.kubectl(&["delete", "-f", "examples/maintenance/"]).unwrap();
        wait_pod_ready(&env, "mail-1", true).await;
        wait_service_ready(&env, "mail", 3).await;
        env.finish().await.unwrap();
    }
    .boxed()
}
