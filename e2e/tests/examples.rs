//! Every CR in examples/ is accepted the way a cluster and the operator would accept it:
//! by the generated CRD schema (types, required fields, enums, patterns, ranges; with the
//! `jsonschema` crate, as draft 4 is what OpenAPI 3.0 schemas are built on), with no field
//! the schema does not know (the API server would silently drop a misspelt one), by the
//! operator's own types, and, for TransportServices, by the same checks the operator runs
//! before it renders a configuration.
//!
//! The manifest reading and schema walk are the ones the chart and GitOps tests use
//! (`e2e::kind::manifests`).
use e2e::kind::manifests::{crd_schemas, parse_docs, unknown_fields};
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
fn every_example_matches_its_crd_schema() {
    let schemas = crd_schemas();
    let docs = examples();
    let kinds: Vec<&str> = docs.iter().map(|(_, d)| d["kind"].as_str().unwrap()).collect();
    for kind in ["TransportConfig", "TransportService", "ServerComponentState"] {
        assert!(kinds.contains(&kind), "no {kind} example");
    }
    for (path, doc) in &docs {
        assert_eq!(doc["apiVersion"], "kubetransport.io/v1alpha1", "{}", path.display());
        let kind = doc["kind"].as_str().unwrap();
        let schema = schemas.get(kind).unwrap_or_else(|| panic!("{}: unknown kind {kind}", path.display()));
        let validator = jsonschema::draft4::new(schema).expect("the CRD schema compiles");
        let errors: Vec<String> = validator.iter_errors(doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        let mut unknown = Vec::new();
        unknown_fields(schema, doc, "", &mut unknown);
        assert!(unknown.is_empty(), "{}: fields the CRD does not have: {unknown:?}", path.display());
    }
}

/// The retry range and time-span pattern come from the config helper's schema attributes.
#[test]
fn the_schema_check_refuses_what_a_cluster_would_refuse() {
    let schemas = crd_schemas();
    let ts = &schemas["TransportService"];
    let validator = jsonschema::draft4::new(ts).unwrap();
    let base = serde_json::json!({
        "apiVersion": "kubetransport.io/v1alpha1", "kind": "TransportService", "metadata": {"name": "x"},
        "spec": {"receiveConnectors": [{"name": "Default", "port": 2525}]}
    });
    assert!(validator.is_valid(&base));
    let mut bad_port = base.clone();
    bad_port["spec"]["receiveConnectors"][0]["port"] = 70000.into();
    assert!(!validator.is_valid(&bad_port), "port range");
    let mut no_port = base.clone();
    no_port["spec"]["receiveConnectors"][0].as_object_mut().unwrap().remove("port");
    assert!(!validator.is_valid(&no_port), "required field");
    let mut bad_role = base.clone();
    bad_role["spec"]["role"] = "Hub".into();
    assert!(!validator.is_valid(&bad_role), "enum");
    let mut bad_retry = base.clone();
    bad_retry["spec"]["retry"] = serde_json::json!({"queueGlitchRetryCount": 16});
    assert!(!validator.is_valid(&bad_retry), "range of a transport setting");
    let mut bad_span = base.clone();
    bad_span["spec"]["retry"] = serde_json::json!({"messageRetryInterval": "15 minutes"});
    assert!(!validator.is_valid(&bad_span), "time span pattern");
    let mut typo = base.clone();
    typo["spec"]["recieveConnectors"] = serde_json::json!([]);
    let mut unknown = Vec::new();
    unknown_fields(ts, &typo, "", &mut unknown);
    assert_eq!(unknown, vec![".spec.recieveConnectors"]);
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
