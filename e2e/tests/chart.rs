//! The Helm chart as a user gets it: the real `helm` renders charts/kube-transport with the
//! default values and with every option on (ci/full-values.yaml), and these tests read what
//! it produced: kinds, the operator's RBAC verb by verb, images, probes, security contexts,
//! leader election, the optional objects, the CRDs (which must be crds/ exactly), the custom
//! resources it creates, the helm test hook, and the values schema refusing bad values.
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
