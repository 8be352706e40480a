//! The cluster's certificates and keys, as kubeadm lays them out: one CA that signs the API
//! server's serving certificate and every client certificate (the administrator in group
//! `system:masters`, the controller-manager and the scheduler under their bootstrap RBAC
//! names, each node as `system:node:<name>` in `system:nodes` so that the Node authorizer
//! applies), and the key that signs ServiceAccount tokens.
use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Pki {
    dir: PathBuf,
    ca: Certificate,
    ca_key: KeyPair,
    pub ca_file: PathBuf,
    /// The API server's serving certificate.
    pub serving: CertFiles,
    /// Signs ServiceAccount tokens (private key, PKCS#8) and verifies them (public key).
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

impl Pki {
    /// A new CA and serving certificate in `dir`, valid for `api_ip` and the names and
    /// address (`service_ip`, the first of the Service range) of the `kubernetes` Service.
    pub fn create(dir: &Path, api_ip: IpAddr, service_ip: IpAddr) -> Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let ca_key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "kube-transport-e2e-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = params.self_signed(&ca_key)?;
        let ca_file = dir.join("ca.crt");
        write(&ca_file, &ca.pem())?;
        write(&dir.join("ca.key"), &ca_key.serialize_pem())?;

        let sa = KeyPair::generate()?;
        let service_account_key = dir.join("sa.key");
        let service_account_pub = dir.join("sa.pub");
        write(&service_account_key, &sa.serialize_pem())?;
        write(&service_account_pub, &sa.public_key_pem())?;

        let mut pki = Pki {
            dir: dir.to_path_buf(),
            ca,
            ca_key,
            ca_file,
            serving: CertFiles { cert: PathBuf::new(), key: PathBuf::new() },
            service_account_key,
            service_account_pub,
        };
        let mut names: Vec<SanType> = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
            .into_iter()
            .chain(["kubernetes.default.svc.cluster.local"])
            .map(|n| Ok(SanType::DnsName(n.try_into()?)))
            .collect::<Result<_, rcgen::Error>>()?;
        names.push(SanType::IpAddress(api_ip));
        names.push(SanType::IpAddress(service_ip));
        names.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        pki.serving = pki.issue("apiserver", "kube-apiserver", &[], names, ExtendedKeyUsagePurpose::ServerAuth)?;
        Ok(pki)
    }

    /// A client certificate for user `user` in `groups` (file stem `name`).
    pub fn client(&self, name: &str, user: &str, groups: &[&str]) -> Result<CertFiles> {
        self.issue(name, user, groups, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        name: &str,
        common_name: &str,
        organizations: &[&str],
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<CertFiles> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, common_name);
        for o in organizations {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key)?;
        let files = CertFiles { cert: self.dir.join(format!("{name}.crt")), key: self.dir.join(format!("{name}.key")) };
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// A kubeconfig for `server` (`https://host:port`) with a client certificate, as files.
pub fn kubeconfig(path: &Path, server: &str, ca: &Path, client: &CertFiles, user: &str) -> Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {}\n\
         users:\n- name: {user}\n  user:\n    client-certificate: {}\n    client-key: {}\n\
         contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: {user}\ncurrent-context: e2e\n",
        ca.display(),
        client.cert.display(),
        client.key.display(),
    );
    write(path, &text)
}
