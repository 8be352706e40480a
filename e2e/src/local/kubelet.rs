//! The harness's kubelet: runs each Pod the operator creates as a real `transport` process.
//!
//! Every tick it lists the Pods; a new one gets a loopback address of its own, its file
//! (the ConfigMap key its `--config` argument names, moved by [`PodLayout`]), its token
//! (from the Secret) and a process; status gets `podIP`, phase `Running` and the `Ready`
//! condition from the process's `/readyz`. A changed ConfigMap rewrites the file (the
//! server reloads by content). A Pod that is gone, or replaced (another uid), has its
//! process stopped: SIGTERM, then SIGKILL after a grace period; a replacement starts only
//! once the old process is gone (it holds the queue, as a volume attached to one node).
//! A process that exits on its own is started again (restartPolicy Always).
use super::layout::{transport_binary, PodLayout};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use operator::names;
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long a stopped process gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(20);
/// How often the kubelet looks at the Pods.
const TICK: Duration = Duration::from_millis(200);

/// One running pod.
struct Process {
    uid: String,
    layout: PodLayout,
    /// `<ts>`: its ConfigMap is `<ts>-config`, its Secret `<ts>-admin-token`.
    service: String,
    /// The ConfigMap key its `--config` names.
    key: String,
    child: Child,
    log: PathBuf,
    /// The file last written.
    text: String,
    /// What status says now (`None`: not reported yet).
    reported: Option<bool>,
}

/// Pids of every process the kubelet started and has not seen exit (killed on drop).
pub type Pids = Arc<Mutex<HashMap<u32, String>>>;

pub struct Kubelet {
    client: kube::Client,
    ns: String,
    root: PathBuf,
    /// `a.b.c` of the /24 the pods get addresses from.
    net: [u8; 3],
    next_host: u8,
    procs: HashMap<String, Process>,
    /// Old processes being stopped, by pod name.
    stopping: HashMap<String, JoinHandle<()>>,
    pids: Pids,
}

impl Kubelet {
    pub fn new(client: kube::Client, ns: &str, root: &Path, net: [u8; 3], pids: Pids) -> Kubelet {
        Kubelet {
            client,
            ns: ns.to_string(),
            root: root.to_path_buf(),
            net,
            next_host: 2,
            procs: HashMap::new(),
            stopping: HashMap::new(),
            pids,
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(mut self) {
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "kubelet tick");
            }
            tokio::time::sleep(TICK).await;
        }
    }

    async fn tick(&mut self) -> Result<(), kube::Error> {
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let selector = format!("{}={}", names::LABEL_NAME, names::APP_NAME);
        let pods: HashMap<String, Pod> = pods_api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .map(|p| (p.name_any(), p))
            .collect();

        // Gone or replaced: stop.
        let gone: Vec<String> = self
            .procs
            .iter()
            .filter(|(name, p)| pods.get(*name).is_none_or(|pod| pod.uid().as_deref() != Some(p.uid.as_str())))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(p) = self.procs.remove(&name) {
                let pids = self.pids.clone();
                self.stopping.insert(name, tokio::spawn(stop(p, pids)));
            }
        }
        self.stopping.retain(|_, h| !h.is_finished());

        for (name, pod) in &pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if !self.procs.contains_key(name) && !self.stopping.contains_key(name) {
                match self.start(pod).await {
                    Ok(p) => {
                        self.procs.insert(name.clone(), p);
                    }
                    Err(e) => tracing::warn!(pod = %name, error = %e, "cannot start the pod's process"),
                }
            }
        }

        let names: Vec<String> = self.procs.keys().cloned().collect();
        for name in names {
            self.sync(&name).await;
        }
        Ok(())
    }

    fn next_ip(&mut self) -> IpAddr {
        let host = self.next_host;
        self.next_host = self.next_host.checked_add(1).expect("at most 253 pods per local e2e");
        IpAddr::V4(Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host))
    }

    async fn start(&mut self, pod: &Pod) -> Result<Process, String> {
        let name = pod.name_any();
        let service = pod.labels().get(names::LABEL_INSTANCE).cloned().ok_or("no instance label")?;
        let args = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.args.clone())
            .ok_or("no container args")?;
        let config_path = args.iter().skip_while(|a| *a != "--config").nth(1).ok_or("no --config argument")?;
        let key = Path::new(config_path).file_name().and_then(|f| f.to_str()).ok_or("bad --config path")?.to_string();
        let layout = PodLayout { root: self.root.clone(), server: name.clone(), ip: self.next_ip() };

        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let token = secrets
            .get_opt(&names::admin_secret_name(&service))
            .await
            .map_err(|e| e.to_string())?
            .and_then(|s| s.data)
            .and_then(|d| d.get(names::TOKEN_KEY).map(|t| t.0.clone()))
            .ok_or("no admin token Secret yet")?;
        let text = self.file_text(&service, &key, &layout).await?;
        std::fs::create_dir_all(layout.volume()).map_err(|e| e.to_string())?;
        if let Some(dir) = layout.token_file().parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(layout.token_file(), token).map_err(|e| e.to_string())?;
        write_atomically(&layout.config_file(), &text)?;

        let uid = pod.uid().unwrap_or_default();
        let log = self.root.join("logs").join(format!("{name}-{uid}.log"));
        let child = spawn(&layout, &log, &self.pids)?;
        tracing::info!(pod = %name, ip = %layout.ip, "started the pod's process");
        Ok(Process { uid, layout, service, key, child, log, text, reported: None })
    }

    /// The pod's file as it must be written now.
    async fn file_text(&self, service: &str, key: &str, layout: &PodLayout) -> Result<String, String> {
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns);
        let text = cms
            .get_opt(&names::config_map_name(service))
            .await
            .map_err(|e| e.to_string())?
            .and_then(|cm| cm.data)
            .and_then(|d| d.get(key).cloned())
            .ok_or_else(|| format!("no key {key} in ConfigMap {}", names::config_map_name(service)))?;
        layout.local_file(&text)
    }

    /// File changes, restarts after an exit, and the Ready condition.
    async fn sync(&mut self, name: &str) {
        let Some(p) = self.procs.get(name) else { return };
        let (service, key, layout) = (p.service.clone(), p.key.clone(), p.layout.clone());
        let text = self.file_text(&service, &key, &layout).await;
        let Some(p) = self.procs.get_mut(name) else { return };
        if let Ok(text) = text {
            if text != p.text {
                match write_atomically(&layout.config_file(), &text) {
                    Ok(()) => p.text = text,
                    Err(e) => tracing::warn!(pod = %name, error = %e, "cannot write the pod's file"),
                }
            }
        }
        if let Ok(Some(exit)) = p.child.try_wait() {
            tracing::warn!(pod = %name, %exit, "the pod's process exited; starting it again");
            if let Some(pid) = p.child.id() {
                self.pids.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
            }
            match spawn(&p.layout, &p.log, &self.pids) {
                Ok(child) => p.child = child,
                Err(e) => tracing::warn!(pod = %name, error = %e, "cannot start the pod's process again"),
            }
        }
        let ready = ready(&layout).await;
        if p.reported == Some(ready) {
            return;
        }
        let status = json!({"status": {
            "phase": "Running",
            "podIP": layout.ip.to_string(),
            "podIPs": [{"ip": layout.ip.to_string()}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        }});
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        match pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await {
            Ok(_) => p.reported = Some(ready),
            Err(e) => tracing::debug!(pod = %name, error = %e, "cannot report the pod's status"),
        }
    }
}

/// `GET /readyz` of the process (the pod's readiness probe).
async fn ready(layout: &PodLayout) -> bool {
    let Ok(client) = transport::client::AdminClient::new(&format!("http://{}:{}", layout.ip, names::ADMIN_PORT), None)
    else {
        return false;
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), client.ready()).await, Ok(Ok(true)))
}

fn spawn(layout: &PodLayout, log: &Path, pids: &Pids) -> Result<Child, String> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| e.to_string())?;
    let child = Command::new(transport_binary())
        .arg("--config")
        .arg(layout.config_file())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", transport_binary().display()))?;
    if let Some(pid) = child.id() {
        pids.lock().unwrap_or_else(|e| e.into_inner()).insert(pid, layout.server.clone());
    }
    Ok(child)
}

/// SIGTERM, then SIGKILL once the grace period is over.
async fn stop(mut p: Process, pids: Pids) {
    let pid = p.child.id();
    if let Some(pid) = pid {
        // std and tokio only send SIGKILL; kill(1) sends the SIGTERM a kubelet sends first.
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
    }
    if tokio::time::timeout(GRACE, p.child.wait()).await.is_err() {
        tracing::warn!(pod = %p.layout.server, "the process did not stop within the grace period: SIGKILL");
        let _ = p.child.kill().await;
    }
    if let Some(pid) = pid {
        pids.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
    }
    tracing::info!(pod = %p.layout.server, "stopped the pod's process");
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}
