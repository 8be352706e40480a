//! The Helm chart as a user gets it: the real `helm` renders charts/kube-transport with the
//! default values and with every option on (ci/full-values.yaml), and these tests read what
//! it produced: kinds, the operator's RBAC verb by verb, images, probes, security contexts,
//! leader election, the optional objects, the CRDs (which must be crds/ exactly), the custom
//! resources it creates, the helm test hook, the values schema refusing bad values, and the
//! Grafana dashboard and PrometheusRule, whose every metric and label name is checked
//! against the `/metrics` of a transport server started here.
use e2e::kind::manifests::{check_custom_resources, find, kind, name, namespace, of_kind, parse_docs};
use e2e::kind::tools::{helm, repo_root, run, run_ok};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const RELEASE: &str = "kt";
const NS: &str = "kube-transport-system";
const FULLNAME: &str = "kt-kube-transport";
const LIMIT: Duration = Duration::from_secs(60);

fn chart() -> String {
    repo_root().join("charts/kube-transport").display().to_string()
}

fn full_values() -> String {
    repo_root().join("charts/kube-transport/ci/full-values.yaml").display().to_string()
}

fn app_version() -> String {
    let text = std::fs::read_to_string(repo_root().join("charts/kube-transport/Chart.yaml")).unwrap();
    let chart: Value = serde_yaml::from_str(&text).unwrap();
    chart["appVersion"].as_str().expect("appVersion").to_string()
}

/// `helm template` of the chart with `extra` arguments, as documents.
fn render(extra: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", RELEASE, chart.as_str(), "--namespace", NS];
    args.extend_from_slice(extra);
    parse_docs(&run_ok(&helm(), &args, LIMIT))
}

fn render_full() -> Vec<Value> {
    let values = full_values();
    render(&["-f", &values, "--api-versions", "kubetransport.io/v1alpha1"])
}

fn kinds(docs: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for d in docs {
        *counts.entry(kind(d).to_string()).or_insert(0) += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn hook_annotation<'a>(doc: &'a Value, key: &str) -> &'a str {
    doc["metadata"]["annotations"][key].as_str().unwrap_or_default()
}

/// `(apiGroup, resource) -> verbs` of a role's rules (resourceNames noted after a `#`).
fn rule_table(role: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut table: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in role["rules"].as_array().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let resource = if names.is_empty() { resource } else { format!("{resource}#{}", names.join(",")) };
                table.entry((group.clone(), resource)).or_default().extend(strings(&rule["verbs"]));
            }
        }
    }
    table
}

fn table(rows: &[(&str, &str, &[&str])]) -> BTreeMap<(String, String), BTreeSet<String>> {
    rows.iter()
        .map(|(g, r, verbs)| ((g.to_string(), r.to_string()), verbs.iter().map(|v| v.to_string()).collect()))
        .collect()
}

const CRUD: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];
const APPLIED: &[&str] = &["get", "list", "watch", "create", "patch"];

/// What the operator needs in each namespace it watches, and nothing more (the e2e suite
/// on the real control plane proves each is used, from the audit log).
fn namespaced_rules() -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    vec![
        ("kubetransport.io", "transportservices", &["get", "list", "watch"]),
        ("kubetransport.io", "transportconfigs", &["get", "list", "watch"]),
        ("kubetransport.io", "servercomponentstates", &["list", "watch", "patch"]),
        ("kubetransport.io", "transportservices/status", &["patch"]),
        ("kubetransport.io", "transportconfigs/status", &["patch"]),
        ("kubetransport.io", "servercomponentstates/status", &["patch"]),
        ("", "pods", CRUD),
        ("", "persistentvolumeclaims", CRUD),
        ("", "configmaps", APPLIED),
        ("", "services", APPLIED),
        ("", "secrets", &["create", "patch"]),
        ("policy", "poddisruptionbudgets", APPLIED),
        ("events.k8s.io", "events", &["create", "patch"]),
    ]
}

fn assert_no_wildcards(docs: &[Value]) {
    for role in docs.iter().filter(|d| kind(d) == "Role" || kind(d) == "ClusterRole") {
        for rule in role["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(
                    !strings(&rule[field]).iter().any(|s| s.contains('*')),
                    "{} {} grants a wildcard in {field}: {rule}",
                    kind(role),
                    name(role)
                );
            }
        }
    }
}

fn assert_bound_to(binding: &Value, role_kind: &str, role: &str, service_account: &str) {
    assert_eq!(binding["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}));
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": service_account, "namespace": NS}]),
        "{} {}",
        kind(binding),
        name(binding)
    );
}

#[test]
fn default_values_render_the_operator_with_hardened_defaults() {
    let docs = render(&[]);
    assert_eq!(
        kinds(&docs),
        counts(&[
            ("ClusterRole", 1),
            ("ClusterRoleBinding", 1),
            // the token key Secret, by name, in the release namespace
            ("Role", 1),
            ("RoleBinding", 1),
            ("CustomResourceDefinition", 3),
            ("Deployment", 1),
            // the metrics Service and the helm test's sink
            ("Service", 2),
            ("ServiceAccount", 1),
            // the helm test hook
            ("Pod", 1),
            ("TransportConfig", 1),
            ("TransportService", 1),
        ]),
        "no NetworkPolicy, ServiceMonitor, PodMonitor, PodDisruptionBudget, Lease Role or default CRs unless asked for"
    );
    let version = app_version();
    let deployment = find(&docs, "Deployment", FULLNAME);
    assert_eq!(namespace(deployment), NS);
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        deployment["spec"]["strategy"]["type"], "Recreate",
        "without leader election two operators must never run at once"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], FULLNAME);
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let operator = container(deployment, "operator");
    assert_eq!(operator["image"], format!("ghcr.io/kube-transport/transport-operator:{version}"));
    assert_eq!(
        strings(&operator["args"]),
        vec![
            "--metrics-bind=0.0.0.0:8080".to_string(),
            format!("--transport-image=ghcr.io/kube-transport/transport:{version}"),
            format!("--token-key-secret={FULLNAME}-token-key"),
        ],
        "one replica, every namespace: no --namespace, no --leader-elect"
    );
    assert_eq!(operator["ports"], json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(operator["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "metrics"}));
    assert_eq!(operator["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "metrics"}));
    assert_eq!(
        operator["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}})
    );
    assert!(
        operator["resources"]["requests"]["memory"].is_string()
            && operator["resources"]["limits"]["memory"].is_string()
    );
    let env: Vec<(String, Value)> = operator["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.get("valueFrom").cloned().unwrap_or(e["value"].clone())))
        .collect();
    assert_eq!(
        env,
        vec![
            ("POD_NAME".to_string(), json!({"fieldRef": {"fieldPath": "metadata.name"}})),
            ("POD_NAMESPACE".to_string(), json!({"fieldRef": {"fieldPath": "metadata.namespace"}})),
            ("RUST_LOG".to_string(), json!("info")),
        ]
    );
    let metrics = find(&docs, "Service", &format!("{FULLNAME}-metrics"));
    assert_eq!(metrics["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"]);
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "metrics");
    // The operator's pods must not look like transport pods: scripts and the PodMonitor
    // select those by app.kubernetes.io/name=kube-transport.
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
        "kube-transport-operator"
    );
}

#[test]
fn rbac_grants_exactly_what_the_operator_calls() {
    let docs = render(&[]);
    assert_no_wildcards(&docs);
    let role = find(&docs, "ClusterRole", FULLNAME);
    let mut expected = namespaced_rules();
    expected.push(("", "nodes", &["get", "list", "watch"]));
    assert_eq!(rule_table(role), table(&expected));
    assert_bound_to(find(&docs, "ClusterRoleBinding", FULLNAME), "ClusterRole", FULLNAME, FULLNAME);
    // The one Secret it reads: its token key, in its own namespace.
    let key_role = format!("{FULLNAME}-token-key");
    let key = find(&docs, "Role", &key_role);
    assert_eq!(namespace(key), NS);
    assert_eq!(
        rule_table(key),
        table(&[("", "secrets", &["create"]), ("", &format!("secrets#{FULLNAME}-token-key"), &["get"])])
    );
    assert_bound_to(find(&docs, "RoleBinding", &key_role), "Role", &key_role, FULLNAME);
    assert_eq!(of_kind(&docs, "Role").len(), 1, "no Lease role without leader election");
}

#[test]
fn one_watched_namespace_gets_a_role_and_replicas_get_leader_election() {
    let docs = render_full();
    assert_no_wildcards(&docs);
    let sa = "mail-operator";
    assert_eq!(find(&docs, "ServiceAccount", sa)["metadata"]["annotations"]["example.com/owner"], "mail-team");

    // The namespaced rules as a Role in the watched namespace, plus the extra rule.
    let role = find(&docs, "Role", FULLNAME);
    assert_eq!(namespace(role), "mail");
    let mut expected = namespaced_rules();
    expected.push(("example.com", "widgets", &["get"]));
    assert_eq!(rule_table(role), table(&expected));
    let binding = find(&docs, "RoleBinding", FULLNAME);
    assert_eq!(namespace(binding), "mail");
    assert_bound_to(binding, "Role", FULLNAME, sa);
    // Only Nodes stay cluster-wide.
    let nodes = format!("{FULLNAME}-nodes");
    assert_eq!(rule_table(find(&docs, "ClusterRole", &nodes)), table(&[("", "nodes", &["get", "list", "watch"])]));
    assert_bound_to(find(&docs, "ClusterRoleBinding", &nodes), "ClusterRole", &nodes, sa);
    assert_eq!(of_kind(&docs, "ClusterRole").len(), 1);

    // The Lease, in the release namespace, by name.
    let lease_role = find(&docs, "Role", &format!("{FULLNAME}-leader-election"));
    assert_eq!(namespace(lease_role), NS);
    assert_eq!(
        rule_table(lease_role),
        table(&[
            ("coordination.k8s.io", "leases", &["create"]),
            ("coordination.k8s.io", "leases#mail-operator", &["get", "patch"]),
        ])
    );
    assert_bound_to(
        find(&docs, "RoleBinding", &format!("{FULLNAME}-leader-election")),
        "Role",
        &format!("{FULLNAME}-leader-election"),
        sa,
    );

    let deployment = find(&docs, "Deployment", FULLNAME);
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    let operator = container(deployment, "operator");
    assert_eq!(operator["image"], "registry.example.com/mail/transport-operator:9.9.9");
    assert_eq!(operator["imagePullPolicy"], "Always");
    assert_eq!(
        strings(&operator["args"]),
        vec![
            "--metrics-bind=0.0.0.0:9090",
            "--transport-image=registry.example.com/mail/transport@sha256:0000000000000000000000000000000000000000000000000000000000000001",
            "--token-key-secret=kt-kube-transport-token-key",
            "--namespace=mail",
            "--leader-elect",
            "--lease-name=mail-operator",
        ]
    );
    assert_eq!(
        operator["readinessProbe"]["httpGet"]["path"], "/healthz",
        "a standby replica waiting for the Lease is healthy: /readyz would stall every rollout"
    );
    assert_eq!(operator["ports"][0]["containerPort"], 9090);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "registry-credentials"}]));
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(deployment["spec"]["template"]["metadata"]["labels"]["team"], "mail");

    let pdb = find(&docs, "PodDisruptionBudget", FULLNAME);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"]);
}

#[test]
fn optional_objects_follow_their_toggles() {
    let docs = render_full();
    let deployment = find(&docs, "Deployment", FULLNAME);
    let selector = &deployment["spec"]["selector"]["matchLabels"];

    let policy = find(&docs, "NetworkPolicy", FULLNAME);
    assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], selector);
    assert_eq!(strings(&policy["spec"]["policyTypes"]), vec!["Ingress", "Egress"]);
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{
            "ports": [{"port": "metrics", "protocol": "TCP"}],
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
        }])
    );
    let egress = policy["spec"]["egress"].as_array().unwrap();
    assert_eq!(
        egress[0],
        json!({"to": [{"ipBlock": {"cidr": "172.18.0.0/16"}}], "ports": [{"port": 6443, "protocol": "TCP"}]})
    );
    assert_eq!(
        egress[1],
        json!({
            "to": [{
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kube-transport", "app.kubernetes.io/managed-by": "kube-transport-operator"}},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mail"}}
            }],
            "ports": [{"port": 8025, "protocol": "TCP"}]
        }),
        "the admin API of the transport servers in the watched namespace"
    );
    assert_eq!(egress[2]["ports"], json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]));
    assert_eq!(egress.len(), 3);

    let monitor = find(&docs, "ServiceMonitor", FULLNAME);
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(&monitor["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}])
    );
    let pods = find(&docs, "PodMonitor", &format!("{FULLNAME}-transport"));
    assert_eq!(pods["spec"]["namespaceSelector"], json!({"matchNames": ["mail"]}));
    assert_eq!(pods["spec"]["podMetricsEndpoints"][0]["port"], "admin");
    assert_eq!(pods["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"], "kube-transport");

    // And without them: no ServiceMonitor without its Service, no PDB for one replica.
    let failed = run(
        &helm(),
        &["template", RELEASE, &chart(), "--set", "metrics.serviceMonitor.enabled=true,metrics.service.enabled=false"],
        LIMIT,
    );
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr)
        .contains("metrics.serviceMonitor.enabled needs metrics.service.enabled"));
    let one = render(&["--set", "podDisruptionBudget.enabled=true,networkPolicy.enabled=true"]);
    assert!(of_kind(&one, "PodDisruptionBudget").is_empty(), "a PDB of one replica would block every node drain");
    let one_policy = find(&one, "NetworkPolicy", FULLNAME);
    assert_eq!(one_policy["spec"]["ingress"], json!([{"ports": [{"port": "metrics", "protocol": "TCP"}]}]));
    assert_eq!(one_policy["spec"]["egress"][1]["to"][0]["namespaceSelector"], json!({}), "every namespace");
}

/// `value` with every number as a float, so `0` and `0.0` compare equal.
fn numbers_as_f64(value: Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect()),
        other => other,
    }
}

#[test]
fn crds_are_exactly_the_crds_folder_and_kept_on_uninstall() {
    let root = repo_root();
    let files = |dir: &str| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect()
    };
    let crds = files("crds");
    let copies = files("charts/kube-transport/files/crds");
    assert_eq!(
        copies.keys().collect::<Vec<_>>(),
        crds.keys().collect::<Vec<_>>(),
        "the chart's CRD files are not those of crds/: run `make chart-crds`"
    );
    for (file, bytes) in &crds {
        assert!(
            copies[file] == *bytes,
            "charts/kube-transport/files/crds/{file} differs from crds/{file}: run `make chart-crds`"
        );
    }

    let docs = render(&[]);
    let rendered = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(rendered.len(), crds.len());
    for (file, bytes) in &crds {
        let mut expected: Value = serde_yaml::from_slice(bytes).unwrap();
        let mut got =
            (*rendered.iter().find(|d| name(d) == name(&expected)).unwrap_or_else(|| panic!("{file} not rendered")))
                .clone();
        assert_eq!(
            got["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "helm uninstall must not delete {file} (and with it every resource of that kind)"
        );
        assert_eq!(got["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm");
        // Apart from what the chart adds to metadata, the object is the one in crds/.
        got["metadata"].as_object_mut().unwrap().remove("annotations");
        got["metadata"].as_object_mut().unwrap().remove("labels");
        for meta in ["annotations", "labels"] {
            if let Some(v) = expected["metadata"].as_object_mut().unwrap().remove(meta) {
                panic!("crds/{file} has metadata.{meta} {v}: compare them too");
            }
        }
        // helm's toYaml writes `minimum: 0.0` as `0`: the same JSON number to the API server.
        assert!(
            numbers_as_f64(got) == numbers_as_f64(expected),
            "the chart renders {file} differently from crds/{file}"
        );
    }

    let without = render(&["--set", "crds.create=false"]);
    assert!(of_kind(&without, "CustomResourceDefinition").is_empty());
}

#[test]
fn custom_resources_of_the_chart_are_valid_for_the_operator() {
    // With every option on: the defaults (once the API is served) and the test hook.
    let docs = render_full();
    let tc = find(&docs, "TransportConfig", "default");
    let ts = find(&docs, "TransportService", "relay");
    for cr in [tc, ts] {
        assert_eq!(namespace(cr), "mail", "created where the operator watches");
        assert_eq!(
            hook_annotation(cr, "helm.sh/resource-policy"),
            "keep",
            "uninstalling the chart must not delete servers and their queues"
        );
    }
    assert_eq!(ts["spec"]["servers"], 2);
    let problems = check_custom_resources(&docs);
    assert!(problems.is_empty(), "{problems:#?}");
    let problems = check_custom_resources(&render(&[]));
    assert!(problems.is_empty(), "{problems:#?}");

    // Before the cluster serves kubetransport.io the defaults are left out (Helm cannot
    // create them in the release that creates their CRDs), and NOTES.txt says so.
    let set = "defaults.transportConfig.create=true,defaults.transportService.create=true";
    let skipped = render(&["--set", set]);
    assert!(of_kind(&skipped, "TransportService")
        .iter()
        .all(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test"));
    let dry_run = run_ok(&helm(), &["install", RELEASE, &chart(), "-n", NS, "--dry-run=client", "--set", set], LIMIT);
    assert!(dry_run.contains("the default TransportConfig/TransportService were NOT created"), "{dry_run}");
}

#[test]
fn notes_show_a_first_transport_service_that_the_operator_accepts() {
    let out = run_ok(&helm(), &["install", RELEASE, &chart(), "-n", NS, "--dry-run=client"], LIMIT);
    let notes = out.split("NOTES:").nth(1).expect("NOTES");
    // The manifest between "save this as mail.yaml" and the apply command, indented by two.
    let start = notes.find("apiVersion: kubetransport.io").expect("a manifest in NOTES");
    let end = notes[start..].find("kubectl -n").expect("an apply command") + start;
    let manifest: String =
        notes[start..end].lines().map(|l| l.strip_prefix("  ").unwrap_or(l)).collect::<Vec<_>>().join("\n");
    let docs = parse_docs(&manifest);
    assert_eq!(docs.iter().map(kind).collect::<Vec<_>>(), ["TransportConfig", "TransportService"]);
    let problems = check_custom_resources(&docs);
    assert!(problems.is_empty(), "{problems:#?}");
    for command in [
        "apply --server-side -f mail.yaml",
        "wait transportservice/mail --for=condition=Ready",
        format!("helm test {RELEASE} -n {NS}").as_str(),
    ] {
        assert!(notes.contains(command), "NOTES lack `{command}`:\n{notes}");
    }
}

#[test]
fn helm_test_sends_a_message_through_a_throw_away_service_to_a_sink() {
    let docs = render(&[]);
    let hooks: Vec<&Value> = docs.iter().filter(|d| hook_annotation(d, "helm.sh/hook") == "test").collect();
    let name = format!("{FULLNAME}-smoke");
    // Created in this order (weights), all deleted once the test passed.
    let order: Vec<(String, String, i32)> = hooks
        .iter()
        .map(|d| {
            (
                kind(d).to_string(),
                e2e::kind::manifests::name(d).to_string(),
                hook_annotation(d, "helm.sh/hook-weight").parse().unwrap(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort_by_key(|(_, _, w)| *w);
    assert_eq!(
        sorted.iter().map(|(k, n, _)| (k.as_str(), n.as_str())).collect::<Vec<_>>(),
        vec![
            ("TransportConfig", name.as_str()),
            ("TransportService", name.as_str()),
            ("Service", format!("{name}-sink").as_str()),
            ("Pod", name.as_str()),
        ]
    );
    for hook in &hooks {
        assert_eq!(hook_annotation(hook, "helm.sh/hook-delete-policy"), "before-hook-creation,hook-succeeded");
        assert_eq!(namespace(hook), NS);
    }

    let ts = find(&docs, "TransportService", &name);
    assert_eq!(ts["spec"]["transportConfigRef"]["name"], name.as_str());
    let sink_host = format!("{name}-sink.{NS}.svc.cluster.local:2526");
    assert_eq!(ts["spec"]["sendConnectors"][0]["smartHosts"], json!([sink_host]));
    assert_eq!(ts["spec"]["sendConnectors"][0]["addressSpaces"], json!([{"domain": "helm-test.invalid"}]));
    assert_eq!(ts["spec"]["receiveConnectors"][0]["port"], 2525);

    let sink = find(&docs, "Service", &format!("{name}-sink"));
    let pod = hooks.iter().find(|d| kind(d) == "Pod").unwrap();
    assert_eq!(
        sink["spec"]["selector"]["kubetransport.io/helm-test"],
        pod["metadata"]["labels"]["kubetransport.io/helm-test"]
    );
    let image = format!("ghcr.io/kube-transport/mailtools:{}", app_version());
    let sidecar = &pod["spec"]["initContainers"][0];
    assert_eq!(sidecar["restartPolicy"], "Always", "smtp-sink runs as a native sidecar");
    assert_eq!(sidecar["image"], image);
    assert_eq!(strings(&sidecar["command"])[0], "/usr/sbin/smtp-sink");
    let send = &pod["spec"]["containers"][0];
    assert_eq!(send["image"], image);
    let env: BTreeMap<&str, &Value> =
        send["env"].as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap(), e)).collect();
    assert_eq!(env["SERVER"]["value"], format!("{name}.{NS}.svc.cluster.local:2525"), "the TransportService's Service");
    assert_eq!(env["TOKEN"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.uid");
    let script = strings(&send["command"]).join(" ");
    assert!(script.contains("swaks") && script.contains("grep -rqs \"${TOKEN}\" /sink"), "{script}");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);

    let off = render(&["--set", "tests.enabled=false"]);
    assert!(off.iter().all(|d| hook_annotation(d, "helm.sh/hook").is_empty()));
}

#[test]
fn values_schema_refuses_wrong_values_with_their_name() {
    let chart = chart();
    for (set, expected) in [
        ("replicas=0", "replicas"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("watchNamespace=Not_A_Namespace", "watchNamespace"),
        ("replcas=2", "replcas"),
        ("transportImage.digest=latest", "digest"),
    ] {
        let out = run(&helm(), &["template", RELEASE, &chart, "--set", set], LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(stderr.contains("values don't meet the specifications of the schema"), "--set {set}: {stderr}");
        assert!(stderr.contains(expected), "--set {set}: the error does not name {expected}: {stderr}");
    }
}

// The Grafana dashboard and the PrometheusRule (issue 16): off by default, and every
// metric they name is one a running transport server exports.

const RULE: &str = "kt-kube-transport-transport";
const DASHBOARD: &str = "kt-kube-transport-dashboard";

/// The alerts, in the order of templates/prometheusrule.yaml, with their key in
/// `metrics.prometheusRule.alerts`.
const ALERTS: &[(&str, &str)] = &[
    ("TransportServerNotStarted", "serverNotStarted"),
    ("TransportComponentNotActive", "componentNotActive"),
    ("TransportQueueInRetry", "queueInRetry"),
    ("TransportMessagesNearExpiry", "messagesNearExpiry"),
    ("TransportPoisonMessages", "poisonMessages"),
    ("TransportStorageRefusals", "storageRefusals"),
    ("TransportQueueStorageFailing", "storageFailing"),
];

/// Each subject issue 16 asks the dashboard to show: a panel of that title, and the
/// metrics its queries must read.
const DASHBOARD_SUBJECTS: &[(&str, &[&str])] = &[
    ("Queue sizes by status", &["transport_queue_messages"]),
    ("Queue sizes by queue", &["transport_queue_messages"]),
    ("Queues in Retry", &["transport_queue_retry_seconds"]),
    ("Retry queues", &["transport_queue_retry_seconds"]),
    ("Delivery rate", &["transport_recipients_delivered_total"]),
    (
        "Deferrals and failures by next hop",
        &["transport_recipients_deferred_total", "transport_recipients_failed_total"],
    ),
    ("Acceptance latency", &["transport_message_acceptance_seconds_bucket"]),
    ("ServerState", &["transport_server_state"]),
    ("Component states", &["transport_component_state"]),
    ("Shadow queues", &["transport_shadow_messages"]),
    ("Poison messages", &["transport_queue_messages"]),
    (
        "Oldest message and expiration",
        &["transport_queue_oldest_message_seconds", "transport_message_expiration_seconds"],
    ),
];

/// Labels a scrape adds to every series (the chart's PodMonitor: the pod's namespace and
/// name); the queries may use them besides a metric's own labels.
const TARGET_LABELS: &[&str] = &["namespace", "pod"];

fn alert_rules(docs: &[Value]) -> Vec<Value> {
    let rule = find(docs, "PrometheusRule", RULE);
    rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter().cloned())
        .collect()
}

fn dashboard_json(docs: &[Value]) -> Value {
    let map = find(docs, "ConfigMap", DASHBOARD);
    let data = map["data"].as_object().expect("data");
    assert_eq!(data.len(), 1, "one dashboard: {:?}", data.keys().collect::<Vec<_>>());
    let (key, text) = data.iter().next().unwrap();
    assert!(key.ends_with(".json"), "the sidecar only loads *.json keys: {key}");
    serde_json::from_str(text.as_str().expect("a string")).unwrap_or_else(|e| panic!("{key} is not JSON: {e}"))
}

/// Every PromQL query of the dashboard: `(where, query)`, panels' targets and the
/// variables' queries (`label_values(<selector>, <label>)` gives its selector).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("a target without expr: {target}"));
            out.push((
                format!(
                    "panel {:?} {}",
                    panel["title"].as_str().unwrap_or_default(),
                    target["refId"].as_str().unwrap_or_default()
                ),
                expr.to_string(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"].as_str().or(variable["query"].as_str()).expect("a variable query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .map(|(selector, _label)| selector)
            .unwrap_or_else(|| panic!("variable {}: not label_values(<selector>, <label>): {query}", variable["name"]));
        out.push((format!("variable {}", variable["name"]), inner.to_string()));
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Punct(char),
    /// `{...}`: the label names of its matchers.
    Matchers(Vec<String>),
}

/// Index after the string literal starting at `i` (`"`, `'` or a backquote).
fn skip_string(chars: &[char], i: usize) -> Result<usize, String> {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' if quote != '`' => j += 2,
            c if c == quote => return Ok(j + 1),
            _ => j += 1,
        }
    }
    Err(format!("an unterminated string at {i}"))
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// PromQL (with Grafana's `$variables`) as tokens: identifiers, punctuation, and each
/// `{...}` as the label names it matches on. Strings, numbers, durations, `[...]` ranges
/// and variables are dropped.
fn promql_tokens(expr: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |i: &mut usize| -> String {
        let start = *i;
        while *i < chars.len() && is_ident(chars[*i]) {
            *i += 1;
        }
        chars[start..*i].iter().collect()
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i)?;
        } else if c == '$' {
            // A Grafana variable: $pod, ${datasource}, $__rate_interval.
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                ident(&mut i);
            }
        } else if c == '[' {
            // A range or subquery: durations and variables only.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            if i == chars.len() {
                return Err("an unclosed [".into());
            }
            i += 1;
        } else if c == '{' {
            let mut labels = Vec::new();
            i += 1;
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                match chars.get(i) {
                    None => return Err("an unclosed {".into()),
                    Some('}') => {
                        i += 1;
                        break;
                    }
                    Some(&c) if is_ident_start(c) => labels.push(ident(&mut i)),
                    Some(c) => return Err(format!("a label name expected in {{...}}, not {c:?}")),
                }
                while i < chars.len() && chars[i].is_whitespace() {
                    i += 1;
                }
                let op_start = i;
                while i < chars.len() && matches!(chars[i], '=' | '!' | '~') {
                    i += 1;
                }
                let op: String = chars[op_start..i].iter().collect();
                if !["=", "!=", "=~", "!~"].contains(&op.as_str()) {
                    return Err(format!("a matcher operator expected after {:?}, not {op:?}", labels.last()));
                }
                while i < chars.len() && chars[i].is_whitespace() {
                    i += 1;
                }
                if !matches!(chars.get(i), Some('"' | '\'' | '`')) {
                    return Err(format!("a quoted value expected after {:?}{op}", labels.last()));
                }
                i = skip_string(&chars, i)?;
            }
            out.push(Token::Matchers(labels));
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // 0.75, 1e3, 0x1f, or a duration (offset 5m).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                i += 1;
            }
        } else if is_ident_start(c) {
            out.push(Token::Ident(ident(&mut i)));
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    Ok(out)
}

/// PromQL's functions and aggregation operators (Prometheus 3).
const PROMQL_FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count",
    "count_over_time",
    "count_values",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "end",
    "exp",
    "floor",
    "group",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "limitk",
    "limit_ratio",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "start",
    "stddev",
    "stddev_over_time",
    "stdvar",
    "stdvar_over_time",
    "sum",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "topk",
    "vector",
    "year",
];

/// Keywords (binary operators, modifiers, special values).
const PROMQL_KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];

/// Keywords followed by a list of label names.
const PROMQL_GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// What a query reads: its metric names, and every label name it matches on or groups by.
#[derive(Debug, Default, PartialEq)]
struct Reads {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
    /// Label names of `by (...)`, `on (...)` and the like: what an alert's result keeps.
    grouping: BTreeSet<String>,
}

/// The metrics and labels of a PromQL query. Any identifier that is not a function,
/// keyword or grouping label is taken for a metric name, and must start with
/// `transport_`: a misspelt function or metric fails here or against the exported names.
fn promql_reads(expr: &str) -> Result<Reads, String> {
    let tokens = promql_tokens(expr)?;
    let mut reads = Reads::default();
    let mut i = 0;
    while i < tokens.len() {
        let next = tokens.get(i + 1);
        match &tokens[i] {
            Token::Ident(word) if PROMQL_GROUPING.contains(&word.as_str()) => {
                if next == Some(&Token::Punct('(')) {
                    i += 2;
                    loop {
                        match tokens.get(i) {
                            Some(Token::Ident(label)) => {
                                reads.labels.insert(label.clone());
                                reads.grouping.insert(label.clone());
                            }
                            Some(Token::Punct(',')) => {}
                            Some(Token::Punct(')')) => break,
                            other => return Err(format!("a label list of {word} holds {other:?}")),
                        }
                        i += 1;
                    }
                } else if !word.starts_with("group_") {
                    return Err(format!("{word} without a label list"));
                }
            }
            Token::Ident(word) if PROMQL_KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) => {}
            Token::Ident(word) if PROMQL_FUNCTIONS.contains(&word.as_str()) => {
                let aggregation = matches!(next, Some(Token::Ident(w)) if w == "by" || w == "without");
                if next != Some(&Token::Punct('(')) && !aggregation {
                    return Err(format!("the function {word} is not called"));
                }
            }
            Token::Ident(word) => {
                if next == Some(&Token::Punct('(')) {
                    return Err(format!("{word}(...) is not a PromQL function"));
                }
                if !word.starts_with("transport_") {
                    return Err(format!("{word} is neither a PromQL function or keyword nor a transport_ metric"));
                }
                reads.metrics.insert(word.clone());
            }
            Token::Matchers(labels) => {
                if !matches!(i.checked_sub(1).map(|p| &tokens[p]), Some(Token::Ident(w)) if w.starts_with("transport_"))
                {
                    return Err("label matchers without a metric name before them".into());
                }
                if labels.iter().any(|l| l == "__name__") {
                    return Err("a metric chosen by __name__ cannot be checked".into());
                }
                reads.labels.extend(labels.iter().cloned());
            }
            Token::Punct(_) => {}
        }
        i += 1;
    }
    Ok(reads)
}

#[test]
fn promql_reads_finds_every_metric_and_refuses_what_it_cannot_name() {
    let reads = promql_reads(
        r#"histogram_quantile(0.99, sum by (le, pod) (rate(transport_a_bucket{namespace=~"$namespace", code="452 4.3.1"}[$__rate_interval])))
           / ignoring (x) group_left max without (y) (transport_b offset 5m) > bool 1e3 or vector(0)"#,
    )
    .unwrap();
    assert_eq!(reads.metrics, BTreeSet::from(["transport_a_bucket".to_string(), "transport_b".to_string()]));
    assert_eq!(reads.labels, ["code", "le", "namespace", "pod", "x", "y"].map(String::from).into_iter().collect());
    assert_eq!(reads.grouping, ["le", "pod", "x", "y"].map(String::from).into_iter().collect());
    // Quoted text is never taken for a name: "sum(foo)" below is a label value.
    assert_eq!(promql_reads(r#"transport_a{x="sum(foo) by"}"#).unwrap().metrics.len(), 1);
    for (bad, why) in [
        ("sum(transprt_queue_messages)", "nor a transport_ metric"),
        ("rat(transport_a[5m])", "not a PromQL function"),
        ("sum by (pod) (up)", "nor a transport_ metric"),
        (r#"{__name__="transport_a"}"#, "without a metric name"),
        ("transport_a{pod=foo}", "a quoted value"),
        ("transport_a{pod=\"x\"", "unclosed"),
        ("transport_a{pod=\"x}", "unterminated"),
        ("max by pod (transport_a)", "without a label list"),
    ] {
        let err = promql_reads(bad).expect_err(bad);
        assert!(err.contains(why), "{bad}: {err}");
    }
}

/// A transport server on loopback ports, with a smart host nobody listens on: one message
/// sent to it puts its queue in Retry. It runs in this process, started as the `transport`
/// binary's main starts it (`Server::start` with the system clock), so it is always the
/// code of this tree: a `transport` binary beside the test could be an older build.
struct Server {
    server: transport::server::Server,
    admin: std::net::SocketAddr,
    smtp: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

fn free_loopback_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (smtp, admin, dead) = (free_loopback_addr(), free_loopback_addr(), free_loopback_addr());
        let setup = testkit::TransportSetup {
            server_name: Some("chart-0".into()),
            fqdn: Some("chart.test.invalid".into()),
            smart_host: Some(dead),
            ..Default::default()
        };
        let at = testkit::config_file::Placement { dir: dir.path(), smtp, admin: Some(admin), token_file: None };
        let config = testkit::config_file::config_text(&setup.config_file(&at));
        let path = dir.path().join("transport.yaml");
        std::fs::write(&path, &config).unwrap();
        let file = transport::config::TransportFile::load(&path).expect("a valid configuration");
        let options = transport::server::StartOptions {
            clock: std::sync::Arc::new(transport::clock::SystemClock),
            config_path: Some(path),
            config_text: config,
        };
        let server = transport::server::Server::start(file, options).await.expect("the server starts");
        Server { server, admin, smtp, _dir: dir }
    }

    async fn metrics(&self) -> Option<String> {
        reqwest::get(format!("http://{}/metrics", self.admin)).await.ok()?.error_for_status().ok()?.text().await.ok()
    }

    /// `/metrics` once `done` holds for it, within `limit`.
    async fn metrics_when(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let text = self.metrics().await;
            if let Some(text) = text.as_deref().filter(|t| done(t)) {
                return text.to_string();
            }
            assert!(std::time::Instant::now() < deadline, "{what} within {limit:?}; /metrics:\n{text:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The name of a sample line and its label names.
fn sample(line: &str) -> (String, BTreeSet<String>) {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..end].to_string();
    let mut labels = BTreeSet::new();
    if line[end..].starts_with('{') {
        let chars: Vec<char> = line[end + 1..].chars().collect();
        let mut i = 0;
        while i < chars.len() && chars[i] != '}' {
            let start = i;
            while chars[i] != '=' {
                i += 1;
            }
            labels.insert(chars[start..i].iter().collect::<String>().trim_start_matches(',').to_string());
            i = skip_string(&chars, i + 1).expect("a quoted label value");
        }
    }
    (name, labels)
}

/// What a `/metrics` text exports: every sample name each `# TYPE` line stands for
/// (prometheus-client declares every registered family, samples or not; a counter's
/// samples end in `_total`, a histogram's in `_bucket`, `_sum` and `_count`), and the
/// label names of the samples present.
fn exported(text: &str) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(declared) = line.strip_prefix("# TYPE ") else { continue };
        let (family, kind) = declared.split_once(' ').expect("# TYPE name type");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "gauge" | "unknown" | "stateset" => &[""],
            "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            "info" => &["_info"],
            other => panic!("a metric type this test does not know: {other}"),
        };
        names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
    }
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (name, names_of_sample) = sample(line);
        assert!(names.contains(&name), "the sample {line:?} is not a name its # TYPE line stands for");
        labels.entry(name).or_default().extend(names_of_sample);
    }
    (names, labels)
}

/// `/metrics` of a running server after one message (to a next hop that refuses every
/// connection, so its queue is in Retry) and one refused command: most families have
/// samples, so label names are checked too.
fn running_server_metrics() -> String {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let server = Server::start().await;
        server.metrics_when("the admin API answers", Duration::from_secs(30), |_| true).await;
        let (mut smtp, banner) = testkit::AsyncSmtpClient::connect(server.smtp).await.expect("connect");
        assert!(banner.starts_with("220"), "{banner}");
        let refused = smtp.cmd("XYZZY").await.unwrap();
        assert!(refused.starts_with('5'), "{refused}");
        let to = "bob@example.net";
        let message = e2e::scenario::smtp::message("chart-1", to);
        let reply = e2e::scenario::smtp::send(&mut smtp, "alice@example.org", to, &message).await.unwrap();
        assert!(reply.starts_with("250"), "{reply}");
        let text = server
            .metrics_when("the queue goes into Retry", Duration::from_secs(60), |t| {
                t.lines().any(|l| l.starts_with("transport_queue_retry_seconds{"))
            })
            .await;
        server.server.shutdown().await;
        text
    })
}

/// Checks one query against what the server exports; returns the label names it could not
/// check (they belong to a metric that has no sample yet).
fn check_query(
    place: &str,
    expr: &str,
    names: &BTreeSet<String>,
    labels: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let reads = promql_reads(expr).unwrap_or_else(|e| panic!("{place}: {e}: {expr}"));
    assert!(!reads.metrics.is_empty(), "{place} reads no metric: {expr}");
    for metric in &reads.metrics {
        assert!(names.contains(metric), "{place}: a transport server exports no {metric}: {expr}");
    }
    let mut unchecked = Vec::new();
    for label in &reads.labels {
        if TARGET_LABELS.contains(&label.as_str()) {
            continue;
        }
        if reads.metrics.iter().any(|m| labels.get(m).is_some_and(|ls| ls.contains(label))) {
            continue;
        }
        let unsampled: Vec<&String> = reads.metrics.iter().filter(|m| !labels.contains_key(*m)).collect();
        assert!(!unsampled.is_empty(), "{place}: no metric of the query has a label {label}: {expr}");
        unchecked.push(format!("{place}: {label} (of {unsampled:?})"));
    }
    unchecked
}

#[test]
fn dashboard_and_alerts_are_off_by_default_and_on_by_their_values() {
    let docs = render(&[]);
    assert!(of_kind(&docs, "PrometheusRule").is_empty());
    assert!(of_kind(&docs, "ConfigMap").is_empty());

    let rule_only = render(&["--set", "metrics.prometheusRule.enabled=true"]);
    assert!(of_kind(&rule_only, "ConfigMap").is_empty());
    assert_eq!(namespace(find(&rule_only, "PrometheusRule", RULE)), NS);

    let dashboard_only = render(&["--set", "metrics.dashboard.enabled=true"]);
    assert!(of_kind(&dashboard_only, "PrometheusRule").is_empty());
    let map = find(&dashboard_only, "ConfigMap", DASHBOARD);
    assert_eq!(namespace(map), NS, "the release namespace by default");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1", "the label Grafana's sidecar looks for");
    assert!(map["metadata"].get("annotations").is_none(), "no folder unless one is set");

    let docs = render_full();
    let map = find(&docs, "ConfigMap", DASHBOARD);
    assert_eq!(namespace(map), "monitoring");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["metadata"]["labels"]["team"], "mail");
    assert_eq!(map["metadata"]["annotations"], json!({"grafana_folder": "Mail"}));
    let rule = find(&docs, "PrometheusRule", RULE);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");

    // Another sidecar label and folder annotation.
    let other = render(&[
        "--set",
        "metrics.dashboard.enabled=true,metrics.dashboard.sidecarLabel=example.com/dashboard,\
         metrics.dashboard.sidecarLabelValue=mail,metrics.dashboard.folder=Transport,\
         metrics.dashboard.folderAnnotation=example.com/folder",
    ]);
    let map = find(&other, "ConfigMap", DASHBOARD);
    assert_eq!(map["metadata"]["labels"]["example.com/dashboard"], "mail");
    assert!(map["metadata"]["labels"].get("grafana_dashboard").is_none());
    assert_eq!(map["metadata"]["annotations"], json!({"example.com/folder": "Transport"}));

    for (set, expected) in [
        ("metrics.prometheusRule.alerts.queueInRetry.longerThan=an-hour", "longerThan"),
        ("metrics.prometheusRule.alerts.poisonMessages.for=5", "for"),
        ("metrics.prometheusRule.alerts.messagesNearExpiry.fractionOfExpiration=2", "fractionOfExpiration"),
        ("metrics.prometheusRule.alerts.storageFailing.sevrity=page", "sevrity"),
        ("metrics.dashboard.sidecarLabel=not a label", "sidecarLabel"),
    ] {
        let out = run(&helm(), &["template", RELEASE, &chart(), "--set", set], LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(stderr.contains(expected), "--set {set}: the error does not name {expected}: {stderr}");
    }
}

/// `metrics.prometheusRule.alerts` of values.yaml with ci/full-values.yaml over it.
fn alert_values() -> Value {
    let read = |path: &str| -> Value {
        let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
        let values: Value = serde_yaml::from_str(&text).unwrap();
        values["metrics"]["prometheusRule"]["alerts"].clone()
    };
    let mut alerts = read("charts/kube-transport/values.yaml");
    let full = read("charts/kube-transport/ci/full-values.yaml");
    for (alert, settings) in full.as_object().expect("full-values sets some alerts") {
        for (key, value) in settings.as_object().unwrap() {
            alerts[alert][key] = value.clone();
        }
    }
    alerts
}

#[test]
fn every_alert_has_a_duration_a_severity_and_a_runbook() {
    let docs = render_full();
    let rules = alert_rules(&docs);
    assert_eq!(
        rules.iter().map(|r| r["alert"].as_str().expect("an alerting rule")).collect::<Vec<_>>(),
        ALERTS.iter().map(|(name, _)| *name).collect::<Vec<_>>()
    );
    let values = alert_values();
    for (rule, (name, key)) in rules.iter().zip(ALERTS) {
        let settings = &values[key];
        assert_eq!(rule["for"], settings["for"], "{name}: `for` comes from metrics.prometheusRule.alerts.{key}.for");
        assert_eq!(rule["labels"]["severity"], settings["severity"], "{name}");
        assert_eq!(rule["labels"]["team"], "mail", "{name}: alertLabels");
        let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("{name}: no expr"));
        let reads = promql_reads(expr).unwrap_or_else(|e| panic!("{name}: {e}"));
        let annotations = rule["annotations"].as_object().unwrap_or_else(|| panic!("{name}: no annotations"));
        for field in ["summary", "description", "runbook"] {
            let text = annotations.get(field).and_then(Value::as_str).unwrap_or_default();
            assert!(text.len() > 20 && text.ends_with('.'), "{name}: annotations.{field} is not a sentence: {text:?}");
            // Each `$labels.x` must be a label the expression keeps (its `by (...)`).
            for part in text.split("$labels.").skip(1) {
                let label: String = part.chars().take_while(|c| is_ident(*c)).collect();
                assert!(reads.grouping.contains(&label), "{name}: {field} uses $labels.{label}, which {expr} drops");
            }
        }
        let runbook = annotations["runbook"].as_str().unwrap();
        assert!(
            runbook.contains("transportctl") || runbook.contains("kubectl"),
            "{name}: the runbook names no command: {runbook}"
        );
    }
    // The thresholds of ci/full-values.yaml.
    let expr = |name: &str| rules.iter().find(|r| r["alert"] == name).unwrap()["expr"].as_str().unwrap().to_string();
    assert!(expr("TransportQueueInRetry").ends_with("(transport_queue_retry_seconds) > 5400"), "1h30m");
    assert!(expr("TransportMessagesNearExpiry").contains("> 0.5 * max by"));
    assert!(expr("TransportStorageRefusals").contains(r#"{code="452 4.3.1"}[10m]"#));

    // Each alert's own `for` and severity, whatever the defaults are.
    let mut set = vec!["metrics.prometheusRule.enabled=true".to_string()];
    for (i, (_, key)) in ALERTS.iter().enumerate() {
        set.push(format!("metrics.prometheusRule.alerts.{key}.for={}m", 71 + i));
        set.push(format!("metrics.prometheusRule.alerts.{key}.severity=page-{i}"));
    }
    set.push("metrics.prometheusRule.alerts.storageRefusals.window=7m".into());
    let rules = alert_rules(&render(&["--set", &set.join(",")]));
    for (i, (rule, (name, _))) in rules.iter().zip(ALERTS).enumerate() {
        assert_eq!(rule["for"], format!("{}m", 71 + i), "{name}");
        assert_eq!(rule["labels"]["severity"], format!("page-{i}"), "{name}");
    }
    let refusals = rules.iter().find(|r| r["alert"] == "TransportStorageRefusals").unwrap();
    assert!(refusals["expr"].as_str().unwrap().contains("[7m]"));
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_with_a_panel_for_each_subject() {
    let docs = render_full();
    let dashboard = dashboard_json(&docs);
    let file = std::fs::read_to_string(repo_root().join("charts/kube-transport/files/dashboard.json")).unwrap();
    assert_eq!(dashboard, serde_json::from_str::<Value>(&file).unwrap(), "the ConfigMap holds files/dashboard.json");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40));
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = variables.iter().find(|v| v["name"] == "datasource").expect("a datasource variable");
    assert_eq!((&datasource["type"], &datasource["query"]), (&json!("datasource"), &json!("prometheus")));

    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        assert!(ids.insert(panel["id"].as_u64().expect("a numeric id")), "{title}: id used twice");
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().unwrap_or_else(|| panic!("{title}: gridPos")));
        assert!(x + w <= 24 && w > 0 && h > 0, "{title}: {grid}");
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            if let Some(other) = cells.insert(cell, title.clone()) {
                panic!("{title} overlaps {other}");
            }
        }
        if panel["type"] == "row" {
            continue;
        }
        // Every query through the data source the user picks.
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    for (title, metrics) in DASHBOARD_SUBJECTS {
        let panel = panels.iter().find(|p| p["title"] == *title).unwrap_or_else(|| panic!("no panel {title:?}"));
        let mut read = BTreeSet::new();
        for target in panel["targets"].as_array().unwrap() {
            read.extend(promql_reads(target["expr"].as_str().unwrap()).unwrap().metrics);
        }
        for metric in *metrics {
            assert!(read.contains(*metric), "panel {title:?} does not read {metric}: {read:?}");
        }
    }
}

#[test]
fn every_metric_of_the_alerts_and_the_dashboard_is_exported_by_a_running_server() {
    let text = running_server_metrics();
    let (names, labels) = exported(&text);
    // Families without a sample yet are declared all the same, and that is what makes a
    // name check against a fresh server complete (no DSN was made here).
    assert!(text.contains("# TYPE transport_dsns counter"), "{text}");
    assert!(!labels.contains_key("transport_dsns_total"), "{text}");
    assert!(names.contains("transport_dsns_total"));

    let docs = render_full();
    let mut queries: Vec<(String, String)> = alert_rules(&docs)
        .iter()
        .map(|r| (format!("alert {}", r["alert"]), r["expr"].as_str().unwrap().to_string()))
        .collect();
    let alerts = queries.len();
    queries.extend(dashboard_queries(&dashboard_json(&docs)));
    assert!(queries.len() > alerts + 20, "the dashboard's queries: {queries:#?}");
    let mut unchecked = Vec::new();
    for (i, (place, expr)) in queries.iter().enumerate() {
        let missing = check_query(place, expr, &names, &labels);
        // The alerts' metrics all have samples on this server: their labels are all checked.
        assert!(i >= alerts || missing.is_empty(), "{missing:?}");
        unchecked.extend(missing);
    }
    // Labels of counters this server had no occasion to count yet (deliveries, failures):
    // their names are checked, their label names only by the unit tests of metrics.rs.
    eprintln!("label names not checked against a sample: {unchecked:#?}");
}

/// The rows of the README table whose header line is `header`, as trimmed cells.
fn readme_table(header: &str) -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    testkit::doc_table::rows(&readme, header)
}

/// README's tables are what users copy into a values file: every value it names is one of
/// values.yaml, and its alerts are the PrometheusRule's with their default `for`.
#[test]
fn readme_values_and_alerts_are_the_charts() {
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("charts/kube-transport/values.yaml")).unwrap())
            .expect("values.yaml");
    for row in readme_table("| value | default | what |") {
        for name in row[0].split('`').skip(1).step_by(2) {
            // `a.b/c.d` is a.b.d and a.c.d; `image.*` is the map image.
            let name = name.trim_end_matches(".*");
            let expanded: Vec<String> = match name.split_once('/') {
                Some((first, rest)) => {
                    let (head, _) = first.rsplit_once('.').unwrap_or(("", first));
                    let (alternative, tail) = rest.split_once('.').unwrap_or((rest, ""));
                    let (_, first_leaf) = first.rsplit_once('.').unwrap_or(("", first));
                    [first_leaf, alternative].iter().map(|leaf| format!("{head}.{leaf}.{tail}")).collect()
                }
                None => vec![name.to_string()],
            };
            for path in expanded {
                let found = path.trim_end_matches('.').split('.').try_fold(&values, |node, key| node.get(key));
                assert!(found.is_some(), "README names the value {path}, which values.yaml does not have");
            }
        }
    }
    let rules = alert_rules(&render(&["--set", "metrics.prometheusRule.enabled=true"]));
    let rows = readme_table("| alert | fires when | `for` |");
    let documented: Vec<(&str, &str)> = rows.iter().map(|r| (r[0].as_str(), r[2].as_str())).collect();
    let rendered: Vec<(&str, &str)> = rules
        .iter()
        .map(|r| (r["alert"].as_str().unwrap_or_default(), r["for"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        documented, rendered,
        "README's alert table (name, `for`) against the PrometheusRule with default values"
    );
}
