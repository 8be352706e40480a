//! Pod `<ts>-<i>` of one server, and its queue volume `<ts>-<i>-queue`. Pods are managed
//! one by one (as CloudNativePG does), so a single server can be drained, restarted or
//! removed without touching the others.
use super::{config_file::RenderedServer, owner_references};
use crate::crd::{TransportService, DEFAULT_STORAGE_SIZE};
use crate::names;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, KeyToPath,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext,
    PodSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Sysctl, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use transport::config::TransportFile;

/// Long enough for a server to finish its sessions and deliveries after SIGTERM.
pub const TERMINATION_GRACE_SECONDS: i64 = 300;
/// User and group of the transport process (the image's non-root user).
pub const RUN_AS: i64 = 65532;

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn secret_volume(name: String, secret: &str, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name,
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_string()),
            items,
            // Readable by the group (fsGroup), never by others.
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(names::ADMIN_PORT_NAME.to_string()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn tcp_port(name: String, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The pod spec of `server` (without metadata): what the pod-spec hash covers.
pub fn server_pod_spec(ts: &TransportService, server: &str, image: &str) -> PodSpec {
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    let spec = &ts.spec;

    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map_name(name),
                default_mode: Some(0o444),
                ..Default::default()
            }),
            ..Default::default()
        },
        secret_volume(
            "admin-token".into(),
            &names::admin_secret_name(name),
            Some(vec![
                KeyToPath { key: names::TOKEN_KEY.into(), path: names::TOKEN_KEY.into(), mode: None },
                KeyToPath { key: names::SHADOW_TOKEN_KEY.into(), path: names::SHADOW_TOKEN_KEY.into(), mode: None },
            ]),
        ),
        Volume {
            name: "queue".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::pvc_name(server),
                read_only: Some(false),
            }),
            ..Default::default()
        },
        Volume { name: "tmp".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() },
    ];
    let mut mounts = vec![
        mount("config", names::CONFIG_DIR, true),
        mount("admin-token", names::ADMIN_DIR, true),
        mount("queue", names::DATA_DIR, false),
        mount("tmp", "/tmp", false),
    ];
    let mut ports = Vec::new();
    for (i, c) in spec.receive_connectors.iter().enumerate() {
        ports.push(tcp_port(names::smtp_port_name(i), c.port));
        if let Some(tls) = &c.tls {
            let volume = format!("tls-{i}");
            volumes.push(secret_volume(volume.clone(), &tls.secret_name, None));
            mounts.push(mount(&volume, &format!("{}/{}", names::TLS_DIR, c.name), true));
        }
        if let Some(auth) = &c.auth {
            let volume = format!("auth-{i}");
            let items = vec![KeyToPath { key: auth.key().to_string(), path: "users".into(), mode: None }];
            volumes.push(secret_volume(volume.clone(), &auth.secret_name, Some(items)));
            mounts.push(mount(&volume, &format!("{}/{}", names::AUTH_DIR, c.name), true));
        }
    }
    if let Some(projected) = &spec.projected_volume_template {
        volumes.push(Volume { name: "projected".into(), projected: Some(projected.clone()), ..Default::default() });
        mounts.push(mount("projected", names::PROJECTED_DIR, true));
    }
    ports.push(tcp_port(names::INTRA_PORT_NAME.into(), spec.intra_port()));
    ports.push(tcp_port(names::ADMIN_PORT_NAME.into(), names::ADMIN_PORT));
    ports.push(tcp_port(names::SHADOW_PORT_NAME.into(), names::SHADOW_PORT));

    // A non-root process with no capabilities may bind below 1024 only when the pod lowers
    // the unprivileged port range (a namespaced, "safe" sysctl).
    let low_port = spec.receive_connectors.iter().any(|c| c.port < 1024) || spec.intra_port() < 1024;
    let sysctls =
        low_port.then(|| vec![Sysctl { name: "net.ipv4.ip_unprivileged_port_start".into(), value: "0".into() }]);

    let container = Container {
        name: "transport".into(),
        image: Some(image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(vec!["--config".into(), names::config_path(server), "--log-format".into(), "json".into()]),
        ports: Some(ports),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        // Recovering a large queue may take a while: the startup probe allows five minutes
        // before liveness starts counting.
        startup_probe: Some(http_probe("/healthz", 5, 60)),
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        readiness_probe: Some(http_probe("/readyz", 5, 2)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            ..Default::default()
        }),
        ..Default::default()
    };

    PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        hostname: Some(server.to_string()),
        subdomain: Some(names::headless_service_name(name)),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        enable_service_links: Some(false),
        automount_service_account_token: Some(false),
        restart_policy: Some("Always".into()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
            sysctls,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What only a restart changes: the pod spec, and the addresses the server listens on
/// (a receive connector's bind address is in the file, not in the pod spec). Pods whose
/// hash differs from the desired one are rolled, one at a time.
pub fn restart_hash(spec: &PodSpec, file: &TransportFile) -> String {
    let mut hasher = Sha256::new();
    // serde_json writes struct fields in declaration order and maps sorted (BTreeMap), so
    // the same spec always gives the same bytes.
    hasher.update(serde_json::to_vec(spec).unwrap_or_default());
    for c in &file.receive_connectors {
        hasher.update(format!("\n{}={}", c.name, c.bind).as_bytes());
    }
    if let Some(admin) = &file.admin {
        hasher.update(format!("\nadmin={}", admin.bind).as_bytes());
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The pod of `server`, annotated with the revision of the configuration it starts with
/// and its restart hash.
pub fn server_pod(ts: &TransportService, image: &str, server: &RenderedServer) -> Pod {
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    let spec = server_pod_spec(ts, &server.name, image);
    let annotations = BTreeMap::from([
        (names::ANNOTATION_CONFIG_REVISION.to_string(), server.revision.clone()),
        (names::ANNOTATION_RESTART_HASH.to_string(), restart_hash(&spec, &server.file)),
    ]);
    Pod {
        metadata: ObjectMeta {
            name: Some(server.name.clone()),
            namespace: ts.metadata.namespace.clone(),
            labels: Some(names::server_labels(name, &server.name)),
            annotations: Some(annotations),
            owner_references: owner_references(ts),
            ..Default::default()
        },
        spec: Some(spec),
        ..Default::default()
    }
}

/// The queue volume `<server>-queue` (size and class from `spec.storage`). It has no owner
/// reference: deleting the TransportService keeps the volumes and the mail queued on them
/// (as a StatefulSet keeps its claims), and a TransportService of the same name created
/// again finds them and delivers that mail. Scaling down deletes a volume only once its
/// queue is empty.
pub fn queue_pvc(ts: &TransportService, server: &str) -> PersistentVolumeClaim {
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    let storage = ts.spec.storage.clone().unwrap_or_default();
    let size = storage.size.unwrap_or_else(|| Quantity(DEFAULT_STORAGE_SIZE.into()));
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(names::pvc_name(server)),
            namespace: ts.metadata.namespace.clone(),
            labels: Some(names::server_labels(name, server)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                limits: None,
            }),
            storage_class_name: storage.storage_class_name,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::service;
    use crate::crd::{AuthSecretRef, ReceiveConnectorSpec, StorageSpec, TlsSecretRef};
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn rendered(ts: &TransportService, index: u32) -> RenderedServer {
        let file =
            crate::build::transport_file(ts, "prod", index, &crate::build::tests::org(), Default::default(), &[])
                .unwrap();
        crate::build::rendered(index, file).unwrap()
    }

    fn server_pod(ts: &TransportService, server: &str, image: &str) -> Pod {
        let index = names::server_index(ts.metadata.name.as_deref().unwrap(), server).unwrap();
        super::server_pod(ts, image, &rendered(ts, index))
    }

    fn hash(p: &Pod) -> String {
        p.metadata.annotations.as_ref().unwrap()["kubetransport.io/restart-hash"].clone()
    }

    fn container(p: &Pod) -> &Container {
        &p.spec.as_ref().unwrap().containers[0]
    }

    #[test]
    fn pod_runs_the_servers_file_with_probes_on_the_admin_port() {
        let pod = server_pod(&service("mail", 2), "mail-1", "img:1");
        assert_eq!(pod.metadata.name.as_deref(), Some("mail-1"));
        let c = container(&pod);
        assert_eq!(c.name, "transport");
        assert_eq!(c.image.as_deref(), Some("img:1"));
        assert_eq!(
            c.args.clone().unwrap(),
            vec!["--config", "/etc/kube-transport/config/mail-1.yaml", "--log-format", "json"]
        );
        let live = c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        let ready = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!((live.path.as_deref(), ready.path.as_deref()), (Some("/healthz"), Some("/readyz")));
        let admin = c.ports.iter().flatten().find(|p| p.name.as_deref() == Some("admin")).unwrap();
        assert_eq!(admin.container_port, 8025);
        assert_eq!(live.port, IntOrString::String("admin".into()));
    }

    #[test]
    fn pod_is_locked_down_and_drains_before_it_is_killed() {
        let pod = server_pod(&service("mail", 1), "mail-0", "img:1");
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.termination_grace_period_seconds.unwrap() >= 300);
        let psc = spec.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert!(psc.sysctls.is_none(), "no sysctl for unprivileged ports");
        let sc = container(&pod).security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(spec.hostname.as_deref(), Some("mail-0"));
        assert_eq!(spec.subdomain.as_deref(), Some("mail-headless"));
    }

    #[test]
    fn pod_labels_annotations_and_owner() {
        let ts = service("mail", 1);
        let pod = server_pod(&ts, "mail-0", "img:1");
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "kube-transport");
        assert_eq!(labels["app.kubernetes.io/instance"], "mail");
        assert_eq!(labels["kubetransport.io/server"], "mail-0");
        let ann = pod.metadata.annotations.clone().unwrap();
        let r = rendered(&ts, 0);
        assert_eq!(ann["kubetransport.io/config-revision"], r.revision);
        assert_eq!(ann["kubetransport.io/restart-hash"], restart_hash(pod.spec.as_ref().unwrap(), &r.file));
        assert_eq!(pod.metadata.owner_references.unwrap()[0].controller, Some(true));
    }

    #[test]
    fn volumes_mount_config_token_queue_tls_and_users() {
        let mut ts = service("mail", 1);
        ts.spec.receive_connectors.push(ReceiveConnectorSpec {
            name: "Submission".into(),
            port: 587,
            tls: Some(TlsSecretRef { secret_name: "mail-tls".into() }),
            auth: Some(AuthSecretRef { secret_name: "mail-users".into(), key: Some("htpasswd".into()) }),
            ..Default::default()
        });
        let pod = server_pod(&ts, "mail-0", "img:1");
        let spec = pod.spec.as_ref().unwrap();
        let mounts: BTreeMap<String, String> =
            container(&pod).volume_mounts.iter().flatten().map(|m| (m.mount_path.clone(), m.name.clone())).collect();
        let volume = |mount_path: &str| {
            let name = &mounts[mount_path];
            spec.volumes.iter().flatten().find(|v| &v.name == name).unwrap().clone()
        };
        assert_eq!(volume("/etc/kube-transport/config").config_map.unwrap().name, "mail-config");
        assert_eq!(
            volume("/etc/kube-transport/admin").secret.unwrap().secret_name.as_deref(),
            Some("mail-admin-token")
        );
        assert_eq!(volume("/var/lib/kube-transport").persistent_volume_claim.unwrap().claim_name, "mail-0-queue");
        assert_eq!(
            volume("/etc/kube-transport/tls/Submission").secret.unwrap().secret_name.as_deref(),
            Some("mail-tls")
        );
        let users = volume("/etc/kube-transport/auth/Submission").secret.unwrap();
        assert_eq!(users.secret_name.as_deref(), Some("mail-users"));
        let item = &users.items.unwrap()[0];
        assert_eq!((item.key.as_str(), item.path.as_str()), ("htpasswd", "users"));
        // Mount paths match the files the rendered config names.
        let file = crate::build::config_file::tls_files("Submission");
        assert!(file.certificate_file.starts_with("/etc/kube-transport/tls/Submission"));
    }

    #[test]
    fn the_projected_volume_template_is_mounted_read_only_at_projected() {
        use k8s_openapi::api::core::v1::{ConfigMapProjection, ProjectedVolumeSource, VolumeProjection};
        let plain = server_pod(&service("mail", 1), "mail-0", "img:1");
        assert!(container(&plain).volume_mounts.iter().flatten().all(|m| m.mount_path != "/projected"));

        let mut ts = service("mail", 1);
        let bundle = ConfigMapProjection {
            name: "corp-ca".into(),
            items: Some(vec![KeyToPath { key: "ca.crt".into(), path: "ca/ca.crt".into(), mode: None }]),
            ..Default::default()
        };
        let template = ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection { config_map: Some(bundle), ..Default::default() }]),
            ..Default::default()
        };
        ts.spec.projected_volume_template = Some(template.clone());
        let pod = server_pod(&ts, "mail-0", "img:1");
        let mount = container(&pod).volume_mounts.iter().flatten().find(|m| m.mount_path == "/projected").unwrap();
        assert_eq!(mount.read_only, Some(true));
        let volume = pod.spec.as_ref().unwrap().volumes.iter().flatten().find(|v| v.name == mount.name).unwrap();
        assert_eq!(volume.projected.as_ref(), Some(&template));
        // A new volume is a change of the pod: only a restart applies it.
        assert_ne!(hash(&pod), hash(&plain));
    }

    #[test]
    fn resources_come_from_the_spec_and_low_ports_get_the_sysctl() {
        let mut ts = service("mail", 1);
        ts.spec.receive_connectors[0].port = 25;
        let res = ResourceRequirements {
            requests: Some(BTreeMap::from([("memory".to_string(), Quantity("256Mi".into()))])),
            ..Default::default()
        };
        ts.spec.resources = Some(res.clone());
        let pod = server_pod(&ts, "mail-0", "img:1");
        assert_eq!(container(&pod).resources, Some(res));
        let sysctls = pod.spec.unwrap().security_context.unwrap().sysctls.unwrap();
        assert_eq!(sysctls[0].name, "net.ipv4.ip_unprivileged_port_start");
    }

    #[test]
    fn restart_hash_changes_with_a_port_or_bind_and_not_with_a_reloadable_setting() {
        let ts = service("mail", 1);
        let before = hash(&server_pod(&ts, "mail-0", "img:1"));
        let mut reloadable = ts.clone();
        reloadable.spec.retry =
            Some(transport::config::RetrySettings { poison_threshold: Some(3), ..Default::default() });
        reloadable.spec.receive_connectors[0].settings.max_recipients_per_message = Some(50);
        assert_eq!(before, hash(&server_pod(&reloadable, "mail-0", "img:1")), "a reloadable change does not restart");
        let mut moved = ts.clone();
        moved.spec.receive_connectors[0].port = 2600;
        assert_ne!(before, hash(&server_pod(&moved, "mail-0", "img:1")), "a port change restarts");
        let mut rebound = ts.clone();
        rebound.spec.receive_connectors[0].bind = Some("127.0.0.1".into());
        assert_ne!(before, hash(&server_pod(&rebound, "mail-0", "img:1")), "a bind change restarts");
        assert_ne!(before, hash(&server_pod(&ts, "mail-0", "img:2")), "an image change restarts");
    }

    #[test]
    fn queue_pvc_defaults_to_1gi_and_takes_the_class() {
        let mut ts = service("mail", 1);
        let pvc = queue_pvc(&ts, "mail-0");
        assert_eq!(pvc.metadata.name.as_deref(), Some("mail-0-queue"));
        assert!(pvc.metadata.owner_references.is_none(), "the mail outlives the TransportService");
        let spec = pvc.spec.unwrap();
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"], Quantity("1Gi".into()));
        assert_eq!(spec.access_modes.unwrap(), vec!["ReadWriteOnce"]);
        ts.spec.storage =
            Some(StorageSpec { size: Some(Quantity("5Gi".into())), storage_class_name: Some("fast".into()) });
        let spec = queue_pvc(&ts, "mail-0").spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"], Quantity("5Gi".into()));
    }
}
