//! One control plane per test process, without nodes or scheduler, for tests that call the
//! operator's reconcilers directly against the real API server (`e2e/tests/reconcile`):
//! etcd, kube-apiserver and kube-controller-manager (garbage collection, the PVC
//! protection, the namespace controller) with the operator's CRDs installed. It starts on
//! first use (seconds) and lives as long as the process; its processes die with it.
use super::controlplane::{self, ControlPlane};
use super::network::Slot;
use super::pki::Pki;
use super::TEMP_BASE;
use anyhow::{Context as _, Result};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct SharedControlPlane {
    /// The administrator's kubeconfig.
    pub kubeconfig: PathBuf,
}

/// The process's control plane (started on the first call; a failure to start panics with
/// why, in every test that needs it).
pub fn shared_control_plane() -> &'static SharedControlPlane {
    static PLANE: OnceLock<Result<SharedControlPlane, String>> = OnceLock::new();
    let plane = PLANE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("shared-control-plane".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
                    Ok(r) => r,
                    Err(e) => return drop(tx.send(Err(e.to_string()))),
                };
                runtime.block_on(async move {
                    match start().await {
                        Ok((plane, kubeconfig, slot)) => {
                            let _ = tx.send(Ok(SharedControlPlane { kubeconfig }));
                            // Kept until the process ends (its processes die with it).
                            let _keep = (plane, slot);
                            std::future::pending::<()>().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(format!("{e:#}")));
                        }
                    }
                });
            })
            .expect("a thread for the control plane");
        rx.recv().unwrap_or_else(|_| Err("the control plane thread ended".into()))
    });
    match plane {
        Ok(p) => p,
        Err(e) => panic!("cannot start the control plane: {e}"),
    }
}

async fn start() -> Result<(ControlPlane, PathBuf, Slot)> {
    super::install_crypto_provider();
    let slot = Slot::acquire()?;
    let root = PathBuf::from(TEMP_BASE).join(format!("shared-{}", slot.n));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let ip = slot.control_plane_ip();
    let pki = Pki::create(&root.join("pki"), ip.into(), controlplane::SERVICE_IP.into())?;
    let plane = ControlPlane::start(&root, ip, &pki, false).await?;
    let client = plane.admin_client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for crd in operator::crd::crds() {
        match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("cannot create the operator's CRDs"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for crd in operator::crd::crds() {
        let name = crd.metadata.name.unwrap_or_default();
        loop {
            let established = crds
                .get(&name)
                .await?
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            if established {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "CRD {name} not Established after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let kubeconfig = plane.admin_kubeconfig.clone();
    Ok((plane, kubeconfig, slot))
}
