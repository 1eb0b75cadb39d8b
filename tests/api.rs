//! The CRDs offline: `crds/` is up to date, every example is valid (Rust types, OpenAPI
//! schema, CEL rules), every object in `tests/fixtures/invalid/` is refused with the message
//! its `# expect:` lines name, and the typed specs' `validate()` (the same `api::validation`) refuses it too.
//!
//! The schema is checked by `api::validation` (the library's, used by `transfer -f`) with `jsonschema` (patterns, enums, required, one-of, lengths,
//! unknown fields as `kubectl apply`'s strict field validation reports them) after applying
//! the schema defaults, and the `x-kubernetes-validations` CEL rules with `kube-cel`, as
//! the API server does. The same fixtures are applied to a real kube-apiserver by the
//! end-to-end tests.
//!
//! `make crds` (or `AOSM_UPDATE_CRDS=1 cargo test --test api crds_are_up_to_date`)
//! rewrites `crds/`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use aosm_artifact_operator::api::{
    self, ArtifactStore, ArtifactTransfer, ClusterArtifactStore, ValidationError,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------
// crds/ is up to date

#[test]
fn crds_are_up_to_date() {
    let dir = root().join("crds");
    let update = std::env::var_os("AOSM_UPDATE_CRDS").is_some();
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut expected = Vec::new();
    let mut stale = Vec::new();
    for crd in api::crds() {
        let name = api::crd_file_name(&crd);
        let yaml = api::crd_yaml(&crd);
        let path = dir.join(&name);
        if update {
            std::fs::write(&path, &yaml).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
            stale.push(name.clone());
        }
        expected.push(name);
    }
    let mut extra = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !expected.contains(&name) {
            if update {
                std::fs::remove_file(dir.join(&name)).unwrap();
            } else {
                extra.push(name);
            }
        }
    }
    assert!(
        stale.is_empty() && extra.is_empty(),
        "crds/ is stale (differs from the Rust types: {stale:?}; not generated: {extra:?}).\n\
         Regenerate with `make crds` (AOSM_UPDATE_CRDS=1 cargo test --test api crds_are_up_to_date) \
         and commit the result."
    );
}

#[test]
fn cli_crds_output_is_the_three_files_concatenated() {
    let concatenated: String = api::crds()
        .iter()
        .map(|c| format!("---\n{}", api::crd_yaml(c)))
        .collect();
    assert_eq!(api::crds_yaml(), concatenated);
}

#[test]
fn cli_crds_subcommand_prints_them() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aosm-artifact-operator"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), api::crds_yaml());
}

// ---------------------------------------------------------------------------------------
// Offline validation: the library's (`api::validation`), as close to the API server's as we
// can get.

struct Kind {
    schema: Value,
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Each kind's `openAPIV3Schema`, as the CRDs carry it.
fn kinds() -> BTreeMap<String, Kind> {
    api::crds()
        .into_iter()
        .map(|crd| {
            let version = &crd.spec.versions[0];
            let schema = serde_json::to_value(
                version
                    .schema
                    .as_ref()
                    .unwrap()
                    .open_api_v3_schema
                    .as_ref()
                    .unwrap(),
            )
            .unwrap();
            (crd.spec.names.kind.clone(), Kind { schema })
        })
        .collect()
}

/// The messages `api::validation` gives for `obj`; asserts every CEL rule evaluated.
fn offline_validate(obj: &Value) -> Vec<String> {
    let errors: Vec<String> = api::validation::validate_object(obj)
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    for e in &errors {
        assert!(
            !e.contains(api::validation::UNEVALUABLE),
            "a CEL rule could not be evaluated offline: {e}"
        );
    }
    errors
}

/// Rust-side checks: strict deserialization (unknown fields) and `validate()`.
fn rust_validate(obj: &Value) -> Result<(), String> {
    fn fmt(errors: Vec<ValidationError>) -> String {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
    match obj["kind"].as_str().unwrap_or_default() {
        "ArtifactTransfer" => {
            let t: ArtifactTransfer = api::from_value_strict(obj.clone())?;
            t.spec.validate().map_err(fmt)
        }
        "ArtifactStore" => {
            let s: ArtifactStore = api::from_value_strict(obj.clone())?;
            s.spec.validate().map_err(fmt)
        }
        "ClusterArtifactStore" => {
            let s: ClusterArtifactStore = api::from_value_strict(obj.clone())?;
            s.spec.store.validate().map_err(fmt)
        }
        other => Err(format!("not an API kind: {other}")),
    }
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

// ---------------------------------------------------------------------------------------
// examples/

#[test]
fn examples_are_valid() {
    let mut seen_kinds = HashSet::new();
    let files = yaml_files(&root().join("examples"));
    assert!(files.len() >= 5, "examples: {files:?}");
    for file in files {
        for doc in yaml_docs(&file) {
            let kind = doc["kind"].as_str().unwrap().to_string();
            let name = format!("{} {kind}/{}", file.display(), doc["metadata"]["name"]);
            match doc["apiVersion"].as_str().unwrap() {
                "v1" => match kind.as_str() {
                    "Secret" => drop(api::from_value_strict::<Secret>(doc.clone()).unwrap()),
                    "ConfigMap" => drop(api::from_value_strict::<ConfigMap>(doc.clone()).unwrap()),
                    _ => panic!("{name}: unexpected kind"),
                },
                _ => {
                    let errors = offline_validate(&doc);
                    assert!(
                        errors.is_empty(),
                        "{name} is refused by the schema: {errors:#?}"
                    );
                    rust_validate(&doc).unwrap_or_else(|e| panic!("{name}: {e}"));
                    // Rust defaults equal schema defaults: the defaulted object round-trips.
                    let defaulted = api::validation::with_defaults(&doc);
                    let back = match kind.as_str() {
                        "ArtifactTransfer" => serde_json::to_value(
                            serde_json::from_value::<ArtifactTransfer>(doc.clone()).unwrap(),
                        ),
                        "ArtifactStore" => serde_json::to_value(
                            serde_json::from_value::<ArtifactStore>(doc.clone()).unwrap(),
                        ),
                        _ => serde_json::to_value(
                            serde_json::from_value::<ClusterArtifactStore>(doc.clone()).unwrap(),
                        ),
                    }
                    .unwrap();
                    assert_eq!(
                        back["spec"], defaulted["spec"],
                        "{name}: Rust and schema defaults differ"
                    );
                    // The status default is the API server's alone: an unobserved object.
                    assert_eq!(back.get("status"), None, "{name}");
                    assert_eq!(
                        defaulted["status"],
                        serde_json::from_str::<Value>(api::UNOBSERVED_STATUS).unwrap(),
                        "{name}"
                    );
                }
            }
            seen_kinds.insert(kind);
        }
    }
    for kind in [
        "ArtifactTransfer",
        "ArtifactStore",
        "ClusterArtifactStore",
        "Secret",
    ] {
        assert!(seen_kinds.contains(kind), "no example of {kind}");
    }
}

#[test]
fn example_transfers_cover_every_source_and_destination() {
    let mut sources = HashSet::new();
    let mut destinations = HashSet::new();
    for file in yaml_files(&root().join("examples")) {
        for doc in yaml_docs(&file) {
            if doc["kind"] == "ArtifactTransfer" {
                let t: ArtifactTransfer = serde_json::from_value(doc).unwrap();
                let spec = serde_json::to_value(&t.spec).unwrap();
                sources.extend(spec["source"].as_object().unwrap().keys().cloned());
                destinations.extend(spec["destination"].as_object().unwrap().keys().cloned());
            }
        }
    }
    for s in ["registry", "helmRepository", "configMap", "artifactStore"] {
        assert!(sources.contains(s), "no example with source {s}");
    }
    for d in ["registry", "artifactStore"] {
        assert!(destinations.contains(d), "no example with destination {d}");
    }
}

// ---------------------------------------------------------------------------------------
// tests/fixtures/invalid/

#[test]
fn invalid_objects_are_refused_with_a_message_naming_the_problem() {
    let files = yaml_files(&root().join("tests/fixtures/invalid"));
    assert!(files.len() >= 30, "only {} invalid fixtures", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expect: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expect.is_empty(),
            "{}: no `# expect:` line",
            file.display()
        );
        let docs = yaml_docs(file);
        assert_eq!(docs.len(), 1, "{}: one object per fixture", file.display());
        let obj = &docs[0];
        let errors = offline_validate(obj);
        let joined = errors.join("\n");
        if std::env::var_os("AOSM_SHOW_ERRORS").is_some() {
            eprintln!("{}:\n  {}", file.display(), joined.replace('\n', "\n  "));
            eprintln!("  rust: {:?}", rust_validate(obj));
        }
        if errors.is_empty() {
            failures.push(format!("{}: accepted by the schema", file.display()));
        }
        for e in &expect {
            if !joined.contains(e) {
                failures.push(format!(
                    "{}: no message contains {e:?}; got:\n  {}",
                    file.display(),
                    joined.replace('\n', "\n  ")
                ));
            }
        }
        if rust_validate(obj).is_ok() {
            failures.push(format!(
                "{}: accepted by the Rust-side validate()",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// The schema itself

/// Every property has a description (it is the `kubectl explain` text).
#[test]
fn every_field_is_documented() {
    fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let p = join(path, k);
                let documented = v
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| d.len() > 10);
                // apiVersion/kind/metadata are the standard ones kubectl documents.
                if !documented && !path.is_empty() {
                    missing.push(p.clone());
                }
                walk(v, &p, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    let mut missing = Vec::new();
    for (kind, k) in kinds() {
        assert!(
            k.schema["description"]
                .as_str()
                .is_some_and(|d| d.len() > 40),
            "{kind} has no description"
        );
        walk(&k.schema, &kind, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
}

/// The shared spec is complete in ClusterArtifactStore (flattened) and its CEL rules came
/// along; allowedNamespaces is only there.
#[test]
fn cluster_store_schema_has_the_shared_spec() {
    let ns = &kinds()["ArtifactStore"].schema["properties"]["spec"];
    let cl = &kinds()["ClusterArtifactStore"].schema["properties"]["spec"];
    for (k, v) in ns["properties"].as_object().unwrap() {
        assert_eq!(&cl["properties"][k], v, "ClusterArtifactStore spec.{k}");
    }
    assert_eq!(ns["required"], cl["required"]);
    assert_eq!(
        ns["x-kubernetes-validations"],
        cl["x-kubernetes-validations"]
    );
    assert!(cl["properties"]["allowedNamespaces"].is_object());
    assert!(ns["properties"]["allowedNamespaces"].is_null());
}

#[test]
fn printer_columns() {
    let crds = api::crds();
    let transfer = crds
        .iter()
        .find(|c| c.spec.names.kind == "ArtifactTransfer")
        .unwrap();
    let cols = transfer.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap();
    let default: Vec<&str> = cols
        .iter()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        default,
        ["Ready", "Direction", "Artifact", "Version", "Digest", "Age"]
    );
    // Every column path (other than metadata) exists in the schema.
    let schema = &kinds()["ArtifactTransfer"].schema;
    for c in cols {
        let path = c.json_path.split('[').next().unwrap();
        if path.starts_with(".metadata") {
            continue;
        }
        let mut s = schema;
        for part in path.trim_start_matches('.').split('.') {
            s = &s["properties"][part];
        }
        assert!(
            s.is_object(),
            "column {} path {} not in the schema",
            c.name,
            c.json_path
        );
    }
}

// ---------------------------------------------------------------------------------------
// Helpers the controller uses

#[test]
fn status_helpers_fill_the_printer_columns() {
    let t: ArtifactTransfer = serde_json::from_value(
        yaml_docs(&root().join("examples/pull-to-registry.yaml"))
            .into_iter()
            .next()
            .unwrap(),
    )
    .unwrap();
    let mut status = api::ArtifactTransferStatus::for_spec(&t.spec);
    status.set_digest(format!("sha256:{}", "0123456789abcdef".repeat(4)));
    assert_eq!(status.direction, Some(api::Direction::Pull));
    assert_eq!(status.artifact.as_deref(), Some("contoso-cnf-container"));
    assert_eq!(status.version.as_deref(), Some("1.2.3"));
    assert_eq!(status.short_digest.as_deref(), Some("0123456789ab"));
    assert_eq!(
        t.spec.interval().unwrap(),
        std::time::Duration::from_secs(1800)
    );
    assert_eq!(
        t.spec.timeout().unwrap(),
        std::time::Duration::from_secs(1800)
    );
    // The status passes its own schema.
    let mut obj = serde_json::to_value(&t).unwrap();
    obj["status"] = serde_json::to_value(&status).unwrap();
    assert_eq!(offline_validate(&obj), Vec::<String>::new());
}
