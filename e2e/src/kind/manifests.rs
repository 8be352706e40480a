//! Reading manifests (helm output, kustomize output, example files) and checking the
//! kube-transport custom resources among them the way the cluster and the operator would:
//! no field the CRD schema does not know (the API server would drop a misspelt one
//! silently), the operator's own types, and for TransportServices the checks the operator
//! runs before it renders a configuration.
use operator::crd::{ServerComponentState, TransportConfig, TransportService, ALL_SERVERS};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every non-empty document of a YAML stream, as JSON values.
pub fn parse_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

pub fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn namespace(doc: &Value) -> &str {
    doc["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// The documents of one kind.
pub fn of_kind<'a>(docs: &'a [Value], kind_name: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind(d) == kind_name).collect()
}

/// The one document of `kind_name` called `object`.
pub fn find<'a>(docs: &'a [Value], kind_name: &str, object: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| kind(d) == kind_name && name(d) == object).collect();
    assert_eq!(found.len(), 1, "expected one {kind_name} {object}, found {}", found.len());
    found[0]
}

/// Schema (`openAPIV3Schema`) of each kube-transport kind, from the operator's CRDs.
pub fn crd_schemas() -> BTreeMap<String, Value> {
    operator::crd::crds()
        .into_iter()
        .map(|crd| {
            let version = &crd.spec.versions[0];
            let schema = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("CRD schema");
            (crd.spec.names.kind.clone(), serde_json::to_value(schema).expect("schema as JSON"))
        })
        .collect()
}

/// Paths of the fields of `value` that `schema` does not declare.
pub fn unknown_fields(schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|s| s.is_object());
            for (key, v) in map {
                let path = format!("{at}.{key}");
                match (props.and_then(|p| p.get(key)), extra) {
                    (Some(s), _) | (None, Some(s)) => unknown_fields(s, v, &path, out),
                    // The API server checks these itself; a CRD schema does not list them.
                    (None, None) if at.is_empty() && ["apiVersion", "kind", "metadata"].contains(&key.as_str()) => {}
                    (None, None) => out.push(path),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    unknown_fields(s, v, &format!("{at}[{i}]"), out);
                }
            }
        }
        _ => {
            // anyOf/oneOf alternatives (int-or-string sizes) hold no object fields.
        }
    }
}

/// The namespace an object goes to: its own, else `default`.
fn namespace_of(meta: &kube::api::ObjectMeta) -> String {
    meta.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".to_string())
}

/// Every problem of the kube-transport custom resources among `docs`, one line each,
/// naming the object. Objects without a namespace count as being in `default`.
pub fn check_custom_resources(docs: &[Value]) -> Vec<String> {
    let schemas = crd_schemas();
    let mut problems = Vec::new();
    let mut configs: BTreeMap<(String, String), TransportConfig> = BTreeMap::new();
    let mut services: Vec<TransportService> = Vec::new();
    let mut components: Vec<ServerComponentState> = Vec::new();
    for doc in docs {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        if !api_version.starts_with("kubetransport.io/") {
            continue;
        }
        let id = format!("{} {}", kind(doc), name(doc));
        if api_version != "kubetransport.io/v1alpha1" {
            problems.push(format!("{id}: apiVersion {api_version} is not served"));
            continue;
        }
        let Some(schema) = schemas.get(kind(doc)) else {
            problems.push(format!("{id}: no CRD has this kind"));
            continue;
        };
        let mut unknown = Vec::new();
        unknown_fields(schema, doc, "", &mut unknown);
        problems.extend(unknown.into_iter().map(|f| format!("{id}: unknown field {f}")));
        let typed = match kind(doc) {
            "TransportConfig" => serde_json::from_value::<TransportConfig>(doc.clone()).map(|tc| {
                configs.insert((namespace_of(&tc.metadata), name(doc).to_string()), tc);
            }),
            "TransportService" => serde_json::from_value::<TransportService>(doc.clone()).map(|ts| services.push(ts)),
            _ => serde_json::from_value::<ServerComponentState>(doc.clone()).map(|scs| components.push(scs)),
        };
        if let Err(e) = typed {
            problems.push(format!("{id}: {e}"));
        }
    }
    for ts in &services {
        // A manifest without a namespace is applied into one (`kubectl apply -n`); the
        // rendered server names need some namespace.
        let mut ts = ts.clone();
        ts.metadata.namespace = Some(namespace_of(&ts.metadata));
        let ts = &ts;
        let ts_name = ts.metadata.name.clone().unwrap_or_default();
        let ns = namespace_of(&ts.metadata);
        let tc_name = ts.spec.transport_config_name().to_string();
        let Some(tc) = configs.get(&(ns.clone(), tc_name.clone())) else {
            problems
                .push(format!("TransportService {ts_name}: its TransportConfig {tc_name} is not among the manifests"));
            continue;
        };
        let mine: Vec<ServerComponentState> =
            components.iter().filter(|c| namespace_of(&c.metadata) == ns).cloned().collect();
        let indices: Vec<u32> = (0..ts.spec.servers()).collect();
        if let Err(errors) = operator::validation::render_service(ts, &tc.spec.settings, &tc_name, &mine, &indices) {
            problems.push(format!("TransportService {ts_name}: {}", operator::validation::describe(&errors)));
        }
    }
    for scs in &components {
        let id = format!("ServerComponentState {}", scs.metadata.name.clone().unwrap_or_default());
        let ns = namespace_of(&scs.metadata);
        let target = &scs.spec.transport_service_ref.name;
        let Some(ts) =
            services.iter().find(|ts| ts.metadata.name.as_deref() == Some(target) && namespace_of(&ts.metadata) == ns)
        else {
            problems.push(format!("{id}: TransportService {target} is not among the manifests"));
            continue;
        };
        let is_server =
            |server: &str| operator::names::server_index(target, server).is_some_and(|i| i < ts.spec.servers());
        if scs.spec.server != ALL_SERVERS && !is_server(&scs.spec.server) {
            problems.push(format!("{id}: server {} is not a server of {target}", scs.spec.server));
        }
        if let Some(to) = &scs.spec.redirect_to {
            if !is_server(to) || *to == scs.spec.server {
                problems.push(format!("{id}: redirectTo {to} is not another server of {target}"));
            }
        }
    }
    problems
}
