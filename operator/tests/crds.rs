//! crds/ is generated from the Rust types (`make crds`); CI relies on this test to fail
//! when someone changes a type without regenerating, or edits crds/ by hand. (The schemas
//! of TimeSpan and ByteSize come from the transport crate's config module.)
use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn crds_folder_is_what_crdgen_writes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let files = operator::crd::crd_files().expect("CRDs as YAML");
    for f in &files {
        let path = dir.join(&f.file_name);
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}; run `make crds`", path.display()));
        assert!(
            on_disk == f.yaml,
            "crds/{} differs from what crdgen generates from operator/src/crd: run `make crds` and commit crds/",
            f.file_name
        );
    }
    let expected: BTreeSet<String> = files.iter().map(|f| f.file_name.clone()).collect();
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("crds/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    assert_eq!(present, expected, "crds/ holds files crdgen does not write");
}

#[test]
fn crdgen_output_is_deterministic() {
    let a: Vec<String> = operator::crd::crd_files().unwrap().into_iter().map(|f| f.yaml).collect();
    let b: Vec<String> = operator::crd::crd_files().unwrap().into_iter().map(|f| f.yaml).collect();
    assert_eq!(a, b);
}

/// kubectl and helm read YAML 1.1, where an unquoted `Off`, `No`, `Yes`, `On` (any case)
/// and `y`/`n` are booleans: an enum value spelled so would reach the API server as `false`
/// and the value a user writes would be refused. No enum value of a CRD may be one.
#[test]
fn no_enum_value_is_a_yaml_1_1_boolean() {
    fn walk(v: &serde_json::Value, path: &str, found: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(values)) = map.get("enum") {
                    for value in values.iter().filter_map(|x| x.as_str()) {
                        let lower = value.to_ascii_lowercase();
                        if ["y", "n", "yes", "no", "on", "off", "true", "false"].contains(&lower.as_str()) {
                            found.push(format!("{path}: {value}"));
                        }
                    }
                }
                for (k, x) in map {
                    walk(x, &format!("{path}.{k}"), found);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|x| walk(x, path, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for crd in operator::crd::crds() {
        let json = serde_json::to_value(&crd).expect("CRD as JSON");
        walk(&json, &crd.metadata.name.clone().unwrap_or_default(), &mut found);
    }
    assert!(found.is_empty(), "enum values kubectl would read as booleans: {found:?}");
}
