//! kube-proxy's part: each Service (not headless) gets an address of its own in the
//! Services' namespace (`10.244.<n>.128`–`.191`, never its ClusterIP, which nothing may
//! connect to), and a connection to one of its ports goes to one of the Service's *ready*
//! endpoints (EndpointSlices, as the endpointslice controller publishes them), round robin.
//! A pod that is not Ready gets no new connections; with no ready endpoint the connection
//! is closed at once. A Service of type LoadBalancer gets its address in
//! `status.loadBalancer.ingress`, so `kubectl get svc` shows where to connect.
use super::network::Network;
use anyhow::Result;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// `namespace/name` of a Service.
pub type ServiceKey = String;

/// Ready endpoints of each Service port, and each Service's address.
#[derive(Default)]
pub struct Table {
    endpoints: RwLock<HashMap<(ServiceKey, u16), Vec<SocketAddr>>>,
    addresses: Mutex<BTreeMap<ServiceKey, Ipv4Addr>>,
    /// The cluster DNS names of the Services and of headless Services' endpoints.
    pub records: Arc<super::dns::Records>,
}

impl Table {
    /// The address a Service is reachable at (once the proxy has seen it).
    pub fn address(&self, key: &str) -> Option<Ipv4Addr> {
        self.addresses.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied()
    }

    /// Every Service the proxy serves, with its address.
    pub fn all(&self) -> BTreeMap<ServiceKey, Ipv4Addr> {
        self.addresses.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The ports a Service has now.
    pub fn ports(&self, key: &str) -> Vec<u16> {
        let table = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        let mut ports: Vec<u16> = table.keys().filter(|(k, _)| k == key).map(|(_, p)| *p).collect();
        ports.sort();
        ports
    }

    /// The ready endpoints behind a Service port now.
    pub fn endpoints(&self, key: &str, port: u16) -> Vec<SocketAddr> {
        let table = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        table.get(&(key.to_string(), port)).cloned().unwrap_or_default()
    }
}

/// Keeps listeners and endpoints in step with the API every 300 ms, until dropped.
pub async fn run(client: kube::Client, net: Arc<Network>, table: Arc<Table>) {
    let mut listeners: HashMap<(ServiceKey, u16), JoinHandle<()>> = HashMap::new();
    loop {
        if let Err(e) = pass(&client, &net, &table, &mut listeners).await {
            tracing::warn!(error = %e, "service proxy");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn pass(
    client: &kube::Client,
    net: &Network,
    table: &Arc<Table>,
    listeners: &mut HashMap<(ServiceKey, u16), JoinHandle<()>>,
) -> Result<()> {
    let services = Api::<Service>::all(client.clone()).list(&ListParams::default()).await?.items;
    let slices = Api::<EndpointSlice>::all(client.clone()).list(&ListParams::default()).await?.items;
    let mut endpoints: HashMap<(ServiceKey, u16), Vec<SocketAddr>> = HashMap::new();
    let mut wanted = Vec::new();
    let mut records = HashMap::new();
    for svc in &services {
        let spec = svc.spec.clone().unwrap_or_default();
        let domain = format!("{}.{}.svc.{}", svc.name_any(), svc.namespace().unwrap_or_default(), super::dns::DOMAIN);
        if spec.cluster_ip.as_deref() == Some("None") {
            let all = spec.publish_not_ready_addresses.unwrap_or(false);
            for (hostname, ip) in hostnames(&slices, svc, all) {
                records.insert(format!("{hostname}.{domain}"), ip);
            }
            continue;
        }
        let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
        let address = {
            let mut addresses = table.addresses.lock().unwrap_or_else(|e| e.into_inner());
            match addresses.get(&key) {
                Some(a) => *a,
                None => {
                    let a = net.service_address()?;
                    addresses.insert(key.clone(), a);
                    a
                }
            }
        };
        records.insert(domain, address);
        if spec.type_.as_deref() == Some("LoadBalancer") {
            let shown = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref())
                .and_then(|i| i.first())
                .and_then(|i| i.ip.clone());
            if shown.as_deref() != Some(address.to_string().as_str()) {
                let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": address.to_string()}]}}});
                let api: Api<Service> = Api::namespaced(client.clone(), &svc.namespace().unwrap_or_default());
                let _ = api.patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await;
            }
        }
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Ok(service_port) = u16::try_from(port.port) else { continue };
            let ready = ready_endpoints(&slices, svc, port.name.as_deref());
            endpoints.insert((key.clone(), service_port), ready);
            wanted.push((key.clone(), service_port, address));
        }
    }
    *table.endpoints.write().unwrap_or_else(|e| e.into_inner()) = endpoints;
    table.records.replace(records);
    for (key, port, address) in &wanted {
        let id = (key.clone(), *port);
        if listeners.contains_key(&id) {
            continue;
        }
        let listener = net.services.listen(SocketAddr::from((*address, *port)))?;
        tracing::info!(service = %key, address = %SocketAddr::from((*address, *port)), "service address");
        listeners.insert(id, tokio::spawn(serve(listener, key.clone(), *port, table.clone())));
    }
    listeners.retain(|(key, port), task| {
        let keep = wanted.iter().any(|(k, p, _)| k == key && p == port);
        if !keep {
            task.abort();
        }
        keep
    });
    Ok(())
}

/// The endpoints of headless `svc` that have a hostname, with their address: the ready
/// ones, or every one that is not terminating when `all` (publishNotReadyAddresses).
fn hostnames(slices: &[EndpointSlice], svc: &Service, all: bool) -> Vec<(String, Ipv4Addr)> {
    slices_of(slices, svc)
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| {
            let c = e.conditions.as_ref();
            (all || c.and_then(|c| c.ready).unwrap_or(true)) && !c.and_then(|c| c.terminating).unwrap_or(false)
        })
        .filter_map(|e| Some((e.hostname.clone()?, e.addresses.first()?.parse().ok()?)))
        .collect()
}

/// The EndpointSlices the endpointslice controller publishes for `svc`.
fn slices_of<'a>(slices: &'a [EndpointSlice], svc: &Service) -> impl Iterator<Item = &'a EndpointSlice> {
    let (name, ns) = (svc.name_any(), svc.namespace());
    slices.iter().filter(move |s| s.labels().get("kubernetes.io/service-name") == Some(&name) && s.namespace() == ns)
}

/// The ready endpoints of `svc`'s port named `port_name` from its EndpointSlices.
fn ready_endpoints(slices: &[EndpointSlice], svc: &Service, port_name: Option<&str>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for slice in slices_of(slices, svc) {
        if slice.address_type != "IPv4" {
            continue;
        }
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or_default() == port_name.unwrap_or_default())
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        for e in &slice.endpoints {
            let conditions = e.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            if !ready || terminating {
                continue;
            }
            for a in &e.addresses {
                if let Ok(ip) = a.parse::<Ipv4Addr>() {
                    out.push(SocketAddr::from((ip, port)));
                }
            }
        }
    }
    out.sort();
    out
}

async fn serve(listener: tokio::net::TcpListener, key: ServiceKey, port: u16, table: Arc<Table>) {
    let next = AtomicUsize::new(0);
    loop {
        let Ok((mut client, _)) = listener.accept().await else { continue };
        let ready = table.endpoints(&key, port);
        if ready.is_empty() {
            // No ready endpoint: the connection is refused, as kube-proxy's REJECT rule does.
            drop(client);
            continue;
        }
        let target = ready[next.fetch_add(1, Ordering::Relaxed) % ready.len()];
        tokio::spawn(async move {
            if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}
