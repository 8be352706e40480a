//! The GitOps examples (examples/gitops): the kustomize base and overlay render (with the
//! real `kubectl kustomize`) into custom resources the operator accepts; the Argo CD and
//! Flux objects point at paths that exist; and the Argo CD health check, run by a real Lua
//! 5.4 the way Argo CD runs it (a global `obj`, the script returns the health), gives the
//! status its `health_test.yaml` cases expect.
use e2e::kind::manifests::{check_custom_resources, crd_schemas, find, kind, namespace, parse_docs, unknown_fields};
use e2e::kind::tools::{kubectl, lua, repo_root, run_ok};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);
const KINDS: [&str; 3] = ["TransportService", "TransportConfig", "ServerComponentState"];

fn gitops() -> PathBuf {
    repo_root().join("examples/gitops")
}

fn kustomize(dir: &str) -> Vec<Value> {
    let path = gitops().join(dir).display().to_string();
    parse_docs(&run_ok(&kubectl(), &["kustomize", &path], LIMIT))
}

fn read_docs(path: &Path) -> Vec<Value> {
    parse_docs(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn kustomize_base_and_overlay_render_resources_the_operator_accepts() {
    let base = kustomize("base");
    assert_eq!(base.iter().map(kind).collect::<Vec<_>>(), ["Namespace", "TransportConfig", "TransportService"]);
    for doc in base.iter().filter(|d| kind(d) != "Namespace") {
        assert_eq!(namespace(doc), "mail", "{doc}");
    }
    let problems = check_custom_resources(&base);
    assert!(problems.is_empty(), "{problems:#?}");
    // Whatever holds queued mail is never deleted by a sync.
    let ts = find(&base, "TransportService", "mail");
    assert_eq!(ts["metadata"]["annotations"]["argocd.argoproj.io/sync-options"], "Prune=false,Delete=false");
    assert_eq!(ts["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/prune"], "disabled");
    let ns = find(&base, "Namespace", "mail");
    assert_eq!(ns["metadata"]["annotations"]["argocd.argoproj.io/sync-options"], "Delete=false");

    let overlay = kustomize("overlays/maintenance-mail-1");
    assert_eq!(overlay.len(), base.len() + 1);
    let scs = find(&overlay, "ServerComponentState", "mail-1-maintenance");
    assert_eq!(namespace(scs), "mail");
    assert_eq!(scs["spec"]["redirectTo"], "mail-0");
    let problems = check_custom_resources(&overlay);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn argo_cd_and_flux_objects_point_at_what_this_repository_holds() {
    let root = repo_root();
    let app = &read_docs(&gitops().join("argocd/application.yaml"))[0];
    assert_eq!(kind(app), "Application");
    assert_eq!(app["metadata"]["annotations"]["argocd.argoproj.io/compare-options"], "ServerSideDiff=true");
    let path = app["spec"]["source"]["path"].as_str().unwrap();
    assert!(root.join(path).join("kustomization.yaml").is_file(), "{path}");
    assert!(app["spec"]["syncPolicy"]["syncOptions"].as_array().unwrap().contains(&"ServerSideApply=true".into()));

    let operator = &read_docs(&gitops().join("argocd/operator-application.yaml"))[0];
    let chart = operator["spec"]["source"]["path"].as_str().unwrap();
    assert!(root.join(chart).join("Chart.yaml").is_file(), "{chart}");
    assert_eq!(operator["spec"]["source"]["helm"]["valuesObject"]["tests"]["enabled"], false);

    let flux = read_docs(&gitops().join("flux/kube-transport-operator.yaml"));
    let release = find(&flux, "HelmRelease", "kube-transport");
    let chart = release["spec"]["chart"]["spec"]["chart"].as_str().unwrap();
    assert!(root.join(chart).join("Chart.yaml").is_file(), "{chart}");
    assert_eq!(
        release["spec"]["chart"]["spec"]["sourceRef"]["name"],
        find(&flux, "GitRepository", "kube-transport")["metadata"]["name"]
    );

    let mail = &read_docs(&gitops().join("flux/mail.yaml"))[0];
    assert_eq!(kind(mail), "Kustomization");
    let path = mail["spec"]["path"].as_str().unwrap();
    assert!(root.join(path).join("kustomization.yaml").is_file(), "{path}");
    assert_eq!(mail["spec"]["wait"], true);
    let exprs = mail["spec"]["healthCheckExprs"].as_array().unwrap();
    assert_eq!(exprs.iter().map(|e| e["kind"].as_str().unwrap()).collect::<Vec<_>>(), KINDS);
    for e in exprs {
        assert_eq!(e["apiVersion"], "kubetransport.io/v1alpha1");
        for (field, needle) in [("inProgress", "observedGeneration"), ("failed", "'Degraded'"), ("current", "'Ready'")]
        {
            assert!(e[field].as_str().is_some_and(|x| x.contains(needle)), "{field} of {}", e["kind"]);
        }
    }
}

fn health_dir(kind_name: &str) -> PathBuf {
    gitops().join("argocd/resource_customizations/kubetransport.io").join(kind_name)
}

#[test]
fn every_copy_of_the_health_check_is_the_same_script() {
    let script = std::fs::read_to_string(health_dir("TransportService").join("health.lua")).unwrap();
    for k in KINDS {
        assert_eq!(std::fs::read_to_string(health_dir(k).join("health.lua")).unwrap(), script, "{k}/health.lua");
    }
    let cm = &read_docs(&gitops().join("argocd/argocd-cm-health.yaml"))[0];
    let data = cm["data"].as_object().unwrap();
    assert_eq!(data.len(), KINDS.len());
    for k in KINDS {
        let key = format!("resource.customizations.health.kubetransport.io_{k}");
        assert_eq!(data[&key].as_str(), Some(script.as_str()), "argocd-cm key {key} differs from health.lua");
    }
}

/// A JSON value as a Lua table constructor (what Argo CD hands the script as `obj`).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter().map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\{:03}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs `health.lua` on `obj` with lua5.4 as Argo CD does; returns (status, message).
fn health(script: &Path, obj: &Value) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let harness = dir.path().join("harness.lua");
    let code = format!(
        "obj = {}\nlocal check = assert(loadfile({}))\nlocal hs = check()\nio.write(hs.status, \"\\n\", hs.message or \"\", \"\\n\")\n",
        lua_literal(obj),
        lua_string(&script.display().to_string())
    );
    std::fs::write(&harness, code).unwrap();
    let out = run_ok(&lua(), &[harness.to_str().unwrap()], LIMIT);
    let mut lines = out.lines();
    (lines.next().unwrap_or_default().to_string(), lines.next().unwrap_or_default().to_string())
}

#[test]
fn argo_cd_health_follows_conditions_and_observed_generation() {
    let schemas = crd_schemas();
    let mut cases = 0;
    for k in KINDS {
        let dir = health_dir(k);
        let tests: Value =
            serde_yaml::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap()).unwrap();
        for case in tests["tests"].as_array().unwrap() {
            let input = case["inputPath"].as_str().unwrap();
            let obj = &read_docs(&dir.join(input))[0];
            assert_eq!(kind(obj), k, "{k}/{input}");
            // The inputs are objects the API server would store: nothing the schema lacks.
            let mut unknown = Vec::new();
            unknown_fields(&schemas[k], obj, "", &mut unknown);
            assert!(unknown.is_empty(), "{k}/{input}: {unknown:?}");
            let (status, message) = health(&dir.join("health.lua"), obj);
            assert_eq!(
                (status.as_str(), message.as_str()),
                (case["healthStatus"]["status"].as_str().unwrap(), case["healthStatus"]["message"].as_str().unwrap()),
                "{k}/{input}"
            );
            cases += 1;
        }
    }
    assert!(cases >= 10, "only {cases} cases");
}
