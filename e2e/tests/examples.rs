//! Every CR in examples/ reads as the operator's own types and, for TransportServices,
//! passes the same checks the operator runs before it renders a configuration. (The real
//! API server applies them in the e2e suite: `tests/cluster/examples.rs`; its schema and
//! strict field validation refuse what `tests/cluster/invalid.rs` tries.)
use e2e::kind::manifests::parse_docs;
use operator::crd::{ServerComponentState, TransportConfig, TransportService};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn examples() -> Vec<(PathBuf, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let yaml_in = |dir: PathBuf| -> Vec<PathBuf> {
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect()
    };
    let mut paths = yaml_in(dir.clone());
    paths.extend(yaml_in(dir.join("maintenance")));
    paths.sort();
    let mut docs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        docs.extend(parse_docs(&text).into_iter().map(|doc| (path.clone(), doc)));
    }
    docs
}

#[test]
fn every_example_reads_as_the_operators_types() {
    for (path, doc) in examples() {
        let result = match doc["kind"].as_str().unwrap() {
            "TransportService" => serde_json::from_value::<TransportService>(doc.clone()).map(|_| ()),
            "TransportConfig" => serde_json::from_value::<TransportConfig>(doc.clone()).map(|_| ()),
            "ServerComponentState" => serde_json::from_value::<ServerComponentState>(doc.clone()).map(|_| ()),
            other => panic!("{}: unknown kind {other}", path.display()),
        };
        result.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Needs the config helper's parsing and `TransportFile::validate`.
#[test]
fn every_example_service_passes_the_operators_checks_with_the_example_config() {
    let docs = examples();
    let tc: TransportConfig = docs
        .iter()
        .find(|(_, d)| d["kind"] == "TransportConfig" && d["metadata"]["name"] == "default")
        .map(|(_, d)| serde_json::from_value(d.clone()).unwrap())
        .expect("the example TransportConfig default");
    let components: Vec<ServerComponentState> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "ServerComponentState")
        .map(|(_, d)| serde_json::from_value(d.clone()).unwrap())
        .collect();
    operator::validation::check_transport_config("default", &tc.spec.settings).expect("TransportConfig default");
    for (path, doc) in docs.iter().filter(|(_, d)| d["kind"] == "TransportService") {
        let mut ts: TransportService = serde_json::from_value(doc.clone()).unwrap();
        ts.metadata.namespace = Some("default".into());
        let servers: Vec<u32> = (0..ts.spec.servers()).collect();
        let rendered = operator::validation::render_service(&ts, &tc.spec.settings, "default", &components, &servers)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), operator::validation::describe(&e)));
        assert_eq!(rendered.len(), servers.len());
    }
}
