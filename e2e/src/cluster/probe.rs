//! Startup, liveness and readiness probes as the kubelet runs them: httpGet (2xx and 3xx
//! succeed), tcpSocket and exec (inside the container's namespaces), each with its
//! initialDelaySeconds, periodSeconds, timeoutSeconds and success/failure thresholds.
use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// One probe of one container, with its consecutive results.
#[derive(Debug, Clone)]
pub struct ProbeState {
    probe: Probe,
    next: Instant,
    successes: i32,
    failures: i32,
    /// Passed (true) or failed (false) by the thresholds; None until either.
    pub result: Option<bool>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl ProbeState {
    /// A probe of a container that started at `started`.
    pub fn new(probe: &Probe, started: Instant) -> ProbeState {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        ProbeState {
            probe: probe.clone(),
            next: started + delay,
            successes: 0,
            failures: 0,
            result: None,
            last_error: None,
        }
    }

    fn period(&self) -> Duration {
        Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64)
    }

    /// Runs the probe when it is due; returns whether the thresholds' verdict changed.
    pub async fn tick(&mut self, container: &Container, ip: Ipv4Addr, pid: Option<u32>) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + self.period();
        let timeout = Duration::from_secs(self.probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        let outcome = match tokio::time::timeout(timeout, attempt(&self.probe, container, ip, pid)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("timed out after {timeout:?}")),
        };
        let before = self.result;
        match outcome {
            Ok(()) => {
                self.last_error = None;
                self.failures = 0;
                self.successes += 1;
                if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                    self.result = Some(true);
                }
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                self.successes = 0;
                self.failures += 1;
                if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
                    self.result = Some(false);
                }
            }
        }
        before != self.result
    }
}

/// The port a probe names, by number or by the container's port name.
fn port(container: &Container, port: &IntOrString) -> Result<u16> {
    match port {
        IntOrString::Int(p) => Ok(u16::try_from(*p)?),
        IntOrString::String(name) => {
            let found = container.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name.as_str()));
            match found {
                Some(p) => Ok(u16::try_from(p.container_port)?),
                None => bail!("the container has no port named {name}"),
            }
        }
    }
}

async fn attempt(probe: &Probe, container: &Container, ip: Ipv4Addr, pid: Option<u32>) -> Result<()> {
    if let Some(http) = &probe.http_get {
        let addr = SocketAddr::from((ip, port(container, &http.port)?));
        if http.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            bail!("httpGet probes with scheme {:?} are not supported by the e2e kubelet", http.scheme);
        }
        let path = http.path.as_deref().unwrap_or("/");
        let client = reqwest::Client::builder().no_proxy().build()?;
        let mut request = client.get(format!("http://{addr}{path}"));
        for h in http.http_headers.iter().flatten() {
            request = request.header(&h.name, &h.value);
        }
        let status = request.send().await?.status();
        if status.is_success() || status.is_redirection() {
            return Ok(());
        }
        bail!("HTTP probe failed with statuscode: {}", status.as_u16());
    }
    if let Some(tcp) = &probe.tcp_socket {
        let addr = SocketAddr::from((ip, port(container, &tcp.port)?));
        tokio::net::TcpStream::connect(addr).await?;
        return Ok(());
    }
    if let Some(exec) = &probe.exec {
        let Some(pid) = pid else { bail!("the container is not running") };
        let command = exec.command.clone().unwrap_or_default();
        let status = tokio::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "-m", "-u", "--"])
            .args(&command)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await?;
        if status.success() {
            return Ok(());
        }
        bail!("command {command:?} exited with {status}");
    }
    bail!("a probe without httpGet, tcpSocket or exec (grpc is not supported by the e2e kubelet)")
}
