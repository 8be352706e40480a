//! What the scenarios of the e2e suite (`e2e/tests/cluster/`) use: a [`Suite`] (the real
//! cluster of [`crate::cluster`], `kubectl` and `helm` with the administrator's
//! kubeconfig, the operator installed by the chart) and an [`Env`] per scenario (a
//! namespace of its own), with the checks a user makes with kubectl: status, conditions,
//! Events, pods, and mail through the Service's address to a sink outside the cluster; and
//! a [`user::User`] other than the administrator (a ServiceAccount with a Role and a
//! kubeconfig of its own) who runs kubectl with the kubectl plugin.
pub mod flow;
pub mod sink;
pub mod smtp;
pub mod user;

use crate::cluster::{Cluster, Options};
use crate::kind::tools;
use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use operator::names;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use transport::client::AdminClient;

/// Namespace and release name of the operator (`helm install kube-transport ... -n kube-transport`).
pub const OPERATOR_NS: &str = "kube-transport";
pub const RELEASE: &str = "kube-transport";
/// The operator's ServiceAccount as the audit log names it.
pub const OPERATOR_USER: &str = "system:serviceaccount:kube-transport:kube-transport";

pub struct Suite {
    pub cluster: Cluster,
    pub kubectl: PathBuf,
    pub helm: PathBuf,
}

/// The repository's chart.
pub fn chart() -> PathBuf {
    tools::repo_root().join("charts/kube-transport")
}

impl Suite {
    /// The cluster, with helm and kubectl found (an error says how to install them).
    pub async fn start(options: Options) -> Result<Suite> {
        let kubectl = tools::find("kubectl").context("kubectl is missing: run e2e/tools/install-helm.sh")?;
        let helm = tools::find("helm").context("helm is missing: run e2e/tools/install-helm.sh")?;
        testkit::peer::find_tool("smtp-sink", "postfix")?;
        let cluster = Cluster::start(options).await?;
        Ok(Suite { cluster, kubectl, helm })
    }

    /// Runs a command to its end; the runtime's other tasks (the nodes, the proxy) go on
    /// meanwhile on other threads.
    fn run(&self, program: &Path, args: &[&str], input: Option<&str>) -> Result<String> {
        tokio::task::block_in_place(|| self.run_blocking(program, args, input))
    }

    fn run_blocking(&self, program: &Path, args: &[&str], input: Option<&str>) -> Result<String> {
        let mut child = Command::new(program)
            .args(args)
            .env("KUBECONFIG", self.cluster.kubeconfig())
            .env("HELM_CACHE_HOME", self.cluster.root().join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.cluster.root().join("helm/config"))
            .env("HELM_DATA_HOME", self.cluster.root().join("helm/data"))
            .current_dir(tools::repo_root())
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", program.display()))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !out.status.success() {
            bail!(
                "{name} {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl <args>` as the administrator; its output, or an error with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.run(&self.kubectl, args, None)
    }

    /// `kubectl <args>` with `input` on stdin (`apply -f -`).
    pub fn kubectl_with(&self, args: &[&str], input: &str) -> Result<String> {
        self.run(&self.kubectl, args, Some(input))
    }

    pub fn helm(&self, args: &[&str]) -> Result<String> {
        self.run(&self.helm, args, None)
    }

    /// `helm install kube-transport charts/kube-transport -n kube-transport --create-namespace
    /// --wait` with `extra` arguments (`--set ...`).
    pub fn install_operator(&self, extra: &[&str]) -> Result<String> {
        let chart = chart();
        let chart = chart.to_string_lossy();
        let mut args =
            vec!["install", RELEASE, &chart, "-n", OPERATOR_NS, "--create-namespace", "--wait", "--timeout", "180s"];
        args.extend_from_slice(extra);
        self.helm(&args)
    }

    /// The last `lines` lines of the operator's log.
    pub fn operator_log(&self, lines: usize) -> String {
        let pods = self.kubectl(&["get", "pods", "-n", OPERATOR_NS, "-o", "name"]).unwrap_or_default();
        pods.lines()
            .filter_map(|p| p.strip_prefix("pod/"))
            .map(|p| format!("--- operator pod {p}\n{}\n", self.cluster.logs(OPERATOR_NS, p, "operator", lines)))
            .collect()
    }

    /// A namespace of its own for a scenario (created; deleted by [`Env::finish`]).
    pub async fn env(&self, name: &str) -> Result<Env<'_>> {
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(self.cluster.client.clone()).create(&PostParams::default(), &ns).await?;
        // The ServiceAccount controller makes `default` shortly after; pods need it.
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.cluster.client.clone(), name);
        let deadline = Instant::now() + Duration::from_secs(30);
        while accounts.get_opt("default").await?.is_none() {
            anyhow::ensure!(Instant::now() < deadline, "no default ServiceAccount in {name}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Env { suite: self, ns: name.to_string() })
    }
}

/// One scenario's namespace.
pub struct Env<'a> {
    pub suite: &'a Suite,
    pub ns: String,
}

impl Env<'_> {
    pub fn cluster(&self) -> &Cluster {
        &self.suite.cluster
    }

    pub fn client(&self) -> kube::Client {
        self.suite.cluster.client.clone()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client(), &self.ns)
    }

    /// `kubectl -n <ns> <args>`.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        self.suite.kubectl(&all)
    }

    /// `kubectl -n <ns> apply -f -` of a manifest.
    pub fn apply_yaml(&self, yaml: &str) -> Result<String> {
        self.suite.kubectl_with(&["-n", &self.ns, "apply", "-f", "-"], yaml)
    }

    /// `kubectl apply` of an object (as its YAML).
    pub async fn apply<K: Serialize>(&self, obj: &K) -> Result<String> {
        self.apply_yaml(&serde_yaml::to_string(obj)?)
    }

    /// `kubectl edit`: changes an object as it is now (read again and changed again when
    /// someone else wrote it in between, as kubectl does on a conflict).
    pub async fn edit<K>(&self, name: &str, f: impl Fn(&mut K)) -> Result<K>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api = self.api::<K>();
        for _ in 0..10 {
            let mut obj = api.get(name).await?;
            f(&mut obj);
            match api.replace(name, &PostParams::default(), &obj).await {
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                other => return Ok(other?),
            }
        }
        bail!("{name} kept changing under kubectl edit")
    }

    /// `kubectl delete --wait=false`.
    pub async fn delete<K>(&self, name: &str) -> Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        self.api::<K>().delete(name, &Default::default()).await?;
        Ok(())
    }

    pub async fn service(&self, name: &str) -> Result<operator::crd::TransportService> {
        Ok(self.api().get(name).await?)
    }

    pub async fn pod(&self, name: &str) -> Result<Option<Pod>> {
        Ok(self.api::<Pod>().get_opt(name).await?)
    }

    /// The transport servers' pods, sorted.
    pub async fn pod_names(&self) -> Result<Vec<String>> {
        let selector = format!("{}={}", names::LABEL_NAME, names::APP_NAME);
        let pods = self.api::<Pod>().list(&ListParams::default().labels(&selector)).await?.items;
        let mut names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        names.sort();
        Ok(names)
    }

    /// The admin API of a server, as `transportctl --admin http://<podIP>:8025 --token-file`.
    pub async fn admin(&self, service: &str, server: &str) -> Result<AdminClient> {
        let pod = self.pod(server).await?.with_context(|| format!("no pod {server}"))?;
        let ip = pod.status.and_then(|s| s.pod_ip).with_context(|| format!("pod {server} has no IP"))?;
        let token = self
            .api::<Secret>()
            .get(&names::admin_secret_name(service))
            .await?
            .data
            .and_then(|d| d.get(names::TOKEN_KEY).map(|t| String::from_utf8_lossy(&t.0).into_owned()));
        Ok(AdminClient::new(&format!("http://{ip}:{}", names::ADMIN_PORT), token)?)
    }

    /// Where the Service `<ts>` takes SMTP on `port` (ready pods only).
    pub async fn smtp_service(&self, ts: &str, port: u16) -> Result<SocketAddr> {
        self.cluster().service_address(&self.ns, ts, port).await
    }

    /// Waits until the Service `<name>` sends connections on `port` to `ready` endpoints (the
    /// EndpointSlice controller publishes a pod's readiness a moment after the pod's status).
    pub async fn wait_endpoints(&self, name: &str, port: u16, ready: usize) {
        let key = format!("{}/{name}", self.ns);
        let what = format!("{ready} ready endpoints behind Service {key} port {port}");
        self.wait_for(Duration::from_secs(60), &what, || async {
            let now = self.cluster().proxy.endpoints(&key, port);
            if now.len() == ready {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        })
        .await
    }

    /// Polls `check` every 200 ms until it gives a value; panics after `within` with `what`,
    /// the last thing `check` reported and the logs that tell why.
    pub async fn wait_for<T, F, Fut>(&self, within: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + within;
        loop {
            match check().await {
                Ok(v) => return v,
                Err(last) if Instant::now() > deadline => {
                    panic!("timed out after {within:?} waiting for {what}; last seen: {last}\n{}", self.diagnostics())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The operator's log and each server's log, ends only.
    pub fn diagnostics(&self) -> String {
        let mut out = self.suite.operator_log(30);
        let pods = self.kubectl(&["get", "pods", "-o", "wide"]).unwrap_or_else(|e| e.to_string());
        out.push_str(&format!("--- kubectl get pods -n {}\n{pods}\n", self.ns));
        let states = self
            .kubectl(&[
                "get",
                "pods",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name}: {.status.containerStatuses[*].state}{"\n"}{end}"#,
            ])
            .unwrap_or_else(|e| e.to_string());
        out.push_str(&format!("--- container states\n{states}\n"));
        for pod in pods.lines().skip(1).filter_map(|l| l.split_whitespace().next()) {
            let log = self.cluster().logs(&self.ns, pod, "transport", 12);
            out.push_str(&format!("--- {pod}\n{log}\n"));
        }
        out
    }

    /// Deletes the namespace (everything in it goes, as `kubectl delete ns` does).
    pub async fn finish(self) -> Result<()> {
        Api::<Namespace>::all(self.client()).delete(&self.ns, &Default::default()).await?;
        Ok(())
    }
}

/// The pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `podIP:port` of the pod's first receive connector (`smtp-0`).
pub fn smtp_address(pod: &Pod) -> Option<SocketAddr> {
    let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    let port = pod
        .spec
        .as_ref()?
        .containers
        .first()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.name.as_deref() == Some("smtp-0"))?
        .container_port;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}
