//! One server of a TransportService as a reconcile sees it: its pod, queue volume, rendered
//! configuration and what its admin API said; and the admin calls that drain it.
use crate::admin::{AdminConnector, ServerEndpoint};
use crate::build::RenderedServer;
use crate::names;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use transport::api::ServerInfo;
use transport::client::{AdminClient, ClientError};
use transport::config::{Component, ComponentState, Requester};

pub(super) struct Server {
    pub index: u32,
    pub name: String,
    /// Within `spec.servers`; false for a server being drained for removal.
    pub desired: bool,
    pub rendered: Option<RenderedServer>,
    /// The pod this server should run (with its restart hash).
    pub desired_pod: Option<Pod>,
    pub pod: Option<Pod>,
    pub pvc: Option<PersistentVolumeClaim>,
    pub admin: Option<AdminClient>,
    pub info: Option<ServerInfo>,
    pub admin_error: Option<String>,
    /// What the operator is doing with it (status `message`).
    pub note: Option<String>,
    /// Why the pod's node is being drained (cordoned, or a drain taint), if it is.
    pub node_drain: Option<String>,
}

impl Server {
    pub fn new(service: &str, index: u32, desired: bool) -> Self {
        Server {
            index,
            name: names::server_name(service, index),
            desired,
            rendered: None,
            desired_pod: None,
            pod: None,
            pvc: None,
            admin: None,
            info: None,
            admin_error: None,
            note: None,
            node_drain: None,
        }
    }

    /// The node the pod was scheduled on.
    pub fn node_name(&self) -> Option<&str> {
        self.pod.as_ref()?.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
    }

    /// The pod carries `kubetransport.io/evictable=true` (out of the PodDisruptionBudget).
    pub fn evictable(&self) -> bool {
        self.pod
            .as_ref()
            .and_then(|p| p.metadata.labels.as_ref())
            .and_then(|l| l.get(names::LABEL_EVICTABLE))
            .is_some_and(|v| v == "true")
    }

    pub fn pod_ip(&self) -> Option<&str> {
        self.pod.as_ref()?.status.as_ref()?.pod_ip.as_deref().filter(|ip| !ip.is_empty())
    }

    pub fn terminating(&self) -> bool {
        self.pod.as_ref().is_some_and(|p| p.metadata.deletion_timestamp.is_some())
    }

    pub fn pod_phase(&self) -> Option<String> {
        self.pod.as_ref()?.status.as_ref()?.phase.clone()
    }

    /// The pod's Ready condition is True (it gets SMTP clients through the Service).
    pub fn pod_ready(&self) -> bool {
        !self.terminating()
            && self
                .pod
                .as_ref()
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }

    /// The port of the Intra connector in the running pod.
    pub fn running_intra_port(&self) -> Option<u16> {
        let spec = self.pod.as_ref()?.spec.as_ref()?;
        let port = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(names::INTRA_PORT_NAME))?;
        u16::try_from(port.container_port).ok()
    }

    /// Up as far as the operator can tell: Ready, or answering its admin API while refusing
    /// mail on purpose (Paused, Stopped, a component not Active), which fails readiness by
    /// design and must not hold a rolling restart back.
    pub fn settled(&self) -> bool {
        !self.terminating() && (self.pod_ready() || self.info.as_ref().is_some_and(|i| !i.accepting_mail))
    }

    fn restart_hash(pod: Option<&Pod>) -> Option<&str> {
        pod?.metadata.annotations.as_ref()?.get(names::ANNOTATION_RESTART_HASH).map(String::as_str)
    }

    /// The running pod differs from the one wanted in a way only a restart applies, or the
    /// server itself says its file changed that way.
    pub fn needs_restart(&self) -> bool {
        if self.pod.is_none() || self.terminating() {
            return false;
        }
        Self::restart_hash(self.pod.as_ref()) != Self::restart_hash(self.desired_pod.as_ref())
            || self.info.as_ref().is_some_and(|i| i.restart_required)
    }

    /// Why a restart is needed, for Events.
    pub fn restart_reason(&self) -> String {
        let ports = |p: Option<&Pod>| {
            p.and_then(|p| p.spec.as_ref()).map(|s| s.containers.iter().map(|c| c.ports.clone()).collect::<Vec<_>>())
        };
        let image = |p: Option<&Pod>| {
            p.and_then(|p| p.spec.as_ref()).and_then(|s| s.containers.first()).and_then(|c| c.image.clone())
        };
        let (now, want) = (self.pod.as_ref(), self.desired_pod.as_ref());
        if ports(now) != ports(want) {
            "a receive connector's port changed".into()
        } else if image(now) != image(want) {
            format!("the image changed to {}", image(want).unwrap_or_default())
        } else if Self::restart_hash(now) != Self::restart_hash(want) {
            "a listener address or the pod's settings changed".into()
        } else {
            "the server reports that its new configuration needs a restart".into()
        }
    }

    /// What the Deployment requester asked of HubTransport (the operator's own drains).
    pub fn deployment_state(&self) -> ComponentState {
        self.info
            .as_ref()
            .and_then(|i| i.components.iter().find(|c| c.component == Component::HubTransport))
            .and_then(|c| c.requesters.iter().find(|r| r.requester == Requester::Deployment))
            .map(|r| r.state)
            .unwrap_or_default()
    }

    pub fn messages(&self) -> Option<u64> {
        self.info.as_ref().map(|i| i.totals.messages)
    }

    pub fn endpoint(&self, namespace: &str, service: &str, token: &str) -> ServerEndpoint {
        ServerEndpoint {
            namespace: namespace.to_string(),
            service: service.to_string(),
            server: self.name.clone(),
            pod_ip: self.pod_ip().map(str::to_string),
            token: Some(token.to_string()),
        }
    }

    /// Reads `GET /v1/server` when the pod is up and has an address.
    pub async fn poll(&mut self, connector: &dyn AdminConnector, endpoint: ServerEndpoint) {
        if self.pod.is_none() || self.terminating() || endpoint.pod_ip.is_none() {
            return;
        }
        let client = match connector.client(&endpoint) {
            Ok(c) => c,
            Err(e) => {
                self.admin_error = Some(e.to_string());
                return;
            }
        };
        match client.server().await {
            Ok(info) => self.info = Some(info),
            Err(e) => self.admin_error = Some(e.to_string()),
        }
        self.admin = Some(client);
    }

    /// HubTransport Draining by requester Deployment (refuse new mail, deliver what is
    /// queued). Ok(true) when the drain was asked just now.
    pub async fn drain(&mut self) -> Result<bool, ClientError> {
        if self.deployment_state() >= ComponentState::Draining {
            return Ok(false);
        }
        let client = self.admin.clone().ok_or_else(|| not_reachable(&self.name))?;
        let info =
            client.set_component(Component::HubTransport, Requester::Deployment, ComponentState::Draining).await?;
        self.info = Some(info);
        Ok(true)
    }

    /// Withdraws an operator drain that is no longer wanted (a scale-down undone).
    pub async fn undrain(&mut self) -> Result<(), ClientError> {
        if self.deployment_state() == ComponentState::Active {
            return Ok(());
        }
        let client = self.admin.clone().ok_or_else(|| not_reachable(&self.name))?;
        let info = client.set_component(Component::HubTransport, Requester::Deployment, ComponentState::Active).await?;
        self.info = Some(info);
        Ok(())
    }

    /// Hands the queue to `target` (`POST /v1/redirect`) unless a redirect is under way.
    /// Ok(true) when asked just now.
    pub async fn redirect(&mut self, target: &str) -> Result<bool, ClientError> {
        let Some(info) = &self.info else {
            return Err(not_reachable(&self.name));
        };
        if info.redirect.as_ref().is_some_and(|r| !r.done) {
            return Ok(false);
        }
        let client = self.admin.clone().ok_or_else(|| not_reachable(&self.name))?;
        let info = client.redirect(target).await?;
        self.info = Some(info);
        Ok(true)
    }
}

fn not_reachable(server: &str) -> ClientError {
    ClientError::Unreachable { url: format!("server {server}"), reason: "its admin API has not answered".into() }
}
