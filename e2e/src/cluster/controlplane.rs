//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler, built from the Go module
//! proxy by `e2e/controlplane/build.sh` at the release pinned in `e2e/controlplane/VERSION`,
//! started on one loopback address of the cluster's own. The API server runs with RBAC and
//! Node authorization, NodeRestriction, ServiceAccount token signing and an audit log
//! ([`super::audit`]); the controller-manager runs every default controller (garbage
//! collector, namespace, deployment, replicaset, disruption, endpointslice, PV binder, node
//! lifecycle ...) under per-controller ServiceAccounts.
use super::audit;
use super::daemon::{self, Daemon};
use super::pki::{self, Pki};
use anyhow::{bail, Context as _, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The Kubernetes release of the control plane.
pub const VERSION: &str = include_str!("../../controlplane/VERSION").trim_ascii();
/// Port of the API server (on the cluster's own loopback address).
pub const API_PORT: u16 = 6443;
/// The Service ClusterIP range: addresses are only allocated, nothing ever connects to them.
pub const SERVICE_RANGE: &str = "10.96.0.0/16";
/// The `kubernetes` Service's address (the first of the range), in the serving certificate.
pub const SERVICE_IP: [u8; 4] = [10, 96, 0, 1];
/// The issuer of ServiceAccount tokens (what a cluster made by kubeadm uses).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The four binaries, from the cache `build.sh` fills.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub dir: PathBuf,
}

impl Binaries {
    /// `$KUBE_TRANSPORT_CONTROLPLANE`, else `~/.cache/kube-transport/controlplane/<version>`;
    /// built there by `e2e/controlplane/build.sh` when a binary is missing (minutes, once).
    pub fn locate() -> Result<Binaries> {
        let dir = match std::env::var_os("KUBE_TRANSPORT_CONTROLPLANE") {
            Some(d) => PathBuf::from(d),
            None => {
                let home = std::env::var_os("HOME").context("HOME is not set")?;
                Path::new(&home).join(".cache/kube-transport/controlplane").join(VERSION)
            }
        };
        let bins = Binaries { dir };
        if !bins.complete() {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("controlplane/build.sh");
            tracing::warn!(dir = %bins.dir.display(), "building the control plane binaries (minutes, once)");
            let status = Command::new("bash")
                .arg(&script)
                .env("KUBE_TRANSPORT_CONTROLPLANE", &bins.dir)
                .status()
                .with_context(|| format!("cannot run {}", script.display()))?;
            if !status.success() || !bins.complete() {
                bail!(
                    "{} failed ({status}): the real control plane needs Go and the Go module proxy",
                    script.display()
                );
            }
        }
        Ok(bins)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn complete(&self) -> bool {
        ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"].iter().all(|b| self.path(b).is_file())
    }
}

/// The running control plane.
pub struct ControlPlane {
    /// `https://<ip>:6443`.
    pub url: String,
    pub ip: Ipv4Addr,
    /// kubeconfig of the administrator (group `system:masters`): tests, kubectl and helm.
    pub admin_kubeconfig: PathBuf,
    pub audit_log: PathBuf,
    // Dropped in reverse order of start: the controllers, then the API server, then etcd.
    pub daemons: Vec<Daemon>,
}

impl ControlPlane {
    /// Starts the four components under `root` on `ip`, and waits until the API server
    /// answers `/readyz`. Without `scheduler`, pods stay unbound (tests bind them).
    pub async fn start(root: &Path, ip: Ipv4Addr, pki: &Pki, scheduler: bool) -> Result<ControlPlane> {
        let bins = Binaries::locate()?;
        let logs = root.join("logs");
        let url = format!("https://{ip}:{API_PORT}");
        let client_kubeconfig = |name: &str, user: &str, groups: &[&str]| -> Result<PathBuf> {
            let cert = pki.client(name, user, groups)?;
            let path = root.join(format!("{name}.kubeconfig"));
            pki::kubeconfig(&path, &url, &pki.ca_file, &cert, user)?;
            Ok(path)
        };
        let admin_kubeconfig = client_kubeconfig("admin", "kubernetes-admin", &["system:masters"])?;
        let kcm_kubeconfig = client_kubeconfig("controller-manager", "system:kube-controller-manager", &[])?;
        let scheduler_kubeconfig = client_kubeconfig("scheduler", "system:kube-scheduler", &[])?;
        let policy = root.join("audit-policy.yaml");
        std::fs::write(&policy, audit::POLICY)?;
        let audit_log = root.join("audit.log");

        let mut daemons = Vec::new();
        let etcd_dir = root.join("etcd");
        let (client, peer) = (format!("http://{ip}:2379"), format!("http://{ip}:2380"));
        daemons.push(Daemon::spawn(
            "etcd",
            daemon::command(
                bins.path("etcd"),
                [
                    "--name=e2e",
                    &format!("--data-dir={}", etcd_dir.display()),
                    &format!("--listen-client-urls={client}"),
                    &format!("--advertise-client-urls={client}"),
                    &format!("--listen-peer-urls={peer}"),
                    &format!("--initial-advertise-peer-urls={peer}"),
                    &format!("--initial-cluster=e2e={peer}"),
                    // Test data: durability against power loss is not what is tested here.
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
            ),
            &logs,
        )?);

        let file = |p: &Path| p.display().to_string();
        daemons.push(Daemon::spawn(
            "kube-apiserver",
            daemon::command(
                bins.path("kube-apiserver"),
                [
                    format!("--etcd-servers={client}"),
                    format!("--bind-address={ip}"),
                    format!("--advertise-address={ip}"),
                    format!("--secure-port={API_PORT}"),
                    format!("--tls-cert-file={}", file(&pki.serving.cert)),
                    format!("--tls-private-key-file={}", file(&pki.serving.key)),
                    format!("--client-ca-file={}", file(&pki.ca_file)),
                    format!("--service-account-issuer={ISSUER}"),
                    format!("--service-account-key-file={}", file(&pki.service_account_pub)),
                    format!("--service-account-signing-key-file={}", file(&pki.service_account_key)),
                    "--authorization-mode=Node,RBAC".into(),
                    "--enable-admission-plugins=NodeRestriction".into(),
                    format!("--service-cluster-ip-range={SERVICE_RANGE}"),
                    format!("--audit-policy-file={}", file(&policy)),
                    format!("--audit-log-path={}", file(&audit_log)),
                    "--audit-log-format=json".into(),
                    // Each entry is written before the request returns: a test reads what it just did.
                    "--audit-log-mode=blocking".into(),
                    "--profiling=false".into(),
                    "--v=1".into(),
                ],
            ),
            &logs,
        )?);
        let mut plane = ControlPlane { url, ip, admin_kubeconfig, audit_log, daemons };
        plane.wait_ready().await?;

        let common = |kubeconfig: &Path, port: u16| {
            vec![
                format!("--kubeconfig={}", file(kubeconfig)),
                format!("--authentication-kubeconfig={}", file(kubeconfig)),
                format!("--authorization-kubeconfig={}", file(kubeconfig)),
                format!("--bind-address={ip}"),
                format!("--secure-port={port}"),
                "--leader-elect=false".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ]
        };
        let mut kcm_args = common(&kcm_kubeconfig, 10257);
        kcm_args.extend([
            format!("--service-account-private-key-file={}", file(&pki.service_account_key)),
            format!("--root-ca-file={}", file(&pki.ca_file)),
            "--use-service-account-credentials=true".into(),
            "--cluster-name=e2e".into(),
        ]);
        plane.daemons.push(Daemon::spawn(
            "kube-controller-manager",
            daemon::command(bins.path("kube-controller-manager"), kcm_args),
            &logs,
        )?);
        if scheduler {
            plane.daemons.push(Daemon::spawn(
                "kube-scheduler",
                daemon::command(bins.path("kube-scheduler"), common(&scheduler_kubeconfig, 10259)),
                &logs,
            )?);
        }
        Ok(plane)
    }

    /// A client with the administrator's certificate.
    pub async fn admin_client(&self) -> Result<kube::Client> {
        client_from(&self.admin_kubeconfig).await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let client = self.admin_client().await?;
        loop {
            let request = http::Request::get("/readyz").body(Vec::new())?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                outcome => {
                    for d in &mut self.daemons {
                        if let Some(status) = d.exited() {
                            bail!("{} exited ({status}):\n{}", d.name, d.log_tail(30));
                        }
                    }
                    if Instant::now() > deadline {
                        bail!("the API server is not ready after 120 s ({outcome:?})");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A component that exited, with the end of its log.
    pub fn failed(&mut self) -> Option<String> {
        self.daemons
            .iter_mut()
            .find_map(|d| d.exited().map(|s| format!("{} exited ({s}):\n{}", d.name, d.log_tail(30))))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        while let Some(mut d) = self.daemons.pop() {
            d.stop(Duration::from_secs(5));
        }
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}
