//! The MTA-STS peers of the integration tests (mta_sts.rs, tls_report.rs, dane.rs): a
//! test CA (rcgen), an HTTPS server publishing policies (tokio + rustls), MX hosts that
//! take mail over STARTTLS, and the config of the server that sends to them.
use super::inproc::{t0, InProc};
use super::{authoritative, Placement, TransportSetup};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use transport::clock::ManualClock;
use transport::config::{ReceiveSettings, TlsFiles, TransportFile};

pub fn policy(mode: &str, mx: &[&str], max_age: u64) -> String {
    let mx: String = mx.iter().map(|m| format!("mx: {m}\r\n")).collect();
    format!("version: STSv1\r\nmode: {mode}\r\n{mx}max_age: {max_age}\r\n")
}

/// A test CA and the certificates it issues.
pub struct Pki {
    pub ca: rcgen::Certificate,
    pub key: rcgen::KeyPair,
}

impl Pki {
    pub fn new() -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "kube-transport MTA-STS test CA");
        let ca = params.self_signed(&key).unwrap();
        Pki { ca, key }
    }

    /// A certificate for `names` and its key.
    pub fn issue(&self, names: &[String]) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names.to_vec()).unwrap().signed_by(&key, &self.ca, &self.key).unwrap();
        (cert, key)
    }
}

/// A TLS server side for `cert` and its key (the test peers' STARTTLS and HTTPS).
pub fn tls_acceptor(
    cert: rustls_pki_types::CertificateDer<'static>,
    key: &rcgen::KeyPair,
) -> tokio_rustls::TlsAcceptor {
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// An MX host (fqdn mx1.secure.test) listening on `bind` with STARTTLS, its certificate
/// for `name` from `pki`, taking mail for `domains` and delivering it to `mailbox`; its
/// files under `<dir>/hop`, on a test clock.
pub fn start_tls_hop(
    dir: &Path,
    pki: &Pki,
    name: &str,
    bind: SocketAddr,
    mailbox: SocketAddr,
    domains: &[&str],
) -> InProc {
    let (cert, key) = pki.issue(&[name.to_string()]);
    start_mx_host(&dir.join("hop"), "mx1.secure.test", (&cert.pem(), &key.serialize_pem()), bind, mailbox, domains)
}

/// An MX host named `fqdn` (its server name too) listening on `bind` with STARTTLS, its
/// certificate chain and key the PEM texts of `tls`, taking mail for `domains` and
/// delivering it to `mailbox`; it relays nothing. Its files under `at`, on a test clock.
pub fn start_mx_host(
    at: &Path,
    fqdn: &str,
    tls: (&str, &str),
    bind: SocketAddr,
    mailbox: SocketAddr,
    domains: &[&str],
) -> InProc {
    std::fs::create_dir_all(at).unwrap();
    let tls_files = TlsFiles { certificate_file: at.join("tls.crt"), key_file: at.join("tls.key") };
    std::fs::write(&tls_files.certificate_file, tls.0).unwrap();
    std::fs::write(&tls_files.key_file, tls.1).unwrap();
    let setup = TransportSetup {
        server_name: Some(fqdn.into()),
        fqdn: Some(fqdn.into()),
        mailbox: Some(mailbox),
        ..Default::default()
    };
    let mut file = setup.config_file(&Placement { dir: at, smtp: bind, admin: None, token_file: None });
    file.log_directory = None;
    // Anyone may connect; nothing is relayed.
    file.receive_connectors[0].settings = ReceiveSettings::default();
    file.receive_connectors[0].tls = Some(tls_files);
    file.transport_config.accepted_domains = authoritative(domains);
    file.transport_config.postmaster = Some(format!("postmaster@{fqdn}"));
    InProc::start_file(&file, at, ManualClock::new(t0()))
}

/// The sending server of the MTA-STS, TLS reporting and DANE tests (`sender`, fqdn
/// sender.test): SMTP on `smtp`; MX routing through the nameserver `dns` to port
/// `mx_port`, the CAs of `ca` trusted; its queue in `<dir>/queue` (where the test hooks'
/// files go), its logs in `<dir>/log`; DSNs and reports to local.test at `reports`.
pub fn sender_file(
    dir: &Path,
    smtp: SocketAddr,
    dns: SocketAddr,
    mx_port: u16,
    reports: SocketAddr,
    ca: &Path,
) -> TransportFile {
    let setup = TransportSetup {
        server_name: Some("sender".into()),
        fqdn: Some("sender.test".into()),
        dns_routing: true,
        connector_port: Some(mx_port),
        nameserver: Some(dns),
        mailbox: Some(reports),
        ..Default::default()
    };
    let mut file = setup.config_file(&Placement { dir, smtp, admin: None, token_file: None });
    let internet = &mut file.send_connectors[0];
    internet.name = "Internet".into();
    internet.tls_certificate_authorities = Some(ca.to_path_buf());
    file
}

/// A report POSTed to the server (RFC 8460 §5.3).
#[derive(Debug, Clone)]
pub struct Posted {
    pub host: String,
    pub path: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// An HTTPS server publishing policies by host name (`mta-sts.<domain>`), on its own
/// thread; it counts the requests it answers. Its certificate also names
/// `reports.<domain>`, where it takes TLS reports by POST (any path) and keeps them.
pub struct PolicyServer {
    pub port: u16,
    policies: Arc<Mutex<HashMap<String, String>>>,
    requests: Arc<AtomicUsize>,
    posted: Arc<Mutex<Vec<Posted>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PolicyServer {
    pub fn start(pki: &Pki, policies: &[(&str, String)]) -> PolicyServer {
        let names: Vec<String> = policies
            .iter()
            .flat_map(|(domain, _)| [format!("mta-sts.{domain}"), format!("reports.{domain}")])
            .collect();
        let (cert, key) = pki.issue(&names);
        let acceptor = tls_acceptor(cert.der().clone(), &key);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the HTTPS server");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let policies: HashMap<String, String> =
            policies.iter().map(|(domain, body)| (format!("mta-sts.{domain}"), body.clone())).collect();
        let policies = Arc::new(Mutex::new(policies));
        let requests = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let posted = Arc::new(Mutex::new(Vec::new()));
        let (served, count, kept) = (policies.clone(), requests.clone(), posted.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => {
                            let Ok((tcp, _)) = accepted else { continue };
                            tokio::spawn(answer(tcp, acceptor.clone(), served.clone(), count.clone(), kept.clone()));
                        }
                    }
                }
            });
        });
        PolicyServer { port, policies, requests, posted, stop: Some(stop), thread: Some(thread) }
    }

    pub fn publish(&self, domain: &str, body: String) {
        self.policies.lock().unwrap().insert(format!("mta-sts.{domain}"), body);
    }

    /// From now on a POST to `reports.<domain>` gets `response` (a whole HTTP/1.1 response)
    /// and is not kept.
    pub fn answer_reports_with(&self, domain: &str, response: &str) {
        self.policies.lock().unwrap().insert(format!("reports.{domain}"), response.to_string());
    }

    /// The reports POSTed so far.
    pub fn posted(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Closes the listening socket: connections are refused from now on.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP/1.1 exchange: the policy of the Host asked for, `text/plain`, or 404. What
/// is published starting with `HTTP/1.1 ` is sent as the whole response. A POST to
/// `reports.<domain>` is kept and answered 201, unless what is published for `<domain>`
/// as `reports.<domain>` starts with `HTTP/1.1 ` (then that is the answer).
async fn answer(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    policies: Arc<Mutex<HashMap<String, String>>>,
    requests: Arc<AtomicUsize>,
    posted: Arc<Mutex<Vec<Posted>>>,
) {
    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
    let mut request = Vec::new();
    let mut buf = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let head_len = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
    let text = String::from_utf8_lossy(&request[..head_len]).to_string();
    let header = |wanted: &str| {
        text.lines()
            .find_map(|l| {
                l.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case(wanted)).map(|(_, v)| v.trim())
            })
            .unwrap_or_default()
            .to_string()
    };
    let host = header("host").split(':').next().unwrap_or_default().to_ascii_lowercase();
    if let Some(path) = text.strip_prefix("POST ").and_then(|rest| rest.split(' ').next()) {
        let length: usize = header("content-length").parse().unwrap_or(0);
        let mut body = request[head_len..].to_vec();
        while body.len() < length {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
        let canned = policies.lock().unwrap().get(&host).cloned().filter(|r| r.starts_with("HTTP/1.1 "));
        let response = canned.unwrap_or_else(|| {
            let content_type = header("content-type");
            posted.lock().unwrap().push(Posted { host: host.clone(), path: path.to_string(), content_type, body });
            "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        });
        let _ = tls.write_all(response.as_bytes()).await;
        let _ = tls.shutdown().await;
        return;
    }
    let body = text
        .starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n")
        .then(|| policies.lock().unwrap().get(&host).cloned())
        .flatten();
    let response = match body {
        Some(raw) if raw.starts_with("HTTP/1.1 ") => raw,
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    };
    let _ = tls.write_all(response.as_bytes()).await;
    let _ = tls.shutdown().await;
}
