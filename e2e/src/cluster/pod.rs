//! One pod on a process node, from its binding to its final delete: a network namespace and
//! address of its own, its volumes, an API server forwarder on its loopback
//! (`KUBERNETES_SERVICE_HOST=127.0.0.1`, port 443, with its own ServiceAccount token, so
//! RBAC applies to what it does), init containers (native sidecars included) and
//! containers as processes ([`super::sandbox`]), probes, restartPolicy with back-off,
//! status written back, and graceful deletion (SIGTERM, the grace period, SIGKILL, then the
//! final delete with grace 0, as the kubelet does).
use super::downward;
use super::images::Image;
use super::network::{Attachment, Network};
use super::probe::ProbeState;
use super::sandbox::{Mount, Sandbox};
use super::volumes::Volumes;
use anyhow::{anyhow, bail, Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::ResourceExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::sync::watch;

/// What every pod of a node shares.
pub struct NodeContext {
    pub node: String,
    /// The node's own credentials (`system:node:<name>`): the Node authorizer decides.
    pub client: kube::Client,
    pub net: Arc<Network>,
    /// `<cluster>/nodes/<node>`.
    pub dir: PathBuf,
    /// The API server, for the forwarder inside each pod.
    pub api: SocketAddr,
    pub host_ip: Ipv4Addr,
    /// The cluster DNS every pod's `/etc/resolv.conf` names (see [`super::dns`]).
    pub cluster_dns: Ipv4Addr,
    /// Every container process running now (each leads its process group), so that a node
    /// that goes away kills them at once.
    pub pids: std::sync::Mutex<std::collections::BTreeSet<i32>>,
}

impl NodeContext {
    fn track(&self, pid: Option<u32>, running: bool) {
        let Some(pid) = pid else { return };
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        if running {
            pids.insert(pid as i32);
        } else {
            pids.remove(&(pid as i32));
        }
    }

    /// SIGKILL to every container process group of this node.
    pub fn kill_all(&self) {
        for pid in std::mem::take(&mut *self.pids.lock().unwrap_or_else(|e| e.into_inner())) {
            // SAFETY: signals to process groups this node's workers created.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Where a process in a pod finds the API server (its own loopback; a forwarder of the
/// harness carries the connection to the API server).
pub const API_HOST: &str = "127.0.0.1";
pub const API_PORT: u16 = 443;
const MAX_BACKOFF: Duration = Duration::from_secs(20);
const TICK: Duration = Duration::from_millis(200);
const REFRESH: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq)]
enum ContainerState {
    Waiting { reason: String, message: Option<String> },
    Running { started: String },
    Terminated { code: i32, reason: String, started: String, finished: String },
}

struct Run {
    spec: Container,
    image: Result<Image, String>,
    init: bool,
    /// A native sidecar: an init container with restartPolicy Always.
    sidecar: bool,
    child: Option<Child>,
    /// The process id of `child` (tokio forgets it once the process is reaped).
    pid: Option<u32>,
    restarts: i32,
    state: ContainerState,
    last: Option<ContainerState>,
    backoff: Duration,
    restart_at: Option<Instant>,
    startup: Option<ProbeState>,
    liveness: Option<ProbeState>,
    readiness: Option<ProbeState>,
    /// Started (its startup probe passed, or it has none) and not exited.
    started: bool,
    ready: bool,
    /// Done for good: an init container that succeeded, or one that will not restart.
    finished: bool,
}

impl Run {
    fn new(spec: &Container, init: bool) -> Run {
        Run {
            image: Image::parse(spec.image.as_deref().unwrap_or_default()).map_err(|e| e.to_string()),
            spec: spec.clone(),
            init,
            sidecar: init && spec.restart_policy.as_deref() == Some("Always"),
            child: None,
            pid: None,
            restarts: 0,
            state: ContainerState::Waiting { reason: "PodInitializing".into(), message: None },
            last: None,
            backoff: Duration::from_secs(1),
            restart_at: None,
            startup: None,
            liveness: None,
            readiness: None,
            started: false,
            ready: false,
            finished: false,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and(self.pid)
    }

    fn status(&self) -> Value {
        let image = self.spec.image.clone().unwrap_or_default();
        let mut s = json!({
            "name": self.spec.name,
            "image": image,
            "imageID": format!("process://{image}"),
            "ready": self.ready,
            "restartCount": self.restarts,
            "started": self.started,
            "state": state_json(&self.state),
        });
        if let Some(last) = &self.last {
            s["lastState"] = state_json(last);
        }
        if let Some(pid) = self.pid() {
            s["containerID"] = json!(format!("process://{pid}"));
        }
        s
    }
}

fn state_json(s: &ContainerState) -> Value {
    match s {
        ContainerState::Waiting { reason, message } => json!({"waiting": {"reason": reason, "message": message}}),
        ContainerState::Running { started } => json!({"running": {"startedAt": started}}),
        ContainerState::Terminated { code, reason, started, finished } => {
            json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished}})
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}

/// `$(NAME)` of `vars` in `s` (`$$` escapes), as the kubelet expands command, args and env.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) if vars.contains_key(&inner[..end]) => {
                    out.push_str(&vars[&inner[..end]]);
                    rest = &inner[end + 1..];
                }
                Some(end) => {
                    out.push_str(&rest[i..i + 2 + end + 1]);
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Runs the pod until it is deleted (or force-deleted: the sender is dropped).
pub async fn run(ctx: Arc<NodeContext>, pods: watch::Receiver<Pod>) {
    let pod = pods.borrow().clone();
    let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    let span = tracing::info_span!("pod", pod = %name, node = %ctx.node);
    let mut worker = Worker::new(ctx, pod);
    tracing::Instrument::instrument(worker.lifecycle(pods), span).await;
}

struct Worker {
    ctx: Arc<NodeContext>,
    pod: Pod,
    dir: PathBuf,
    net: Option<Attachment>,
    volumes: Option<Volumes>,
    forwarder: Option<tokio::task::JoinHandle<()>>,
    init: Vec<Run>,
    containers: Vec<Run>,
    started_at: String,
    /// Why the pod cannot start its containers yet (volumes, network).
    blocked: Option<String>,
    reported: Option<Value>,
    last_refresh: Instant,
}

impl Worker {
    fn new(ctx: Arc<NodeContext>, pod: Pod) -> Worker {
        let uid = pod.uid().unwrap_or_default();
        let dir =
            ctx.dir.join("pods").join(format!("{}_{}_{uid}", pod.namespace().unwrap_or_default(), pod.name_any()));
        let spec = pod.spec.clone().unwrap_or_default();
        Worker {
            init: spec.init_containers.iter().flatten().map(|c| Run::new(c, true)).collect(),
            containers: spec.containers.iter().map(|c| Run::new(c, false)).collect(),
            ctx,
            pod,
            dir,
            net: None,
            volumes: None,
            forwarder: None,
            started_at: now(),
            blocked: None,
            reported: None,
            last_refresh: Instant::now(),
        }
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), &self.pod.namespace().unwrap_or_default())
    }

    fn restart_policy(&self) -> String {
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into())
    }

    async fn lifecycle(&mut self, mut pods: watch::Receiver<Pod>) {
        loop {
            let gone = match tokio::time::timeout(TICK, pods.changed()).await {
                Ok(Ok(())) => {
                    self.pod = pods.borrow_and_update().clone();
                    false
                }
                Ok(Err(_)) => true,
                Err(_) => false,
            };
            if gone {
                // Force-deleted: nothing to report to.
                self.stop_all(Duration::ZERO).await;
                self.cleanup();
                return;
            }
            if self.pod.metadata.deletion_timestamp.is_some() {
                let grace = self.pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64;
                self.stop_all(Duration::from_secs(grace)).await;
                self.report().await;
                self.cleanup();
                self.final_delete().await;
                return;
            }
            if let Err(e) = self.step().await {
                self.blocked = Some(format!("{e:#}"));
                tracing::debug!(error = %format!("{e:#}"), "pod not started yet");
            }
            self.report().await;
        }
    }

    /// Network, volumes, forwarder; then containers, probes and restarts.
    async fn step(&mut self) -> Result<()> {
        if self.terminal() {
            return Ok(());
        }
        if self.net.is_none() {
            let a = self.ctx.net.attach_pod()?;
            let api = self.ctx.api;
            let listener = a.netns.listen(SocketAddr::from(([127, 0, 0, 1], API_PORT)))?;
            self.forwarder = Some(tokio::spawn(forward(listener, api)));
            tracing::info!(ip = %a.ip, netns = %a.netns.name, "pod network");
            self.net = Some(a);
        }
        if self.volumes.is_none() {
            let volumes = Volumes::prepare(&self.ctx.client, &self.pod, &self.dir.join("volumes")).await?;
            self.write_hosts()?;
            self.volumes = Some(volumes);
            self.blocked = None;
            self.last_refresh = Instant::now();
        } else if self.last_refresh.elapsed() >= REFRESH {
            self.last_refresh = Instant::now();
            if let Some(v) = &mut self.volumes {
                if let Err(e) = v.refresh(&self.ctx.client, &self.pod).await {
                    tracing::warn!(error = %format!("{e:#}"), "cannot refresh the pod's volumes");
                }
            }
        }
        // Init containers one after the other; sidecars keep running beside the others.
        for i in 0..self.init.len() {
            self.drive(true, i).await?;
            let r = &self.init[i];
            let through = if r.sidecar { r.started } else { r.finished && !self.init_failed(i) };
            if !through {
                return Ok(());
            }
        }
        for i in 0..self.containers.len() {
            self.drive(false, i).await?;
        }
        if self.containers.iter().all(|c| c.finished) {
            // The pod is done: its sidecars stop, as the kubelet stops them last.
            self.stop_all(Duration::from_secs(self.grace())).await;
        }
        Ok(())
    }

    fn grace(&self) -> u64 {
        self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0) as u64
    }

    fn init_failed(&self, i: usize) -> bool {
        matches!(self.init[i].state, ContainerState::Terminated { code, .. } if code != 0)
    }

    fn run_mut(&mut self, init: bool, i: usize) -> &mut Run {
        if init {
            &mut self.init[i]
        } else {
            &mut self.containers[i]
        }
    }

    /// Starts, restarts and probes one container.
    async fn drive(&mut self, init: bool, i: usize) -> Result<()> {
        let policy = self.restart_policy();
        let grace = self.grace();
        let ip = self.net.as_ref().map(|a| a.ip).context("no pod network")?;
        // Exited?
        let exited = {
            let r = self.run_mut(init, i);
            match r.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.code().unwrap_or(137)),
                _ => None,
            }
        };
        if let Some(code) = exited {
            let r = self.run_mut(init, i);
            let started = match &r.state {
                ContainerState::Running { started } => started.clone(),
                _ => now(),
            };
            let reason = if code == 0 { "Completed" } else { "Error" };
            tracing::info!(container = %r.spec.name, code, "container exited");
            let pid = r.pid.take();
            self.ctx.track(pid, false);
            if let Some(pid) = pid {
                // What the container left behind goes with it (its process group).
                // SAFETY: a signal to the process group this worker created.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            let r = self.run_mut(init, i);
            r.state = ContainerState::Terminated { code, reason: reason.into(), started, finished: now() };
            r.child = None;
            r.started = false;
            r.ready = false;
            let restart = if r.sidecar {
                true
            } else if r.init {
                code != 0 && policy != "Never"
            } else {
                policy == "Always" || (policy == "OnFailure" && code != 0)
            };
            if restart {
                r.last = Some(r.state.clone());
                r.restart_at = Some(Instant::now() + r.backoff);
                let message = format!("back-off {:?} restarting failed container", r.backoff);
                r.state = ContainerState::Waiting { reason: "CrashLoopBackOff".into(), message: Some(message) };
                r.backoff = (r.backoff * 2).min(MAX_BACKOFF);
            } else {
                r.finished = true;
            }
        }
        let (due, never_started) = {
            let r = self.run_mut(init, i);
            (
                r.restart_at.is_some_and(|at| Instant::now() >= at),
                r.child.is_none() && !r.finished && r.restart_at.is_none(),
            )
        };
        if due || never_started {
            self.start(init, i).await?;
        }
        // Probes.
        let r = self.run_mut(init, i);
        if r.child.is_none() {
            return Ok(());
        }
        let pid = r.pid();
        let spec = r.spec.clone();
        if let Some(p) = &mut r.startup {
            if !r.started {
                p.tick(&spec, ip, pid).await;
                match p.result {
                    Some(true) => r.started = true,
                    Some(false) => {
                        let why = p.last_error.clone().unwrap_or_default();
                        tracing::warn!(container = %spec.name, %why, "startup probe failed; restarting");
                        self.kill_for_restart(init, i, grace).await;
                    }
                    None => {}
                }
                return Ok(());
            }
        } else {
            r.started = true;
        }
        let r = self.run_mut(init, i);
        if let Some(p) = &mut r.liveness {
            p.tick(&spec, ip, pid).await;
            if p.result == Some(false) {
                let why = p.last_error.clone().unwrap_or_default();
                tracing::warn!(container = %spec.name, %why, "liveness probe failed; restarting");
                self.kill_for_restart(init, i, grace).await;
                return Ok(());
            }
        }
        let r = self.run_mut(init, i);
        r.ready = match &mut r.readiness {
            Some(p) => {
                p.tick(&spec, ip, pid).await;
                p.result == Some(true)
            }
            None => r.started,
        };
        Ok(())
    }

    /// Stops a container whose probe failed; the exit is picked up as a failure to restart.
    async fn kill_for_restart(&mut self, init: bool, i: usize, grace: u64) {
        let r = self.run_mut(init, i);
        if let Some(child) = r.child.as_mut() {
            stop(child, Duration::from_secs(grace)).await;
        }
        for p in [&mut r.startup, &mut r.liveness, &mut r.readiness].into_iter().flatten() {
            p.result = None;
        }
    }

    /// The argv, environment and mounts of a container.
    async fn exec_spec(
        &self,
        image: Result<Image, String>,
        spec: &Container,
    ) -> Result<(Vec<String>, Vec<(String, String)>, Vec<Mount>)> {
        let image = image.map_err(|e| anyhow!(e))?;
        let env = self.env(spec).await?;
        let vars: BTreeMap<String, String> = env.iter().cloned().collect();
        let expand_all =
            |list: &Option<Vec<String>>| list.as_ref().map(|l| l.iter().map(|a| expand(a, &vars)).collect::<Vec<_>>());
        let argv = image.argv(expand_all(&spec.command).as_deref(), expand_all(&spec.args).as_deref())?;
        Ok((argv, env, self.mounts(spec)?))
    }

    async fn start(&mut self, init: bool, i: usize) -> Result<()> {
        let net = self.net.clone().context("no pod network")?;
        let (image, spec) = {
            let r = self.run_mut(init, i);
            (r.image.clone(), r.spec.clone())
        };
        let (argv, env, mounts) = match self.exec_spec(image, &spec).await {
            Ok(x) => x,
            Err(e) => {
                let message = format!("{e:#}");
                self.run_mut(init, i).state =
                    ContainerState::Waiting { reason: "CreateContainerConfigError".into(), message: Some(message) };
                return Err(e);
            }
        };
        let read_only_root = spec.security_context.as_ref().and_then(|s| s.read_only_root_filesystem).unwrap_or(false);
        let sandbox = Sandbox {
            netns: net.netns.clone(),
            hostname: self.hostname(),
            mounts,
            read_only_root,
            working_dir: spec.working_dir.as_ref().map(PathBuf::from),
        };
        let restarts = self.run_mut(init, i).restarts;
        let log = self.log_file(&spec.name, restarts);
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(env)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true);
        sandbox.apply(&mut cmd)?;
        let child =
            super::daemon::on_keeper(move || cmd.spawn()).with_context(|| format!("cannot start {:?}", argv[0]))?;
        tracing::info!(container = %spec.name, pid = ?child.id(), argv = ?argv, "container started");
        self.ctx.track(child.id(), true);
        let pid = child.id();
        let started = Instant::now();
        let r = self.run_mut(init, i);
        if r.restart_at.take().is_some() {
            r.restarts += 1;
        }
        r.child = Some(child);
        r.pid = pid;
        r.state = ContainerState::Running { started: now() };
        r.started = false;
        r.ready = false;
        r.startup = spec.startup_probe.as_ref().map(|p| ProbeState::new(p, started));
        r.liveness = spec.liveness_probe.as_ref().map(|p| ProbeState::new(p, started));
        r.readiness = spec.readiness_probe.as_ref().map(|p| ProbeState::new(p, started));
        Ok(())
    }

    fn hostname(&self) -> String {
        self.pod.spec.as_ref().and_then(|s| s.hostname.clone()).unwrap_or_else(|| self.pod.name_any())
    }

    pub fn log_file(&self, container: &str, restart: i32) -> PathBuf {
        self.dir.join("logs").join(container).join(format!("{restart}.log"))
    }

    /// /etc/hosts and /etc/resolv.conf of the pod, as the kubelet writes them.
    fn write_hosts(&self) -> Result<()> {
        let ip = self.net.as_ref().map(|a| a.ip).context("no pod network")?;
        let spec = self.pod.spec.as_ref();
        let host = self.hostname();
        let fqdn = spec
            .and_then(|s| s.subdomain.as_ref())
            .map(|sub| format!("{host}.{sub}.{}.svc.cluster.local ", self.pod.namespace().unwrap_or_default()));
        let text = format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n{ip}\t{}{host}\n", fqdn.unwrap_or_default());
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.dir.join("etc-hosts"), text)?;
        let resolv = super::dns::resolv_conf(self.ctx.cluster_dns, &self.pod.namespace().unwrap_or_default());
        std::fs::write(self.dir.join("etc-resolv.conf"), resolv)?;
        Ok(())
    }

    fn mounts(&self, spec: &Container) -> Result<Vec<Mount>> {
        let volumes = self.volumes.as_ref().context("volumes not ready")?;
        let mut mounts = vec![
            Mount { source: self.dir.join("etc-hosts"), target: "/etc/hosts".into(), read_only: false },
            Mount { source: self.dir.join("etc-resolv.conf"), target: "/etc/resolv.conf".into(), read_only: false },
        ];
        for m in spec.volume_mounts.iter().flatten() {
            let base =
                volumes.paths.get(&m.name).with_context(|| format!("volumeMount of unknown volume {}", m.name))?;
            let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    if sub.split('/').any(|p| p == "..") {
                        bail!("subPath {sub} leaves its volume");
                    }
                    let p = base.join(sub);
                    if !p.exists() {
                        std::fs::create_dir_all(&p)?;
                    }
                    p
                }
                None => base.clone(),
            };
            mounts.push(Mount {
                source,
                target: PathBuf::from(&m.mount_path),
                read_only: m.read_only.unwrap_or(false),
            });
        }
        Ok(mounts)
    }

    /// The container's environment: the image's PATH, the pod's hostname, the API server,
    /// envFrom, then env (with `$(VAR)` expansion and valueFrom sources).
    async fn env(&self, c: &Container) -> Result<Vec<(String, String)>> {
        let mut vars: Vec<(String, String)> = vec![
            ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("HOSTNAME".into(), self.hostname()),
            ("HOME".into(), "/root".into()),
            ("KUBERNETES_SERVICE_HOST".into(), API_HOST.into()),
            ("KUBERNETES_SERVICE_PORT".into(), API_PORT.to_string()),
            ("KUBERNETES_SERVICE_PORT_HTTPS".into(), API_PORT.to_string()),
        ];
        let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
            vars.retain(|(n, _)| *n != k);
            vars.push((k, v));
        };
        let ns = self.pod.namespace().unwrap_or_default();
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(r) = &from.config_map_ref {
                for (k, v) in self.config_map_data(&ns, &r.name, r.optional).await? {
                    set(&mut vars, format!("{prefix}{k}"), v);
                }
            }
            if let Some(r) = &from.secret_ref {
                for (k, v) in self.secret_data(&ns, &r.name, r.optional).await? {
                    set(&mut vars, format!("{prefix}{k}"), v);
                }
            }
        }
        for e in c.env.iter().flatten() {
            let value = match &e.value_from {
                None => {
                    let known: BTreeMap<String, String> = vars.iter().cloned().collect();
                    expand(e.value.as_deref().unwrap_or_default(), &known)
                }
                Some(from) => {
                    if let Some(f) = &from.field_ref {
                        downward::field(&self.pod, f)?
                    } else if let Some(r) = &from.resource_field_ref {
                        downward::resource(c, r)?
                    } else if let Some(r) = &from.config_map_key_ref {
                        let data = self.config_map_data(&ns, &r.name, r.optional).await?;
                        match data.get(&r.key) {
                            Some(v) => v.clone(),
                            None if r.optional == Some(true) => continue,
                            None => bail!("ConfigMap {} has no key {}", r.name, r.key),
                        }
                    } else if let Some(r) = &from.secret_key_ref {
                        let data = self.secret_data(&ns, &r.name, r.optional).await?;
                        match data.get(&r.key) {
                            Some(v) => v.clone(),
                            None if r.optional == Some(true) => continue,
                            None => bail!("Secret {} has no key {}", r.name, r.key),
                        }
                    } else {
                        bail!("env {} has an empty valueFrom", e.name);
                    }
                }
            };
            set(&mut vars, e.name.clone(), value);
        }
        Ok(vars)
    }

    async fn config_map_data(&self, ns: &str, name: &str, optional: Option<bool>) -> Result<BTreeMap<String, String>> {
        let found = Api::<ConfigMap>::namespaced(self.ctx.client.clone(), ns).get_opt(name).await?;
        match found {
            Some(cm) => Ok(cm.data.unwrap_or_default()),
            None if optional == Some(true) => Ok(BTreeMap::new()),
            None => bail!("ConfigMap {ns}/{name} not found"),
        }
    }

    async fn secret_data(&self, ns: &str, name: &str, optional: Option<bool>) -> Result<BTreeMap<String, String>> {
        let found = Api::<Secret>::namespaced(self.ctx.client.clone(), ns).get_opt(name).await?;
        match found {
            Some(s) => Ok(s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect()),
            None if optional == Some(true) => Ok(BTreeMap::new()),
            None => bail!("Secret {ns}/{name} not found"),
        }
    }

    fn terminal(&self) -> bool {
        matches!(self.phase().as_str(), "Succeeded" | "Failed")
    }

    fn phase(&self) -> String {
        if self.init.iter().enumerate().any(|(i, r)| !r.sidecar && r.finished && self.init_failed(i)) {
            return "Failed".into();
        }
        if !self.containers.is_empty() && self.containers.iter().all(|c| c.finished) {
            let failed =
                self.containers.iter().any(|c| matches!(c.state, ContainerState::Terminated { code, .. } if code != 0));
            return if failed { "Failed" } else { "Succeeded" }.into();
        }
        let any_started = self.containers.iter().any(|c| c.child.is_some() || c.restarts > 0 || c.last.is_some());
        if any_started { "Running" } else { "Pending" }.into()
    }

    /// The status as the kubelet reports it.
    fn status(&self) -> Value {
        let phase = self.phase();
        let t = self.started_at.clone();
        let cond = |type_: &str, ok: bool| json!({"type": type_, "status": if ok { "True" } else { "False" }, "lastTransitionTime": t});
        let sandbox = self.net.is_some() && self.volumes.is_some();
        let initialized = self.init.iter().all(|r| if r.sidecar { r.started } else { r.finished });
        let ready = phase == "Running" && self.containers.iter().all(|c| c.ready);
        let mut containers: Vec<Value> = self.containers.iter().map(Run::status).collect();
        if let Some(why) = &self.blocked {
            for c in &mut containers {
                if c["state"].get("waiting").is_some() {
                    c["state"] = json!({"waiting": {"reason": "ContainerCreating", "message": why}});
                }
            }
        }
        let mut s = json!({
            "phase": phase,
            "hostIP": self.ctx.host_ip.to_string(),
            "hostIPs": [{"ip": self.ctx.host_ip.to_string()}],
            "startTime": self.started_at,
            "conditions": [
                cond("PodReadyToStartContainers", sandbox),
                cond("Initialized", initialized),
                cond("ContainersReady", ready),
                cond("Ready", ready),
            ],
            "containerStatuses": containers,
        });
        if !self.init.is_empty() {
            s["initContainerStatuses"] = Value::Array(self.init.iter().map(Run::status).collect());
        }
        if let Some(a) = &self.net {
            s["podIP"] = json!(a.ip.to_string());
            s["podIPs"] = json!([{"ip": a.ip.to_string()}]);
        }
        s
    }

    /// Writes the status when it changed (conditions merge by type: PodScheduled stays).
    async fn report(&mut self) {
        let status = self.status();
        // Transition times are fixed at the pod's start; compare without them.
        if self.reported.as_ref() == Some(&status) {
            return;
        }
        let patch = json!({"status": status});
        match self.api().patch_status(&self.pod.name_any(), &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => self.reported = Some(status),
            Err(kube::Error::Api(e)) if e.code == 404 => self.reported = Some(status),
            Err(e) => tracing::debug!(error = %e, "cannot write the pod's status"),
        }
    }

    /// SIGTERM to every container (main and sidecars at once), SIGKILL after `grace`.
    async fn stop_all(&mut self, grace: Duration) {
        let mut runs: Vec<&mut Run> = self.containers.iter_mut().chain(self.init.iter_mut()).collect();
        let deadline = tokio::time::Instant::now() + grace;
        for r in &mut runs {
            if let Some(pid) = r.pid() {
                // SAFETY: a signal to a process this worker started and has not reaped.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
        for r in runs {
            let pid = r.pid.take();
            let Some(child) = r.child.as_mut() else { continue };
            self.ctx.track(pid, false);
            let code = match tokio::time::timeout_at(deadline, child.wait()).await {
                Ok(Ok(s)) => s.code().unwrap_or(143),
                _ => {
                    let _ = child.kill().await;
                    137
                }
            };
            if let Some(pid) = pid {
                // Whatever the container started goes with it (its process group).
                // SAFETY: a signal to a process group this worker created.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            let started = match &r.state {
                ContainerState::Running { started } => started.clone(),
                _ => now(),
            };
            r.state = ContainerState::Terminated {
                code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                started,
                finished: now(),
            };
            r.child = None;
            r.ready = false;
            r.started = false;
            r.finished = true;
            r.restart_at = None;
        }
    }

    fn cleanup(&mut self) {
        if let Some(f) = self.forwarder.take() {
            f.abort();
        }
        if let Some(a) = self.net.take() {
            self.ctx.net.detach(&a);
        }
        // Logs stay (they are read after a failure); emptyDirs and copies of Secrets go.
        let _ = std::fs::remove_dir_all(self.dir.join("volumes"));
    }

    async fn final_delete(&self) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: self.pod.uid(), resource_version: None }),
            ..Default::default()
        };
        match self.api().delete(&self.pod.name_any(), &params).await {
            Ok(_) => tracing::info!("pod deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(error = %e, "cannot delete the pod"),
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`; the process group goes too.
async fn stop(child: &mut Child, grace: Duration) {
    let pid = child.id();
    if let Some(pid) = pid {
        // SAFETY: a signal to a process this worker started and has not reaped.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    if let Some(pid) = pid {
        // SAFETY: a signal to the process group this worker created.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    }
}

/// Carries each connection from the pod's loopback to the API server.
async fn forward(listener: tokio::net::TcpListener, api: SocketAddr) {
    loop {
        let Ok((mut inside, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            if let Ok(mut outside) = tokio::net::TcpStream::connect(api).await {
                let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
            }
        });
    }
}

/// The log of `container` of the pod in `dir`, latest restart first found.
pub fn latest_log(pod_dir: &Path, container: &str) -> Option<PathBuf> {
    let dir = pod_dir.join("logs").join(container);
    let mut logs: Vec<(i32, PathBuf)> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n = e.path().file_stem()?.to_str()?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    logs.sort();
    logs.pop().map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_as_the_kubelet_does_it() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
        assert_eq!(expand("--name=$(A", &vars), "--name=$(A");
    }
}
